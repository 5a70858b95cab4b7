"""The REST API end to end inside one process: the seed workflow's configuration through the API (with the same
validation as the pages, answered as problem details), the role matrix, audit, rate limit, and the OpenAPI
document (valid, and documenting every route)."""

from __future__ import annotations

import re

import pytest
import yaml
from allauth.account.models import EmailAddress
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

from api.models import ApiToken
from api.views import sources as views
from hubsync import workspaces as ws
from hubsync.models import AuditEvent, Membership, Role
from mappings.models import DeliveryState, Mapping, ProfileSpace
from sources.models import Source, SyncRun
from tests.api.conftest import ApiClient
from tests.conftest import make_user
from tests.factories import (
    DeliveryRunFactory,
    DeliveryStateFactory,
    MappingFactory,
    RecordFactory,
    SourceCollectionFactory,
    SourceFactory,
    SyncRunFactory,
)

pytestmark = pytest.mark.django_db

CONTACT_SCHEMA = {
    "email": {"name": "email", "label": "Email", "type": "string", "fieldType": "text"},
    "firstname": {"name": "firstname", "label": "First name", "type": "string", "fieldType": "text"},
}


@pytest.fixture
def source(workspace):
    source = SourceFactory(workspace=workspace, name="HubSpot", hub_id=1001, token="refresh-secret-token")
    SourceCollectionFactory(source=source, collection="contacts", properties=CONTACT_SCHEMA)
    return source


def W(workspace) -> str:  # noqa: N802
    return f"/api/v1/workspaces/{workspace.pk}/"


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def test_the_seed_workflow_configuration_through_the_api(api, workspace, source, owner):
    w = W(workspace)
    assert api.get(w)["Content-Type"] == "application/json"
    assert api.get(w).json()["token_role"] == "admin"

    destination = api.post(w + "destinations/", {"name": "Segment"})
    assert destination.status_code == 201, destination.content
    dest_id = destination.json()["id"]

    # The write key is write-only and validated by the page's form.
    short = _problem(
        api.post(w + f"destinations/{dest_id}/profile-spaces/", {"name": "P", "region": "us", "write_key": "x"}), 400
    )
    assert "write key" in short["errors"]["write_key"][0]
    space = api.post(
        w + f"destinations/{dest_id}/profile-spaces/", {"name": "Prod", "region": "us", "write_key": "wk_secret_123"}
    )
    assert space.status_code == 201 and space.json()["write_key_set"] is True
    assert "wk_secret_123" not in space.content.decode()
    assert ProfileSpace.objects.get().write_key == "wk_secret_123"
    assert "wk_secret_123" not in str(list(AuditEvent.objects.values_list("changes", flat=True)))

    no_columns = _problem(
        api.post(w + "models/", {"source": source.pk, "collection": "contacts", "name": "C", "columns": []}), 400
    )
    assert "Tick at least one column" in no_columns["errors"]["columns"][0]
    unknown = _problem(
        api.post(w + "models/", {"source": source.pk, "collection": "contacts", "name": "C", "columns": ["nope"]}), 400
    )
    assert "columns" in unknown["errors"]
    model = api.post(
        w + "models/",
        {"source": source.pk, "collection": "contacts", "name": "Contacts", "columns": ["email", "firstname"]},
    )
    assert model.status_code == 201, model.content
    model_id = model.json()["id"]
    assert model.json()["all_columns"] == ["id", "created_at", "updated_at", "email", "firstname"]

    body = {
        "destination": dest_id,
        "data_model": model_id,
        "profile_space": space.json()["id"],
        "action": "identify",
        "identifiers": {"user_id": ""},
        "traits": [{"column": "email", "trait": "email"}, {"column": "ghost", "trait": "g"}],
    }
    bad = _problem(api.post(w + "mappings/", body), 400)
    assert "identifiers.user_id" in bad["errors"] and "traits[1]" in bad["errors"]
    body.update(identifiers={"user_id": "email"}, traits=[{"column": "email", "trait": "email"}])
    mapping = api.post(w + "mappings/", body)
    assert mapping.status_code == 201, mapping.content
    m = mapping.json()
    assert m["enabled"] is False and m["identifiers"]["user_id"] == "email"
    mw = w + f"mappings/{m['id']}/"
    patched = api.patch(
        mw, {"traits": [{"column": "email", "trait": "email"}, {"column": "firstname", "trait": "first_name"}]}
    )
    assert patched.status_code == 200 and len(patched.json()["traits"]) == 2
    assert patched.json()["identifiers"]["user_id"] == "email"  # what the body left out stays

    # The setup order is enforced: the source cannot be enabled before an enabled mapping exists.
    refused = _problem(api.post(w + f"sources/{source.pk}/enable/"), 409)
    assert refused["missing"]
    assert api.post(mw + "enable/").json()["enabled"] is True
    enabled = api.post(w + f"sources/{source.pk}/enable/")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert SyncRun.objects.filter(source=source, trigger="first").exists()
    _problem(api.post(w + f"sources/{source.pk}/sync/"), 409)  # the first sync is still queued

    assert _problem(api.post(mw + "sample/", {"sample_size": 0}), 400)["errors"]["sample_size"]
    assert api.post(mw + "sample/", {"sample_size": 5}).json()["sample_size"] == 5
    DeliveryStateFactory(mapping_id=m["id"], object_id=7, status="rejected", error="no user id")
    rejected = api.get(mw + "rejected/").json()
    assert rejected["count"] == 1 and rejected["results"][0]["error"] == "no user id"
    assert api.post(mw + "rejected/retry/", {"object_ids": [7]}).json() == {"count": 1}
    assert DeliveryState.objects.get(object_id=7).status == "retry"

    in_use = _problem(api.delete(w + f"models/{model_id}/"), 409)
    assert "Delete them first" in in_use["detail"]
    assert api.delete(mw).status_code == 204
    assert api.delete(w + f"models/{model_id}/").status_code == 204

    # Every write was audited like a page action: the service's event, and the call with the token.
    calls = AuditEvent.objects.filter(verb="api.call", workspace=workspace)
    assert calls.count() >= 15 and {e.actor for e in calls} == {owner}
    assert AuditEvent.objects.filter(verb="create", object_type="mappings.Mapping", actor=owner).exists()
    assert ApiToken.objects.get(pk=api_token_pk(api)).last_used_at is not None


def api_token_pk(api: ApiClient) -> int:
    return ApiToken.objects.get(prefix=api.token[:10]).pk


def test_source_update_uses_the_settings_forms(api, workspace, source):
    url = W(workspace) + f"sources/{source.pk}/"
    bad = _problem(api.patch(url, {"schema_name": "Not Valid"}), 400)
    assert "lowercase" in bad["errors"]["schema_name"][0]
    _problem(api.patch(url, {"sync_interval": 7}), 400)
    ok = api.patch(url, {"name": "HubSpot EU", "sync_interval": 3600})
    assert ok.status_code == 200 and ok.json()["name"] == "HubSpot EU" and ok.json()["sync_interval"] == 3600
    schema = api.get(url + "collections/contacts/schema/").json()
    assert [p["name"] for p in schema["properties"]] == ["email", "firstname"]
    assert "refresh-secret-token" not in api.get(url).content.decode()


def test_read_only_tokens_read_and_cannot_write(api_read, workspace, source):
    assert api_read.get(W(workspace) + "sources/").json()["count"] == 1
    body = _problem(api_read.post(W(workspace) + "destinations/", {"name": "x"}), 403)
    assert "read-only" in body["detail"]


def test_monitoring_rules_are_read_only_owners_change_them_on_the_settings_page(api, api_read, workspace):
    rules = api_read.get(W(workspace) + "alerts/rules/").json()
    assert {k: v for k, v in rules.items() if k != "rules"} == {
        "drift_pauses_mappings": True,
        "freshness_alert_minutes": 60,
        "rejected_alert_threshold": 100,
    }
    assert {"rule": "sync_failed", "label": "Sync failed"} in rules["rules"]
    _problem(api.patch(W(workspace) + "alerts/rules/", {"freshness_alert_minutes": 5}), 405)


def test_errors_are_problem_details_never_html(api, workspace):
    _problem(api.get("/api/v1/nowhere/"), 404)
    _problem(api.get(W(workspace) + "sources/999999/"), 404)
    not_allowed = _problem(api.request("put", W(workspace) + "sources/"), 405)
    assert not_allowed["status"] == 405
    broken = api.client.post(
        W(workspace) + "destinations/", data="{not json", content_type="application/json", headers=api._headers()
    )
    _problem(broken, 400)
    # curl -d '{…}' without a Content-Type header sends its JSON form-encoded: it is read as JSON all the same.
    lenient = api.client.post(
        W(workspace) + "destinations/",
        data='{"name": "Segment"}',
        content_type="application/x-www-form-urlencoded",
        headers=api._headers(),
    )
    assert lenient.status_code == 201 and lenient.json()["name"] == "Segment"
    _problem(api.get(W(workspace) + "sources/", q="a\x00b"), 400)
    _problem(api.post(W(workspace) + "destinations/", {"name": ["not", "a", "string"]}), 400)


def test_rate_limit_per_token(api, api_read, workspace, settings):
    settings.HUBSYNC_API_RATE = "3/minute"
    for _ in range(3):
        assert api.get(W(workspace)).status_code == 200
    limited = _problem(api.get(W(workspace)), 429)
    assert limited["type"].endswith("rate-limited")
    assert int(api.get(W(workspace))["Retry-After"]) > 0
    assert api_read.get(W(workspace)).status_code == 200  # another token has its own budget


def test_the_openapi_document_is_valid_and_complete(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    validate(document)
    documented = set(document["paths"])

    def routes(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from routes(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    ours = [r for r in routes(get_resolver().url_patterns) if r.startswith("api/v1/")]
    expected = {"/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r) for r in ours} - {"/api/v1/schema/", "/api/v1/docs/"}
    assert expected - documented == set(), "routes missing from the OpenAPI document"
    assert len(expected) > 35
    assert document["components"]["securitySchemes"]["workspaceToken"]["scheme"] == "bearer"
    spaces = document["components"]["schemas"]["ProfileSpace"]["properties"]
    assert "write_key" not in spaces and "write_key_set" in spaces


def test_the_docs_page_uses_pinned_files_and_no_inline_script(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "<script>" not in html and "<style>" not in html
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_every_operation_documents_its_problems(client):
    document = yaml.safe_load(client.get("/api/v1/schema/").content)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "security" not in operation:
                assert path == "/api/v1/"  # the only public operation
                continue
            for code in ("401", "404", "429"):
                content = operation["responses"][code]["content"]
                assert "application/problem+json" in content, (method, path, code)
    assert "errors" in document["components"]["schemas"]["Problem"]["properties"]


def test_a_token_stops_when_its_creator_loses_access(api, admin_token, workspace, owner):
    assert api.get(W(workspace)).status_code == 200
    other = Membership.objects.create(user=make_user("second@acme.test"), workspace=workspace, role=Role.OWNER)
    ws.change_role(membership=Membership.objects.get(user=owner), role=Role.VIEWER, actor=other.user)
    refused = _problem(api.get(W(workspace)), 401)
    assert "no longer an owner or admin" in refused["detail"]


def test_a_crash_is_a_500_problem(api, workspace, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.WorkspaceDetail, "get", boom)
    api.client.raise_request_exception = False
    body = _problem(api.get(W(workspace)), 500)
    assert "boom" not in str(body)


def _verified(user) -> None:
    EmailAddress.objects.update_or_create(user=user, email=user.email, defaults={"verified": True, "primary": True})


def test_the_other_endpoints_with_an_admin_token(api, workspace, source, owner):
    w = W(workspace)
    assert [x["id"] for x in api.get("/api/v1/workspaces/").json()] == [workspace.pk]
    assert api.get("/api/v1/workspaces/").json()[0]["name"] == "Acme"
    assert api.get(w + f"sources/{source.pk}/collections/").json()[0]["property_count"] == 2

    Source.objects.filter(pk=source.pk).update(enabled=True)
    assert api.post(w + f"sources/{source.pk}/disable/").json()["enabled"] is False
    full = api.post(w + f"sources/{source.pk}/full-sync/")
    assert full.status_code == 202 and SyncRun.objects.get(pk=full.json()["run"]).trigger == "full"
    runs = api.get(w + "sync-runs/", source=source.pk).json()
    assert runs["count"] == 1 and runs["results"][0]["progress"]["finished"] is False
    _problem(api.get(w + "sync-runs/", source="x"), 400)
    assert api.get(w + f"sync-runs/{full.json()['run']}/").json()["trigger"] == "full"

    model = api.post(w + "models/", {"source": source.pk, "collection": "contacts", "name": "C", "columns": ["email"]})
    model_url = w + f"models/{model.json()['id']}/"
    renamed = api.patch(model_url, {"name": "Contacts", "columns": ["firstname", "email"]})
    assert renamed.json()["name"] == "Contacts" and renamed.json()["columns"] == ["email", "firstname"]
    assert api.get(w + "models/", source=source.pk).json()["count"] == 1

    dest = api.post(w + "destinations/", {"name": "Segment"}).json()
    assert api.patch(w + f"destinations/{dest['id']}/", {"name": "Segment EU"}).json()["name"] == "Segment EU"
    spaces = w + f"destinations/{dest['id']}/profile-spaces/"
    space = api.post(spaces, {"name": "Prod", "region": "us", "write_key": "wk_original_1"}).json()
    space_url = w + f"profile-spaces/{space['id']}/"
    assert api.patch(space_url, {"name": "Production"}).json()["name"] == "Production"
    assert ProfileSpace.objects.get().write_key == "wk_original_1"  # left out: the saved key stays
    api.patch(space_url, {"write_key": "wk_replaced_2"})
    assert ProfileSpace.objects.get().write_key == "wk_replaced_2"
    assert [s["name"] for s in api.get(spaces).json()] == ["Production"]

    mapping = api.post(
        w + "mappings/",
        {
            "destination": dest["id"],
            "data_model": model.json()["id"],
            "profile_space": space["id"],
            "identifiers": {"user_id": "email"},
        },
    ).json()
    mw = w + f"mappings/{mapping['id']}/"
    assert mapping["action"] == "identify" and mapping["traits"] == []
    _problem(api.delete(space_url), 409)
    _problem(api.delete(w + f"destinations/{dest['id']}/"), 409)
    assert api.post(mw + "enable/").json()["enabled"] is True
    assert api.post(mw + "disable/").json()["enabled"] is False
    before = Mapping.objects.get(pk=mapping["id"]).resync_generation
    api.post(mw + "resync/")
    assert Mapping.objects.get(pk=mapping["id"]).resync_generation == before + 1
    assert api.get(mw).json()["state_counts"] == {"pending": 0, "delivered": 0, "rejected": 0, "retry": 0}
    assert api.get(w + "delivery-runs/", mapping=mapping["id"]).json()["count"] == 0

    record = RecordFactory(source=source, object_id=51, properties={"email": "ann@example.com"})
    found = api.get(w + "records/", q="ann@example.com").json()
    assert found["record"]["object_id"] == 51 and found["record"]["mappings"][0]["mapping"] == mapping["id"]
    assert api.get(w + f"records/{record.pk}/").json()["record"]["properties"] == {"email": "ann@example.com"}
    _problem(api.get(w + "records/"), 400)
    bad = _problem(api.get(w + "records/", q="emma"), 400)  # neither an id nor an e-mail address
    assert "record id" in bad["errors"]["q"][0]

    assert api.delete(mw).status_code == 204
    assert api.delete(space_url).status_code == 204
    assert api.delete(w + f"destinations/{dest['id']}/").status_code == 204


def test_alert_channels_and_events(api, workspace, owner, settings):
    w = W(workspace) + "alerts/"
    unverified = _problem(api.post(w + "channels/", {"kind": "email", "name": "Ops", "emails": owner.email}), 409)
    assert "verified" in unverified["detail"]
    _verified(owner)
    stranger = _problem(api.post(w + "channels/", {"kind": "email", "name": "Ops", "emails": "x@else.test"}), 400)
    assert "not the verified address" in stranger["errors"]["emails"][0]
    channel = api.post(w + "channels/", {"kind": "email", "name": "Ops", "emails": owner.email})
    assert channel.status_code == 201, channel.content
    url = w + f"channels/{channel.json()['id']}/"
    assert api.patch(url, {"enabled": False}).json()["enabled"] is False
    assert api.patch(url, {"enabled": True}).json()["enabled"] is True
    settings.ALERT_TEST_LIMIT_PER_CHANNEL = 1
    assert api.post(url + "test/").status_code == 202
    assert "No test message sent" in _problem(api.post(url + "test/"), 409)["detail"]
    events = api.get(w + "events/").json()
    assert events["count"] == 1 and events["results"][0]["kind"] == "test"
    assert api.get(w + "problems/", open="true").json()["count"] == 0
    assert api.delete(url).status_code == 204
    assert api.get(w + "channels/").json() == []


def test_a_route_without_its_trailing_slash_is_served(api, workspace):
    w = f"/api/v1/workspaces/{workspace.pk}"
    assert api.get(w).json()["id"] == workspace.pk
    created = api.post(w + "/destinations", {"name": "Segment"})
    assert created.status_code == 201 and created.json()["name"] == "Segment"
    _problem(api.get(w + "/nowhere"), 404)


@pytest.mark.parametrize("path", ["sources/", "models/", "destinations/", "mappings/", "sync-runs/", "delivery-runs/"])
def test_lists_take_the_same_queries_for_two_or_six_objects(api, workspace, path):
    def add(n: int) -> None:
        for _ in range(n):
            source = SourceFactory(workspace=workspace)
            SourceCollectionFactory(source=source)
            mapping = MappingFactory(data_model__source=source)
            SyncRunFactory(source=source, status="succeeded")
            DeliveryRunFactory(mapping=mapping, status="succeeded")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = api.get(W(workspace) + path)
        assert response.status_code == 200
        return len(captured)

    add(2)
    queries()  # the first call of a token also notes its last use
    few = queries()
    add(4)
    assert queries() == few, f"{path}: the queries grow with the rows"


def test_the_root_points_to_the_rest(client):
    links = client.get("/api/v1/").json()
    assert links["docs"].endswith("/api/v1/docs/") and links["workspaces"].endswith("/api/v1/workspaces/")


def test_a_source_needing_reconnect_lends_no_login(api, workspace, source):
    Source.objects.filter(pk=source.pk).update(status=Source.Status.NEEDS_RECONNECT)
    body = {"name": "Second", "connection": {"source": source.pk}, "collections": ["contacts"]}
    refused = _problem(api.post(W(workspace) + "sources/", body), 400)
    assert "reconnected" in refused["errors"]["connection"][0]
    both = _problem(
        api.post(W(workspace) + "sources/", {**body, "connection": {"source": 1, "refresh_token": "x"}}), 400
    )
    assert "either" in str(both["errors"])


def test_a_destination_with_its_profile_space_in_one_call(api, workspace):
    url = W(workspace) + "destinations/"
    body = {"name": "Segment", "profile_space": {"name": "Prod", "region": "us"}}
    assert "profile_space.write_key" in _problem(api.post(url, body), 400)["errors"]
    body["profile_space"].update(write_key="wk_inline_1234", region="custom", endpoint="ftp://x")
    assert "profile_space.endpoint" in _problem(api.post(url, body), 400)["errors"]
    body["profile_space"] = {"name": "Prod", "region": "us", "write_key": "wk_inline_1234"}
    created = api.post(url, body)
    assert created.status_code == 201, created.content
    spaces = created.json()["profile_spaces"]
    assert [(sp["name"], sp["region"], sp["write_key_set"]) for sp in spaces] == [("Prod", "us", True)]
    assert "wk_inline_1234" not in created.content.decode()
    assert ProfileSpace.objects.get().write_key == "wk_inline_1234"

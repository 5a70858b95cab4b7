"""The seed workflow through the API alone, against both sandboxes and a real Celery worker: only the HubSpot
OAuth login is done aside (the sandbox issues the refresh token a browser login would give hubsync). Source,
destination, Profile Space, data model, mapping, a test with a real record, enabling the mapping and then the
source: the first sync starts, the worker extracts and delivers, and the profiles arrive in the Segment sandbox.
The run endpoints report what happened."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from api import services
from api.models import ApiToken
from hubsync.celery import app as celery_app
from sources.models import Source
from tests.mappings.conftest import segment  # noqa: F401 (fixture; `hub` is in tests/conftest.py)
from tests.mappings.test_pipeline_worker import start_worker, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PORTAL = 3377
CONTACTS = 40


def test_the_seed_workflow_through_the_api(workspace, owner, hub, segment, tmp_path):  # noqa: F811
    celery_app.control.purge()
    hub.seed(PORTAL, contacts=CONTACTS, companies=0, deals=0, tickets=0)
    refresh_token = hub.token(PORTAL)["refresh_token"]  # the OAuth login, done aside
    token = services.create_token(
        workspace=workspace, name="CI", role=ApiToken.Role.ADMIN, expires_at=None, actor=owner
    )
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token.token}"
    w = f"{hub.server_url}/api/v1/workspaces/{workspace.pk}/"

    def call(method: str, path: str, body=None, expect: int = 200, **params):
        response = http.request(method, w + path, json=body, params=params, timeout=60)
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json() if response.content else None

    source = call(
        "post",
        "sources/",
        {
            "name": "HubSpot",
            "connection": {"refresh_token": refresh_token},
            "collections": ["contacts"],
            "sync_interval": 3 * 3600,
        },
        expect=201,
    )
    assert source["hub_id"] == PORTAL and source["enabled"] is False and source["collections"] == ["contacts"]
    assert refresh_token not in str(source)
    collections = call("get", f"sources/{source['id']}/collections/")
    assert [c["collection"] for c in collections if c["selected"]] == ["contacts"]

    destination = call("post", "destinations/", {"name": "Segment"}, expect=201)
    space = call(
        "post",
        f"destinations/{destination['id']}/profile-spaces/",
        {"name": "Sandbox", "region": "sandbox", "write_key": segment.write_key},
        expect=201,
    )
    preview = call("get", f"sources/{source['id']}/preview/", collection="contacts", columns="email,firstname")
    assert preview["error"] is None and preview["rows"] and "email" in preview["columns"]
    model = call(
        "post",
        "models/",
        {"source": source["id"], "collection": "contacts", "name": "Contacts", "columns": ["email", "firstname"]},
        expect=201,
    )
    mapping = call(
        "post",
        "mappings/",
        {
            "destination": destination["id"],
            "data_model": model["id"],
            "profile_space": space["id"],
            "action": "identify",
            "identifiers": {"user_id": "id"},
            "traits": [{"column": "email", "trait": "email"}, {"column": "firstname", "trait": "first_name"}],
        },
        expect=201,
    )
    record = preview["rows"][0]
    tested = call("get", f"mappings/{mapping['id']}/test/", record=record["id"])
    assert tested["message"]["userId"] == str(record["id"])
    assert tested["message"]["traits"]["email"] == record["email"]

    call("post", f"sources/{source['id']}/enable/", expect=409)  # no enabled mapping yet: refused, with the reason
    assert call("post", f"mappings/{mapping['id']}/enable/")["enabled"] is True
    log = tmp_path / "worker.log"
    worker = start_worker(hub.server_url, log)
    try:
        assert call("post", f"sources/{source['id']}/enable/")["enabled"] is True  # the first sync starts at once

        def delivered():
            runs = call("get", "delivery-runs/", mapping=mapping["id"])["results"]
            return [r for r in runs if r["status"] == "succeeded"]

        run = wait_for(delivered, 120, "the first delivery", log)[0]
    finally:
        stop(worker)
    assert run["sent"] == CONTACTS and run["progress"]["finished"] is True
    sync = call("get", f"sync-runs/{run['sync_run']}/")
    assert sync["status"] == "succeeded" and sync["trigger"] == "first"
    profiles = {p["userId"]: p["traits"] for p in segment.profiles()}
    assert len(profiles) == CONTACTS
    assert profiles[str(record["id"])]["email"] == record["email"]
    answer = call("get", "records/", q=str(record["id"]))
    assert answer["record"]["mappings"][0]["kind"] == "delivered"

    # A test send is a real write to the Profile Space, of the message a sync builds.
    segment.clear()
    sent = call("post", f"mappings/{mapping['id']}/test/", {"record": record["id"]})
    assert sent["sent"]["ok"] is True
    assert [m["userId"] for m in segment.messages()] == [str(record["id"])]
    model_preview = call("get", f"models/{model['id']}/preview/")
    assert model_preview["error"] is None and len(model_preview["rows"]) > 0

    # Another source on the same HubSpot login (no second OAuth): created disabled, its collections discovered,
    # the login renewed first when its access token has expired.
    first = Source.objects.get(pk=source["id"])
    Source.objects.filter(pk=first.pk).update(access_token_expires_at=timezone.now() - timedelta(hours=1))
    second = call(
        "post",
        "sources/",
        {"name": "HubSpot deals", "connection": {"source": source["id"]}, "collections": ["deals"]},
        expect=201,
    )
    assert second["hub_id"] == PORTAL and second["schema_name"] == "hubspot_deals" and second["enabled"] is False
    renewed = Source.objects.get(pk=second["id"])
    assert renewed.access_token != first.access_token and renewed.access_token_expires_at > timezone.now()
    assert Source.objects.get(pk=first.pk).access_token == renewed.access_token
    bad = http.post(w + "sources/", json={"name": "x", "connection": {"refresh_token": "nope"}, "collections": []})
    assert bad.status_code == 400 and "connection" in bad.json()["errors"]

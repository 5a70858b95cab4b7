"""Data models in the browser's place: Create Model, the live preview and its schema validation, edit, delete.

Everything HubSpot runs against the HubSpot sandbox over real HTTP (live_server); the preview's records are
compared with what the sandbox's own list endpoint returns for the same properties.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests
from django.urls import reverse
from django.utils import timezone

from hubsync.models import AuditEvent
from mappings.models import Mapping
from models_app.models import DataModel
from sources.models import Source, SourceCollection, SyncRun
from sources.ratelimit import get_rate_limiter
from tests.factories import (
    DataModelFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
    SourceCollectionFactory,
    SourceFactory,
    SyncRunFactory,
)

PORTAL = 1001  # the sandbox's default portal: 300 contacts, 120 companies, 150 deals, 80 tickets
CONTACT_COLUMNS = ["email", "firstname", "lifecyclestage", "region"]


@pytest.fixture
def sandbox(hubspot_sandbox, settings, live_server):
    settings.BASE_URL = live_server.url
    settings.HUBSPOT_API_BASE = ""  # the sandbox on BASE_URL
    settings.HUBSPOT_RETRY_BASE_SECONDS = 0.05  # the tests prove the messages, not the patience
    settings.HUBSPOT_RETRY_CAP_SECONDS = 0.2
    get_rate_limiter().reset(str(PORTAL))
    yield hubspot_sandbox
    get_rate_limiter().reset(str(PORTAL))


def make_source(sandbox, workspace, *, scopes=None, **extra) -> Source:
    tok = sandbox.token(PORTAL, scopes)
    source = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        schema_name="hubspot",
        hub_id=PORTAL,
        hub_domain="acme-sandbox.example",
        scopes=scopes or ["oauth", "crm.objects.contacts.read", "crm.objects.companies.read"],
        token=tok["refresh_token"],
        access_token=tok["access_token"],
        access_token_expires_at=timezone.now() + timedelta(seconds=tok["expires_in"]),
        **extra,
    )
    SourceCollectionFactory(source=source, collection="contacts", selected=True)
    SourceCollectionFactory(source=source, collection="companies", selected=True)
    SourceCollectionFactory(source=source, collection="deals", selected=False)
    return source


@pytest.fixture
def source(sandbox, workspace) -> Source:
    return make_source(sandbox, workspace)


def sandbox_list(sandbox, properties: list[str], collection: str = "contacts") -> list[dict]:
    """The first 10 records as the sandbox's list endpoint gives them, asked directly (not through our client)."""
    response = requests.get(
        f"{sandbox.base_url}/crm/v3/objects/{collection}",
        params={"limit": 10, "properties": ",".join(properties)},
        headers=sandbox.headers(PORTAL),
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["results"]


def preview(client, source, collection="contacts", columns=()):
    return client.get(
        reverse("models_app:preview", args=[source.pk]),
        {"collection": collection, "columns": list(columns)},
        HTTP_HX_REQUEST="true",
    )


def flags(response) -> dict[str, tuple[str, ...]]:
    return {f.kind: f.columns for f in response.context["preview"].flags}


# --- Create Model ------------------------------------------------------------------------------------------


def test_create_model_flow(owner_client, owner, source, sandbox):
    # Models tab (empty) -> Create model.
    tab = owner_client.get(reverse("sources:models", args=[source.pk]))
    assert b"No data models yet" in tab.content
    new_url = reverse("models_app:new", args=[source.pk])
    assert new_url.encode() in tab.content

    # Step 1: the source's collections; deals is not in its selective sync and says so.
    pick = owner_client.get(new_url)
    assert pick.status_code == 200
    body = pick.content.decode()
    for label in ("Contacts", "Companies", "Deals"):
        assert label in body
    assert "?collection=deals" in body and "Not in selective sync" in body

    # Step 2: the columns come from HubSpot's schema, discovered live (never discovered before) and stored.
    contacts = SourceCollection.objects.get(source=source, collection="contacts")
    assert contacts.schema_discovered_at is None
    page = owner_client.get(new_url, {"collection": "contacts"})
    assert page.status_code == 200
    contacts.refresh_from_db()
    assert contacts.schema_discovered_at is not None
    assert {"email", "firstname", "region", "hs_object_id"} <= set(contacts.properties)
    groups = {g.label: g for g in page.context["groups"]}
    assert "Contact information" in groups and "Custom properties" in groups
    email = next(c for c in groups["Contact information"].columns if c.name == "email")
    assert (email.label, email.type) == ("Email", "string")
    html = page.content.decode()
    assert 'name="columns" value="email"' in html and "Record ID" in html  # system columns always shown
    assert 'hx-get="' + reverse("models_app:preview", args=[source.pk]) in html

    # Save: name + columns.
    response = owner_client.post(
        new_url, {"collection": "contacts", "name": "Contacts for Profiles", "columns": CONTACT_COLUMNS}
    )
    model = DataModel.objects.get(source=source)
    assert response.status_code == 302 and response["Location"] == reverse("models_app:detail", args=[model.pk])
    assert model.collection == "contacts" and model.name == "Contacts for Profiles"
    assert sorted(model.columns) == sorted(CONTACT_COLUMNS)
    assert model.all_columns[:3] == ["id", "created_at", "updated_at"]
    event = AuditEvent.objects.get(object_type="models_app.DataModel", verb="create")
    assert event.actor == owner and event.changes["collection"] == "contacts"

    # The Models tab lists it: name, collection, number of columns.
    tab = owner_client.get(reverse("sources:models", args=[source.pk])).content.decode()
    assert "Contacts for Profiles" in tab and reverse("models_app:detail", args=[model.pk]) in tab
    assert f'<td class="num">{len(CONTACT_COLUMNS) + 3}</td>' in tab


def test_the_collection_picker_says_what_was_synced_and_when_the_schema_was_read(owner_client, source):
    """A never-synced source's collections say "Never synced" (not "Synced"), a collection whose schema is stored
    says when it was read, and one whose schema was never read says it is read on opening."""
    url = reverse("models_app:new", args=[source.pk])
    read_at = timezone.now() - timedelta(minutes=7)
    SourceCollection.objects.filter(source=source, collection="contacts").update(
        properties={"email": {"label": "Email", "type": "string"}, "firstname": {"label": "First", "type": "string"}},
        schema_discovered_at=read_at,
    )

    def cards() -> dict[str, str]:
        html = owner_client.get(url).content.decode()
        found = re.findall(r'<a class="collection-card[^"]*" href="\?collection=(\w+)">(.*?)</a>', html, re.S)
        return {name: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip() for name, body in found}

    before = cards()
    assert "Never synced" in before["contacts"] and "Synced" not in before["contacts"].replace("Never synced", "")
    assert "2 properties · schema read 7 min" in before["contacts"]
    assert "Never synced" in before["companies"]
    assert "schema not read yet" in before["companies"]
    assert "Not in selective sync" in before["deals"] and "Never synced" not in before["deals"]

    # After a first sync that read contacts and failed on companies.
    finished = timezone.now() - timedelta(minutes=20)
    Source.objects.filter(pk=source.pk).update(first_synced_at=finished)
    SyncRunFactory(
        source=source,
        status=SyncRun.Status.PARTIAL,
        finished_at=finished,
        counts={"contacts": {"read": 300, "error": ""}, "companies": {"read": 0, "error": "HubSpot answered 403"}},
    )
    after = cards()
    assert "Synced 20 min" in after["contacts"]
    assert "Never synced" in after["companies"]


def test_the_picker_explains_unselected_collections_only_when_it_lists_one(owner_client, source):
    url = reverse("models_app:new", args=[source.pk])
    note = "Collections not in the selective sync can be modelled"
    assert note in owner_client.get(url).content.decode()  # deals is listed, not in the selective sync
    SourceCollection.objects.filter(source=source, selected=False).delete()  # the wizard's source: selected only
    assert note not in owner_client.get(url).content.decode()


def test_name_must_be_unique_per_source_and_a_column_is_needed(owner_client, source):
    DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    SourceCollection.objects.filter(source=source, collection="contacts").update(
        properties={"email": {"label": "Email", "type": "string"}}, schema_discovered_at=timezone.now()
    )
    url = reverse("models_app:new", args=[source.pk])
    response = owner_client.post(url, {"collection": "contacts", "name": "contacts", "columns": ["email"]})
    assert response.status_code == 400
    assert "already has a model called" in response.content.decode()
    response = owner_client.post(url, {"collection": "contacts", "name": "Other", "columns": []})
    assert response.status_code == 400
    assert "Tick at least one column" in response.content.decode()
    # A column HubSpot does not have cannot be smuggled in.
    response = owner_client.post(url, {"collection": "contacts", "name": "Other", "columns": ["nope"]})
    assert response.status_code == 400
    assert DataModel.objects.filter(source=source).count() == 1


def test_edit_columns_is_audited(owner_client, source, sandbox):
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    page = owner_client.get(reverse("models_app:detail", args=[model.pk]))
    assert page.status_code == 200 and b"Save changes" in page.content
    response = owner_client.post(
        reverse("models_app:detail", args=[model.pk]), {"name": "Contacts", "columns": ["firstname", "email"]}
    )
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.columns == ["email", "firstname"]  # kept columns keep their place
    event = AuditEvent.objects.get(object_type="models_app.DataModel", verb="update")
    assert event.changes == {"columns": {"added": ["firstname"], "removed": []}}


def test_columns_are_counted_alike_in_the_message_the_model_page_the_models_tab_and_the_preview(
    owner_client, source, sandbox
):
    """Four chosen properties make a model of seven columns (with the record id and its two timestamps): the save
    message, the model page, the Models tab and the preview all say seven."""
    url = reverse("models_app:new", args=[source.pk])
    owner_client.get(url, {"collection": "contacts"})  # reads the schema
    response = owner_client.post(
        url, {"collection": "contacts", "name": "Contacts", "columns": CONTACT_COLUMNS}, follow=True
    )
    model = DataModel.objects.get(source=source)
    assert model.column_count == 7
    html = response.content.decode()
    assert "was created with 7 columns" in html
    assert "7 columns · updated" in html  # the model page's header
    tab = owner_client.get(reverse("sources:models", args=[source.pk])).content.decode()
    assert '<td class="num">7</td>' in tab
    fragment = preview(owner_client, source, columns=model.columns).content.decode()
    assert "· 7 columns ·" in fragment and "<strong>7 columns</strong>" in fragment


# --- the live preview ----------------------------------------------------------------------------------


def test_a_valid_schema_is_said_with_the_columns_and_their_types(owner_client, source, sandbox):
    owner_client.get(reverse("models_app:new", args=[source.pk]), {"collection": "contacts"})
    response = preview(owner_client, source, columns=["email", "firstname", "lifecyclestage"])
    result = response.context["preview"]
    assert result.schema_valid
    assert result.type_summary == [("datetime", 2), ("string", 2), ("enumeration", 1), ("number", 1)]
    assert (
        result.schema_read_at == SourceCollection.objects.get(source=source, collection="contacts").schema_discovered_at
    )
    html = re.sub(r"\s+", " ", response.content.decode())
    assert 'data-schema="valid"' in html
    assert (
        "Schema valid</span> <span><strong>6 columns</strong>, types: 2 datetime, 2 string, 1 enumeration, 1 number."
        in html
    )
    assert "Every column is in HubSpot's schema of contacts, read " in html


def test_no_schema_valid_state_when_a_column_is_missing_or_hubspot_fails(owner_client, source, sandbox):
    owner_client.get(reverse("models_app:new", args=[source.pk]), {"collection": "contacts"})
    response = preview(owner_client, source, columns=["email", "no_such_property"])
    assert not response.context["preview"].schema_valid
    assert 'data-schema="valid"' not in response.content.decode()
    # Without a stored schema nothing was checked, so nothing is called valid.
    SourceCollection.objects.filter(source=source, collection="contacts").update(properties={})
    response = preview(owner_client, source, columns=["email"])
    assert response.context["preview"].error is None and not response.context["preview"].schema_valid
    sandbox.set_knobs(fail_next=20, fail_next_status="503")
    response = preview(owner_client, source, columns=["email"])
    assert response.context["preview"].error is not None
    assert 'data-schema="valid"' not in response.content.decode()


def test_preview_shows_the_first_ten_records_from_hubspot(owner_client, source, sandbox, django_assert_max_num_queries):
    owner_client.get(reverse("models_app:new", args=[source.pk]), {"collection": "contacts"})  # discovers the schema
    with django_assert_max_num_queries(12):
        response = preview(owner_client, source, columns=CONTACT_COLUMNS)
    assert response.status_code == 200
    result = response.context["preview"]
    assert result.error is None
    assert result.api_calls == 1  # one HubSpot request per refresh
    assert result.columns == ["id", "created_at", "updated_at", *CONTACT_COLUMNS]

    expected = sandbox_list(sandbox, CONTACT_COLUMNS)
    assert len(expected) == 10 and len(result.rows) == 10
    for row, record in zip(result.rows, expected, strict=True):
        assert row["id"] == record["id"]
        assert row["created_at"] == record["createdAt"] and row["updated_at"] == record["updatedAt"]
        for column in CONTACT_COLUMNS:
            assert row[column] == (record["properties"].get(column) or None), column
    html = response.content.decode()
    assert expected[0]["id"] in html and expected[0]["properties"]["email"] in html
    assert "Email" in html and "lifecyclestage" in html  # headers: label and name
    assert 'data-state="ok"' in html

    # Other columns, another request, the same records.
    response = preview(owner_client, source, columns=["firstname"])
    assert response.context["preview"].columns == ["id", "created_at", "updated_at", "firstname"]
    assert [r["id"] for r in response.context["preview"].rows] == [r["id"] for r in expected]


def test_preview_without_a_collection_or_columns(owner_client, source, sandbox):
    response = owner_client.get(reverse("models_app:preview", args=[source.pk]))
    assert response.status_code == 200 and b"Pick a collection" in response.content
    response = preview(owner_client, source, collection="nope")
    assert response.status_code == 200 and "no collection" in response.content.decode()
    response = preview(owner_client, source, columns=[])  # system columns only
    assert response.context["preview"].columns == ["id", "created_at", "updated_at"]
    assert len(response.context["preview"].rows) == 10


def test_a_column_deleted_in_hubspot_is_flagged(owner_client, source, sandbox):
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email", "region"])
    owner_client.get(reverse("models_app:detail", args=[model.pk]))
    assert "region" in SourceCollection.objects.get(source=source, collection="contacts").properties
    assert "missing" not in flags(preview(owner_client, source, columns=model.columns))

    sandbox.delete_property("region", portal=PORTAL)
    # Opening the model reads the schema again: the deleted property is shown as gone, still ticked.
    page = owner_client.get(reverse("models_app:detail", args=[model.pk]))
    assert "No longer in HubSpot" in page.content.decode()
    contacts = SourceCollection.objects.get(source=source, collection="contacts")
    assert "region" not in contacts.properties
    assert contacts.schema_changes[-1]["removed"] == ["region"]
    response = preview(owner_client, source, columns=model.columns)
    assert flags(response)["missing"] == ("region",)
    assert "Missing in HubSpot" in response.content.decode()
    assert response.context["preview"].error is None  # the rest of the preview still shows


def test_a_schema_change_first_seen_by_the_model_page_flags_the_mappings_like_a_sync(owner_client, source, sandbox):
    """The model page reads HubSpot's schema and stores it: a property deleted in HubSpot must pause the mappings
    that send it right then; if the page only stored the schema, the next sync would see nothing changed."""
    from mappings.models import MappingIssue

    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email", "region"])
    owner_client.get(reverse("models_app:detail", args=[model.pk]))  # the schema as it is now
    destination = DestinationFactory(workspace=source.workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Prod", write_key="k", region="sandbox")
    mapping = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=[["region", "region"]],
        enabled=True,
    )
    sandbox.delete_property("region", portal=PORTAL)
    owner_client.get(reverse("models_app:detail", args=[model.pk]))
    mapping.refresh_from_db()
    assert mapping.paused
    assert MappingIssue.objects.get(mapping=mapping).property_name == "region"


def test_a_column_empty_in_every_previewed_record_is_flagged(owner_client, source, sandbox):
    sandbox.add_property("legacy_code", portal=PORTAL, label="Legacy code")
    owner_client.get(reverse("models_app:new", args=[source.pk]), {"collection": "contacts"})
    response = preview(owner_client, source, columns=["email", "legacy_code"])
    assert flags(response) == {"empty": ("legacy_code",)}
    assert "Always empty" in response.content.decode()


def test_an_unselected_collection_is_flagged(owner_client, source, sandbox):
    response = preview(owner_client, source, collection="deals", columns=["dealname"])
    assert "unselected" in flags(response)
    assert "not selected in this source" in response.content.decode()
    assert len(response.context["preview"].rows) == 10  # still previewed
    page = owner_client.get(reverse("models_app:new", args=[source.pk]), {"collection": "deals"})
    assert "Deals is not in this source" in page.content.decode()


# --- HubSpot errors are messages in the fragment, never a 500 ----------------------------------------------


def test_hubspot_down_after_retries_is_a_message(owner_client, source, sandbox):
    # Without a stored schema nothing was checked, so nothing is called valid.
    SourceCollection.objects.filter(source=source, collection="contacts").update(properties={})
    response = preview(owner_client, source, columns=["email"])
    assert response.context["preview"].error is None and not response.context["preview"].schema_valid
    sandbox.set_knobs(fail_next=20, fail_next_status="503")
    response = preview(owner_client, source, columns=["email"])
    assert response.status_code == 200
    result = response.context["preview"]
    assert result.error.kind == "unavailable" and result.api_calls == 3  # a couple of quick retries
    assert "HubSpot is not answering right now" in response.content.decode()
    assert "Try again" in response.content.decode()


def test_missing_scope_is_a_message(owner_client, workspace, sandbox):
    source = make_source(sandbox, workspace, scopes=["oauth", "crm.objects.contacts.read"])
    response = preview(owner_client, source, collection="companies", columns=["name"])
    assert response.status_code == 200
    assert response.context["preview"].error.kind == "scope"
    assert "may not read companies" in response.content.decode()


def test_revoked_login_is_a_reconnect_message(owner_client, workspace, sandbox):
    source = make_source(sandbox, workspace)
    Source.objects.filter(pk=source.pk).update(token="revoked-refresh-token", access_token_expires_at=timezone.now())
    response = preview(owner_client, source, columns=["email"])
    assert response.status_code == 200
    assert response.context["preview"].error.kind == "reconnect"
    assert "HubSpot needs to be reconnected" in response.content.decode()
    source.refresh_from_db()
    assert source.status == Source.Status.NEEDS_RECONNECT
    assert "revoked-refresh-token" not in response.content.decode()
    # The builder page itself still opens, with the schema stored before.
    page = owner_client.get(reverse("models_app:new", args=[source.pk]), {"collection": "contacts"})
    assert page.status_code == 200 and "HubSpot needs to be reconnected" in page.content.decode()


# --- delete -----------------------------------------------------------------------------------------------


def _mapping(workspace, model) -> Mapping:
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Production", write_key="wk_secret_1")
    return MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Contacts to Profiles",
        identifiers={"user_id": "email"},
    )


def test_delete_is_refused_while_a_mapping_uses_the_model(owner_client, workspace, source):
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    mapping = _mapping(workspace, model)
    url = reverse("models_app:delete", args=[model.pk])
    page = owner_client.get(url).content.decode()
    assert "cannot be deleted" in page and mapping.name in page and "Delete model" not in page
    response = owner_client.post(url)
    assert response.status_code == 409 and mapping.name in response.content.decode()
    assert DataModel.objects.filter(pk=model.pk).exists()
    assert not AuditEvent.objects.filter(verb="delete").exists()
    # The Models tab names the mapping that uses it.
    tab = owner_client.get(reverse("sources:models", args=[source.pk])).content.decode()
    assert mapping.name in tab


def test_delete_with_confirmation(owner_client, owner, source):
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    url = reverse("models_app:delete", args=[model.pk])
    assert b"Delete model" in owner_client.get(url).content
    response = owner_client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("sources:models", args=[source.pk])
    assert not DataModel.objects.filter(pk=model.pk).exists()
    event = AuditEvent.objects.get(verb="delete", object_type="models_app.DataModel")
    assert event.actor == owner and event.changes["columns"] == ["email"]


# --- roles and tenants -----------------------------------------------------------------------------------


def test_viewer_sees_everything_and_changes_nothing(viewer_client, source, sandbox):
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    tab = viewer_client.get(reverse("sources:models", args=[source.pk])).content.decode()
    assert "Contacts" in tab and "Create model" not in tab and "Delete" not in tab
    assert "Add destination" not in tab  # a viewer would only meet a 403 there
    page = viewer_client.get(reverse("models_app:detail", args=[model.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Save changes" not in html and 'type="hidden" name="columns" value="email"' in html
    assert preview(viewer_client, source, columns=["email"]).status_code == 200
    assert viewer_client.get(reverse("models_app:new", args=[source.pk])).status_code == 403
    assert (
        viewer_client.post(
            reverse("models_app:detail", args=[model.pk]), {"name": "X", "columns": ["email"]}
        ).status_code
        == 403
    )
    assert viewer_client.post(reverse("models_app:delete", args=[model.pk])).status_code == 403
    model.refresh_from_db()
    assert model.name == "Contacts" and DataModel.objects.count() == 1


def test_outsider_gets_404(outsider_client, source):
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    for url in (
        reverse("models_app:new", args=[source.pk]),
        reverse("models_app:preview", args=[source.pk]) + "?collection=contacts&columns=email",
        reverse("models_app:detail", args=[model.pk]),
        reverse("models_app:delete", args=[model.pk]),
    ):
        assert outsider_client.get(url).status_code == 404, url
        assert outsider_client.post(url).status_code == 404, url
    assert DataModel.objects.filter(pk=model.pk).exists()

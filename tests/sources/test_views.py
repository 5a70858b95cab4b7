from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.db import connection as db
from django.urls import reverse
from django.utils import timezone

from hubsync.models import AuditEvent
from sources import selectors
from sources.models import Record, Source, SourceCollection, SyncRun
from sources.oauth import DiscoveredCollection, remember_available
from tests.factories import (
    DataModelFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
    RecordFactory,
    SourceCollectionFactory,
    SourceFactory,
    SyncRunFactory,
)
from tests.sources.wizard_helpers import ACCESS_TOKEN, REFRESH_TOKEN, make_connection, put_wizard

pytestmark = pytest.mark.django_db

DISCOVERED = [
    {"name": "contacts", "label": "Contacts", "count": 42, "error": ""},
    {"name": "companies", "label": "Companies", "count": 31, "error": ""},
    {"name": "tickets", "label": "Tickets", "count": 12, "error": ""},
]


@pytest.fixture
def source(workspace) -> Source:
    s = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        hub_id=4242,
        hub_domain="portal-4242.hubspot.test",
        scopes=["crm.objects.companies.read", "crm.objects.contacts.read", "oauth"],
        token=REFRESH_TOKEN,
        access_token=ACCESS_TOKEN,
        schema_name="hubspot",
    )
    SourceCollectionFactory(source=s, collection="contacts")
    SourceCollectionFactory(source=s, collection="companies")
    # What the wizard leaves behind: the collections HubSpot offered, so the Settings tab needs no HTTP here.
    remember_available(s, [DiscoveredCollection(n, n.title(), 10) for n in ("contacts", "companies", "deals")])
    return s


@pytest.fixture
def foreign_source(other_workspace) -> Source:
    return SourceFactory(workspace=other_workspace, name="Globex HubSpot", hub_id=777, token="x", schema_name="hubspot")


# --- list and catalog -----------------------------------------------------------------------------------


def test_empty_list_leads_to_the_catalog(owner_client):
    response = owner_client.get(reverse("sources:list"))
    assert response.status_code == 200
    assert b"Connect your first source" in response.content
    assert reverse("sources:catalog").encode() in response.content


def test_catalog_lists_what_can_be_connected_and_hubspot_is_selectable(owner_client):
    response = owner_client.get(reverse("sources:catalog"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "HubSpot" in page and "Segment Profiles" in page and "coming soon" not in page.lower()
    assert 'type="search"' in page and 'name="q"' in page
    # Nothing selected yet: the card is a link that selects it; Add Source belongs to the selection.
    assert reverse("sources:new") not in page and "?selected=hubspot#selected" in page
    page = owner_client.get(reverse("sources:catalog"), {"selected": "hubspot"}).content.decode()
    assert f'href="{reverse("sources:new")}">Add Source</a>' in page and 'aria-current="true"' in page


def test_catalog_search_works_without_javascript(owner_client):
    page = owner_client.get(reverse("sources:catalog"), {"q": "hubspot"}).content.decode()
    # The one match is selected at once, with its Add Source button; the other card is hidden.
    assert f'href="{reverse("sources:new")}">Add Source</a>' in page
    assert re.search(r'data-slug="segment-profiles"[^>]*hidden', page)
    assert not re.search(r'data-slug="hubspot"[^>]*hidden', page)
    page = owner_client.get(reverse("sources:catalog"), {"q": "crm hub"}).content.decode()
    assert 'data-slug="hubspot"' in page and reverse("sources:new") in page
    page = owner_client.get(reverse("sources:catalog"), {"q": "salesforce"}).content.decode()
    assert "Nothing in the catalog matches" in page and 'id="catalog-empty" hidden' not in page
    assert reverse("sources:new") not in page


def test_sidebar_has_connections_catalog(owner_client):
    page = owner_client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("sources:catalog")}"' in page and ">Catalog</a>" in page


def test_list_shows_sources_of_this_workspace_only(owner_client, source, foreign_source):
    response = owner_client.get(reverse("sources:list"))
    assert source.hub_domain.encode() in response.content
    assert b"Globex HubSpot" not in response.content


# --- the wizard ------------------------------------------------------------------------------------------


def test_step_one_keeps_name_and_label_in_the_session(owner_client, workspace):
    response = owner_client.post(reverse("sources:new"), {"name": "HubSpot EU", "label": "Production"})
    assert response.status_code == 302
    assert response["Location"] == reverse("sources:wizard_connect")
    wizard = owner_client.session["source_wizard"]
    assert wizard["name"] == "HubSpot EU" and wizard["label"] == "Production"
    page = owner_client.get(response["Location"])
    assert b"Log in to HubSpot" in page.content


def test_later_steps_without_a_login_go_back(owner_client, workspace):
    put_wizard(owner_client, workspace)
    assert owner_client.get(reverse("sources:wizard_schema"))["Location"] == reverse("sources:wizard_connect")
    assert owner_client.get(reverse("sources:wizard_sync"))["Location"] == reverse("sources:wizard_connect")


def test_schema_name_defaults_to_a_slug_of_the_name(owner_client, workspace, source):
    put_wizard(owner_client, workspace, name="HubSpot", connection=make_connection(hub_id=99))
    response = owner_client.get(reverse("sources:wizard_schema"))
    # "hubspot" is taken by the existing source, so the default moves on.
    assert b'value="hubspot_2"' in response.content
    assert b"fixed after the first sync" in response.content


@pytest.mark.parametrize("bad", ["HubSpot", "hub-spot", "hub spot", "1hubspot", "hubspot!", "_x", "é"])
def test_schema_name_refuses_bad_characters(owner_client, workspace, bad):
    put_wizard(owner_client, workspace, connection=make_connection())
    response = owner_client.post(reverse("sources:wizard_schema"), {"schema_name": bad})
    assert response.status_code == 200
    assert b"lowercase letters, digits and underscores" in response.content
    assert "schema_name" not in owner_client.session["source_wizard"]


def test_schema_name_must_be_unique_in_the_workspace(owner_client, workspace, source, foreign_source):
    put_wizard(owner_client, workspace, connection=make_connection(hub_id=99))
    response = owner_client.post(reverse("sources:wizard_schema"), {"schema_name": "hubspot"})
    assert b"already uses the schema name" in response.content
    # Another workspace's "hubspot" does not count: only this workspace's names must differ.
    foreign_source.schema_name = "globex_only"
    foreign_source.save()
    response = owner_client.post(reverse("sources:wizard_schema"), {"schema_name": "globex_only"})
    assert response["Location"] == reverse("sources:wizard_sync")


def test_selective_sync_lists_collections_with_property_counts(owner_client, workspace):
    put_wizard(owner_client, workspace, connection=make_connection(), schema_name="hubspot", discovered=DISCOVERED)
    response = owner_client.get(reverse("sources:wizard_sync"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Contacts" in body and "42 properties" in body and "Tickets" in body and "12 properties" in body
    assert "Every 3 hours" in body and "Every 15 minutes" in body and "Every 24 hours" in body
    # Default frequency: every 3 hours.
    assert '<option value="10800" selected>' in body


def test_finish_creates_the_source_disabled(owner_client, workspace, owner):
    put_wizard(
        owner_client,
        workspace,
        name="HubSpot",
        label="Prod",
        connection=make_connection(),
        schema_name="hubspot",
        discovered=DISCOVERED,
    )
    response = owner_client.post(
        reverse("sources:wizard_sync"),
        {"start_date": "2024-01-01", "sync_interval": "3600", "collections": ["contacts", "tickets"]},
    )
    source = Source.objects.get(workspace=workspace)
    assert response["Location"] == reverse("sources:detail", args=[source.pk])
    assert source.enabled is False
    assert (source.name, source.label, source.schema_name) == ("HubSpot", "Prod", "hubspot")
    assert source.hub_id == 4242 and source.hub_domain == "portal-4242.hubspot.test"
    assert source.start_date == date(2024, 1, 1) and source.sync_interval == timedelta(hours=1)
    assert source.token == REFRESH_TOKEN and source.access_token == ACCESS_TOKEN
    assert sorted(source.collections.values_list("collection", flat=True)) == ["contacts", "tickets"]
    assert not SyncRun.objects.exists()
    event = AuditEvent.objects.get(workspace=workspace, verb="create", object_type="sources.Source")
    assert event.actor == owner and event.changes["collections"] == ["contacts", "tickets"]
    assert "source_wizard" not in owner_client.session
    # Encrypted at rest; the plaintext appears nowhere in the row.
    with db.cursor() as cur:
        cur.execute("SELECT token, access_token FROM sources_source WHERE id = %s", [source.pk])
        raw = cur.fetchone()
    assert all(v.startswith("fernet:") for v in raw) and REFRESH_TOKEN not in "".join(raw)
    # The page says why it is disabled.
    page = owner_client.get(response["Location"])
    assert b"Finish setting up" in page.content


def test_finish_keeps_the_schemas_the_wizard_read(owner_client, workspace):
    """The wizard read each collection's properties to count them: the source's collections keep that schema and
    when it was read, so nothing reads it again to say so (the model builder's collection picker shows it)."""
    read_at = timezone.now() - timedelta(minutes=3)
    schema = {"email": {"label": "Email", "type": "string", "fieldType": "text", "groupName": "contactinformation"}}
    discovered = [{**DISCOVERED[0], "schema": schema}, *DISCOVERED[1:]]
    put_wizard(
        owner_client,
        workspace,
        connection=make_connection(),
        schema_name="hubspot",
        discovered=discovered,
        discovered_at=read_at.isoformat(),
    )
    response = owner_client.post(
        reverse("sources:wizard_sync"), {"sync_interval": "10800", "collections": ["contacts", "tickets"]}
    )
    assert response.status_code == 302
    contacts = SourceCollection.objects.get(source__workspace=workspace, collection="contacts")
    assert contacts.properties == schema and contacts.schema_discovered_at == read_at
    tickets = SourceCollection.objects.get(source__workspace=workspace, collection="tickets")
    assert tickets.properties == {} and tickets.schema_discovered_at is None  # nothing read: nothing claimed


def test_collections_last_synced(source):
    assert selectors.collections_last_synced(source) == {}
    now = timezone.now()
    counts = {"read": 1, "new": 1, "error": ""}
    SyncRunFactory(
        source=source,
        status=SyncRun.Status.SUCCEEDED,
        finished_at=now - timedelta(hours=5),
        counts={"contacts": counts, "companies": counts},
    )
    SyncRunFactory(
        source=source,
        status=SyncRun.Status.PARTIAL,
        finished_at=now - timedelta(hours=1),
        counts={"contacts": counts, "companies": {**counts, "error": "HubSpot answered 403"}},
    )
    SyncRunFactory(source=source, status=SyncRun.Status.FAILED, finished_at=now, counts={"contacts": counts})
    SyncRunFactory(source=source, status=SyncRun.Status.RUNNING, counts={"contacts": counts})
    # Never synced while the source has no first sync.
    assert selectors.collections_last_synced(source) == {}
    source.first_synced_at = now - timedelta(hours=5)
    assert selectors.collections_last_synced(source) == {
        "contacts": now - timedelta(hours=1),
        "companies": now - timedelta(hours=5),
    }


def test_finish_needs_a_collection(owner_client, workspace):
    put_wizard(owner_client, workspace, connection=make_connection(), schema_name="hubspot", discovered=DISCOVERED)
    response = owner_client.post(reverse("sources:wizard_sync"), {"sync_interval": "10800"})
    assert b"Choose at least one collection" in response.content
    assert not Source.objects.exists()


def test_wizard_session_holds_no_plaintext_token(owner_client, workspace):
    put_wizard(owner_client, workspace, connection=make_connection())
    stored = str(dict(owner_client.session.items()))
    assert ACCESS_TOKEN not in stored and REFRESH_TOKEN not in stored
    assert "fernet:" in stored


def test_wizard_of_another_workspace_is_not_continued(owner_client, workspace, other_workspace):
    put_wizard(owner_client, other_workspace, connection=make_connection(), schema_name="x", discovered=DISCOVERED)
    response = owner_client.get(reverse("sources:wizard_sync"))
    assert response["Location"] == reverse("sources:new")


# --- source page -----------------------------------------------------------------------------------------


def test_overview_shows_state_and_checklist(owner_client, source):
    SyncRunFactory(
        source=source,
        trigger="manual",
        status="succeeded",
        counts={"contacts": {"read": 10, "new": 7, "updated": 2, "unchanged": 1, "archived": 0, "deleted": 3}},
    )
    response = owner_client.get(reverse("sources:detail", args=[source.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "portal-4242.hubspot.test" in body and "Disabled" in body
    for title in (
        "Connect HubSpot",
        "Add a Segment Profiles destination",
        "Create a data model",
        "Add a mapping",
        "Enable the mapping",
    ):
        assert title in body
    assert "Sync now" in body and "Full sync" in body
    assert "<td>10</td><td>7</td><td>2</td><td>1</td><td>0</td><td>3</td>" in body.replace("\n", "")
    assert ">Deleted</th>" in body


def test_checklist_has_only_the_connection_done(source):
    steps = {s.key: s.done for s in selectors.checklist(source)}
    assert steps == {
        "connected": True,
        "destination": False,
        "data_model": False,
        "mapping": False,
        "mapping_enabled": False,
    }
    source.status = Source.Status.NEEDS_RECONNECT
    assert {s.key: s.done for s in selectors.checklist(source)}["connected"] is False


def test_enabling_is_refused_with_an_explanation(owner_client, source):
    response = owner_client.post(reverse("sources:enable", args=[source.pk]), {"enabled": "1"}, follow=True)
    source.refresh_from_db()
    assert source.enabled is False
    assert not SyncRun.objects.exists()
    body = response.content.decode()
    assert "cannot be enabled yet" in body and "Enable the mapping" in body and "Add a mapping" in body
    # Refused from Settings → Basic settings, the page it comes back to: the Enable source toggle is there, off.
    assert response.redirect_chain[-1][0] == reverse("sources:settings", args=[source.pk])
    basic = body[body.index("<h2>Basic settings</h2>") : body.index('id="selective-sync"')]
    assert 'role="switch"' in basic and 'aria-label="Enable source"' in basic and 'aria-checked="false"' in basic
    allowed, missing = selectors.can_enable(source)
    assert not allowed and any("mapping" in m for m in missing)


def test_enabling_once_allowed_starts_the_first_sync(
    owner_client, source, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(selectors, "can_enable", lambda s: (True, []))
    sent = []
    monkeypatch.setattr("sources.tasks.run_sync.delay", lambda run_id: sent.append(run_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("sources:enable", args=[source.pk]), {"enabled": "1"}, follow=True)
    source.refresh_from_db()
    assert source.enabled is True
    run = SyncRun.objects.get(source=source)
    assert run.trigger == "first" and run.status == "queued" and sent == [run.pk]
    # The page links to the first sync as it runs (the message, and the banner while it is active).
    run_url = reverse("sync_run", args=[source.pk, run.pk])
    body = response.content.decode()
    assert f'<a href="{run_url}">follow it</a>' in body
    assert "The first sync is queued." in body and f'href="{run_url}">Follow it as it runs' in body
    assert 'aria-checked="true"' in body
    assert AuditEvent.objects.filter(verb="enable", object_id=str(source.pk)).exists()
    owner_client.post(reverse("sources:enable", args=[source.pk]), {"enabled": "0"})
    source.refresh_from_db()
    assert source.enabled is False and source.next_sync_at is None
    assert AuditEvent.objects.filter(verb="disable", object_id=str(source.pk)).exists()


def test_sync_now_needs_an_enabled_source(owner_client, source):
    response = owner_client.post(reverse("sources:sync", args=[source.pk]), follow=True)
    assert b"Enable the source first" in response.content
    assert not SyncRun.objects.exists()


def test_sync_now_and_full_sync(owner_client, source):
    source.enabled = True
    source.save()
    owner_client.post(reverse("sources:sync", args=[source.pk]))
    run = SyncRun.objects.get(source=source)
    assert run.trigger == "manual"
    # One at a time: a second click while queued adds nothing.
    response = owner_client.post(reverse("sources:sync", args=[source.pk]), follow=True)
    assert b"already queued or running" in response.content and SyncRun.objects.count() == 1
    run.status = "succeeded"
    run.save()
    confirm = owner_client.get(reverse("sources:full_sync", args=[source.pk]))
    assert b"Start a full sync?" in confirm.content
    assert b"permanently deleted</strong> in HubSpot" in confirm.content
    assert b"removes them from the mirror" in confirm.content
    source.start_date = date(2025, 1, 1)
    source.save(update_fields=["start_date"])
    confirm = owner_client.get(reverse("sources:full_sync", args=[source.pk]))
    assert b"permanently deleted</strong> in HubSpot" in confirm.content
    assert b"one API request per 100 records HubSpot holds" in confirm.content
    assert b"about <strong>" not in confirm.content  # nothing in the mirror, no pass run yet: no estimate
    from sources.models import Record

    Record.objects.bulk_create(
        Record(source=source, collection="contacts", object_id=i, content_hash="h", change_seq=i) for i in range(250)
    )
    confirm = owner_client.get(reverse("sources:full_sync", args=[source.pk]))
    assert b"about <strong>3 requests</strong> for at least 250 records" in confirm.content
    run.counts = {"contacts": {"listed": 1234, "deleted": 0}, "companies": {"listed": 0}}
    run.save(update_fields=["counts"])
    confirm = owner_client.get(reverse("sources:full_sync", args=[source.pk]))
    assert b"about <strong>13 requests</strong> for 1234 records (as counted by the last full sync)" in confirm.content
    assert SyncRun.objects.count() == 1  # the confirmation page starts nothing
    owner_client.post(reverse("sources:full_sync", args=[source.pk]))
    assert SyncRun.objects.filter(source=source, trigger="full", status="queued").exists()
    assert AuditEvent.objects.filter(verb="sync.full").exists()


def test_models_tab_explains_the_empty_state(owner_client, source):
    response = owner_client.get(reverse("sources:models", args=[source.pk]))
    assert response.status_code == 200
    assert b"No data models yet" in response.content


def test_basic_settings_are_saved_and_audited(owner_client, source):
    response = owner_client.post(
        reverse("sources:settings", args=[source.pk]),
        {"section": "basic", "name": "HubSpot US", "label": "Sales", "schema_name": "hubspot_us"},
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.name, source.label, source.schema_name) == ("HubSpot US", "Sales", "hubspot_us")
    event = AuditEvent.objects.get(verb="update", object_id=str(source.pk))
    assert event.changes["name"] == ["HubSpot", "HubSpot US"]


def test_schema_name_is_fixed_after_the_first_sync(owner_client, source):
    source.first_synced_at = timezone.now()
    source.save()
    owner_client.post(
        reverse("sources:settings", args=[source.pk]),
        {"section": "basic", "name": "HubSpot", "label": "", "schema_name": "renamed"},
    )
    source.refresh_from_db()
    assert source.schema_name == "hubspot"


def test_start_date_change_after_first_sync_says_full_sync_rereads_history(owner_client, source):
    source.first_synced_at = timezone.now()
    source.save()
    page = owner_client.get(reverse("sources:settings", args=[source.pk]))
    assert b"history is re-read only by a full sync" in page.content
    response = owner_client.post(
        reverse("sources:settings", args=[source.pk]),
        {
            "section": "sync",
            "start_date": "2023-06-01",
            "sync_interval": "10800",
            "collections": ["contacts", "companies"],
        },
        follow=True,
    )
    source.refresh_from_db()
    assert source.start_date == date(2023, 6, 1)
    assert b"History is re-read only by a full sync" in response.content
    assert not SyncRun.objects.exists()  # nothing is re-read by itself


def test_removing_a_collection_keeps_its_mirror_rows(owner_client, source):
    RecordFactory(source=source, collection="companies", object_id=1, properties={}, content_hash="h", change_seq=1)
    response = owner_client.post(
        reverse("sources:settings", args=[source.pk]),
        {"section": "sync", "start_date": "", "sync_interval": "10800", "collections": ["contacts"]},
        follow=True,
    )
    assert SourceCollection.objects.get(source=source, collection="companies").selected is False
    assert Record.objects.filter(source=source, collection="companies").count() == 1
    assert b"no longer synced. The rows already in the mirror stay." in response.content
    event = AuditEvent.objects.get(verb="update", object_id=str(source.pk))
    assert event.changes["collections_removed"] == ["companies"]
    # And back again.
    owner_client.post(
        reverse("sources:settings", args=[source.pk]),
        {"section": "sync", "start_date": "", "sync_interval": "10800", "collections": ["contacts", "companies"]},
    )
    assert SourceCollection.objects.get(source=source, collection="companies").selected is True


def test_needs_reconnect_shows_a_banner_with_the_button(owner_client, viewer_client, source):
    source.status = Source.Status.NEEDS_RECONNECT
    source.status_detail = "HubSpot revoked the refresh token."
    source.save()
    body = owner_client.get(reverse("sources:detail", args=[source.pk])).content.decode()
    assert "HubSpot needs to be reconnected" in body and "HubSpot revoked the refresh token." in body
    assert reverse("sources:reconnect", args=[source.pk]) in body
    response = owner_client.post(reverse("sources:sync", args=[source.pk]), follow=True)
    assert b"Reconnect HubSpot first" in response.content


def test_delete_needs_confirmation_and_keeps_only_the_audit(owner_client, source, owner):
    SyncRunFactory(source=source, trigger="manual", status="succeeded")
    RecordFactory(source=source, collection="contacts", object_id=1, properties={}, content_hash="h", change_seq=1)
    url = reverse("sources:delete", args=[source.pk])
    assert b"Type the source" in owner_client.get(url).content
    response = owner_client.post(url, {"confirm_name": "wrong"})
    assert response.status_code == 200 and Source.objects.filter(pk=source.pk).exists()
    response = owner_client.post(url, {"confirm_name": "HubSpot"})
    assert response["Location"] == reverse("sources:list")
    assert not Source.objects.filter(pk=source.pk).exists()
    assert not SourceCollection.objects.exists() and not SyncRun.objects.exists() and not Record.objects.exists()
    event = AuditEvent.objects.get(verb="delete", object_type="sources.Source")
    assert event.object_id == str(source.pk) and event.actor == owner and event.changes["name"] == "HubSpot"


def test_delete_is_refused_with_the_mappings_named_while_one_uses_a_model_of_the_source(owner_client, source):
    # The mapping protects its data model, which the source's delete cascades to: that was a 500.
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    destination = DestinationFactory(workspace=source.workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Space")
    MappingFactory(destination=destination, data_model=model, profile_space=space, name="People")
    url = reverse("sources:delete", args=[source.pk])
    assert "data models" in owner_client.get(url).content.decode()  # the page says they go with it
    response = owner_client.post(url, {"confirm_name": "HubSpot"})
    assert response.status_code == 409 and Source.objects.filter(pk=source.pk).exists()
    html = response.content.decode()
    assert "People" in html and "delete" in html.lower()


# --- roles and tenants -----------------------------------------------------------------------------------


def test_viewer_sees_everything_and_changes_nothing(viewer_client, source, workspace):
    for name in ("detail", "models", "settings", "full_sync", "delete"):
        assert viewer_client.get(reverse(f"sources:{name}", args=[source.pk])).status_code == 200
    settings_page = viewer_client.get(reverse("sources:settings", args=[source.pk])).content
    assert b"only admins can change them" in settings_page
    posts = [
        (reverse("sources:settings", args=[source.pk]), {"section": "basic", "name": "X", "schema_name": "x"}),
        (reverse("sources:enable", args=[source.pk]), {"enabled": "1"}),
        (reverse("sources:sync", args=[source.pk]), {}),
        (reverse("sources:full_sync", args=[source.pk]), {}),
        (reverse("sources:reconnect", args=[source.pk]), {}),
        (reverse("sources:delete", args=[source.pk]), {"confirm_name": "HubSpot"}),
        (reverse("sources:new"), {"name": "Mine"}),
        (reverse("sources:oauth_start"), {}),
    ]
    for url, data in posts:
        assert viewer_client.post(url, data).status_code == 403, url
    assert viewer_client.get(reverse("sources:new")).status_code == 403
    source.refresh_from_db()
    assert source.name == "HubSpot" and not source.enabled
    assert Source.objects.count() == 1 and not SyncRun.objects.exists()
    assert not AuditEvent.objects.filter(object_type="sources.Source").exists()


def test_foreign_source_is_404(owner_client, foreign_source):
    for name in ("detail", "models", "settings", "full_sync", "delete"):
        assert owner_client.get(reverse(f"sources:{name}", args=[foreign_source.pk])).status_code == 404
    for name in ("enable", "sync", "full_sync", "reconnect", "delete", "settings"):
        assert owner_client.post(reverse(f"sources:{name}", args=[foreign_source.pk]), {}).status_code == 404
    foreign_source.refresh_from_db()
    assert foreign_source.name == "Globex HubSpot"


def test_anonymous_is_sent_to_login(client, source):
    response = client.get(reverse("sources:detail", args=[source.pk]))
    assert response.status_code == 302 and "login" in response["Location"]


def test_runs_fragment_polls_while_a_run_is_active(owner_client, source, foreign_source):
    source.enabled = True
    source.save()
    run = SyncRunFactory(source=source, trigger="manual", status="running", progress_done=5, progress_total=9)
    page = owner_client.get(reverse("sources:detail", args=[source.pk])).content.decode()
    assert 'hx-trigger="every 3s"' in page and reverse("sources:runs", args=[source.pk]) in page
    fragment = owner_client.get(reverse("sources:runs", args=[source.pk]), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b"5 of about 9" in fragment.content
    run.status = "succeeded"
    run.counts = {"contacts": {"read": 9, "new": 9}}
    run.save()
    fragment = owner_client.get(reverse("sources:runs", args=[source.pk]), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 286  # htmx stops polling
    assert b"every 3s" not in fragment.content and b"Succeeded" in fragment.content
    assert owner_client.get(reverse("sources:runs", args=[foreign_source.pk])).status_code == 404


def test_back_to_the_login_step_keeps_the_connection(owner_client, workspace):
    put_wizard(owner_client, workspace, connection=make_connection())
    page = owner_client.get(reverse("sources:wizard_connect")).content.decode()
    assert "portal-4242.hubspot.test" in page and ">Next</a>" in page and "Log in again" in page

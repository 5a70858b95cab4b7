"""The destination pages, Profile Spaces, the mapping editor, the mapping page (test with real HubSpot data,
Mapping Status, Resync all), and who may do what."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from hubsync.models import AuditEvent
from mappings import segment
from mappings.models import Destination, Mapping, ProfileSpace
from mappings.selectors import rejected_summary
from models_app.models import DataModel
from sources import selectors
from tests.factories import (
    DataModelFactory,
    DeliveryRunFactory,
    DeliveryStateFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
    SourceCollectionFactory,
    SourceFactory,
)

from .conftest import CONTACT_SCHEMA

FAKE_KEY = "wk_live_Abcdefghijklmnop1234"


@pytest.fixture
def dest(workspace) -> Destination:
    return DestinationFactory(workspace=workspace, name="Segment prod")


@pytest.fixture
def us_space(dest) -> ProfileSpace:
    return ProfileSpaceFactory(destination=dest, name="Main space", write_key=FAKE_KEY, region="us")


@pytest.fixture
def model(source) -> DataModel:
    return DataModelFactory(
        source=source, collection="contacts", name="Contacts", columns=["email", "firstname", "lastname", "score"]
    )


@pytest.fixture
def companies(source) -> DataModel:
    return DataModelFactory(source=source, collection="companies", name="Companies", columns=["name", "domain"])


@pytest.fixture
def a_mapping(dest, us_space, model) -> Mapping:
    return MappingFactory(
        destination=dest,
        data_model=model,
        profile_space=us_space,
        name="Contacts to profiles",
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"]],
    )


def editor_data(model: DataModel, space: ProfileSpace, **overrides) -> dict:
    data = {
        "destination": space.destination_id,
        "name": "People",
        "data_model": model.pk,
        "profile_space": space.pk,
        "action": "identify",
        "user_id": "email",
        "anonymous_id": "",
        "group_id": "",
        "empty_values": "null",
        "trait_column": ["firstname", "lastname", ""],
        "trait_name": ["first_name", "last_name", ""],
        "op": "save",
    }
    data.update(overrides)
    return data


def text(response) -> str:
    return response.content.decode()


# --- destinations -----------------------------------------------------------------------------------------


def test_empty_destinations_list_invites_to_add_one(owner_client):
    response = owner_client.get(reverse("mappings:destinations"))
    assert response.status_code == 200
    assert "Add your first destination" in text(response)
    assert reverse("mappings:destination_new") in text(response)


def test_nav_links_to_destinations(owner_client):
    response = owner_client.get(reverse("dashboard"))
    assert f'href="{reverse("mappings:destinations")}"' in text(response)


def test_add_destination_needs_a_name_and_a_write_key_for_its_space(owner_client):
    response = owner_client.post(
        reverse("mappings:destination_new"),
        {"kind": "segment_profiles", "name": "  ", "space_name": "Prod", "region": "us"},
    )
    assert response.status_code == 400
    page = text(response)
    assert "This field is required." in page
    # The write key is required, and the page says so before and after posting.
    assert "Write key (required)" in page and "it is required" in page
    assert not Destination.objects.exists()


def test_add_destination_with_the_space_left_out_goes_on_to_add_it(owner_client, source):
    response = owner_client.post(
        reverse("mappings:destination_new"), {"kind": "segment_profiles", "name": "Segment", "region": "us"}
    )
    destination = Destination.objects.get()
    assert not destination.profile_spaces.exists()
    assert response.url == reverse("mappings:destination_settings", args=[destination.pk]) + "#spaces"


def test_add_destination_creates_it_with_its_profile_space_and_audits(owner_client, workspace):
    response = owner_client.post(
        reverse("mappings:destination_new"),
        {"kind": "segment_profiles", "name": "Segment", "space_name": "Prod", "write_key": FAKE_KEY, "region": "eu"},
    )
    destination = Destination.objects.get()
    assert destination.workspace == workspace and destination.kind == "segment_profiles"
    space = destination.profile_spaces.get()
    assert (space.name, space.region, space.write_key, space.endpoint) == ("Prod", "eu", FAKE_KEY, "")
    # No source to go on with: the destination's overview.
    assert response.url == reverse("mappings:destination", args=[destination.pk])
    assert AuditEvent.objects.filter(verb="create", object_type="mappings.Destination").exists()
    assert AuditEvent.objects.filter(verb="create", object_type="mappings.ProfileSpace").exists()
    listing = text(owner_client.get(reverse("mappings:destinations")))
    assert "Segment" in listing and "Segment Profiles" in listing


def test_after_create_destination_the_guide_goes_on_to_the_sources_models_tab(owner_client, workspace, source):
    other = SourceFactory(workspace=workspace, name="Other", schema_name="other")
    url = reverse("mappings:destination_new") + f"?source={source.pk}"
    page = text(owner_client.get(url))
    assert f'name="source" value="{source.pk}"' in page
    response = owner_client.post(
        url, {"kind": "segment_profiles", "name": "Segment", "write_key": FAKE_KEY, "region": "us", "source": source.pk}
    )
    assert response.url == reverse("sources:models", args=[source.pk]) + "#create-model"
    # The space is called after the destination when it got no name of its own.
    assert ProfileSpace.objects.get().name == "Segment"
    assert other.pk != source.pk
    models_tab = text(owner_client.get(reverse("sources:models", args=[source.pk])))
    assert 'id="create-model"' in models_tab and "Next: create a data model" in models_tab


def test_a_sandbox_write_key_picks_the_sandbox_region(owner_client, dest, settings):
    settings.SANDBOX = True
    response = owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]),
        {"name": "Sandbox", "write_key": "sbx_seg_abcdefghijklmnopqrstuv12", "region": "us"},
        follow=True,
    )
    space = ProfileSpace.objects.get()
    assert space.region == "sandbox"
    assert "sends to the sandbox on this server, not to Segment" in text(response)
    # A real key for the sandbox region is refused, and without the sandbox a sandbox key is refused.
    response = owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]),
        {"name": "Real", "write_key": FAKE_KEY, "region": "sandbox"},
    )
    assert response.status_code == 400 and "looks like a real Segment key" in text(response)
    settings.SANDBOX = False
    response = owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]),
        {"name": "Sandbox 2", "write_key": "sbx_seg_abcdefghijklmnopqrstuv12", "region": "us"},
    )
    assert response.status_code == 400 and "which this server does not run" in text(response)
    assert ProfileSpace.objects.count() == 1


def test_the_sandbox_key_convention_matches_the_sandbox(settings):
    from sandbox.segment import models as sandbox_models

    assert settings.SANDBOX_SEGMENT_WRITE_KEY_PREFIX == sandbox_models.WRITE_KEY_PREFIX
    assert settings.SANDBOX_SEGMENT_DEFAULT_WRITE_KEY == sandbox_models.DEFAULT_WRITE_KEY
    assert settings.SANDBOX_SEGMENT_DEFAULT_SPACE_NAME == sandbox_models.DEFAULT_WORKSPACE_NAME
    assert sandbox_models.new_write_key().startswith(settings.SANDBOX_SEGMENT_WRITE_KEY_PREFIX)


def test_the_default_sandbox_space_is_offered_with_the_sandbox_only(owner_client, dest, settings):
    settings.SANDBOX = True
    page = text(owner_client.get(reverse("mappings:destination_new")))
    assert "Use the default sandbox space" in page and 'href="/sandbox/segment/"' in page
    assert "Use the default sandbox space" in text(
        owner_client.get(reverse("mappings:destination_settings", args=[dest.pk]))
    )
    owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]), {"use_default_sandbox": "1", "region": "us"}
    )
    space = ProfileSpace.objects.get()
    assert (space.name, space.region) == ("Default Profile Space", "sandbox")
    assert space.write_key == settings.SANDBOX_SEGMENT_DEFAULT_WRITE_KEY
    response = owner_client.post(
        reverse("mappings:destination_new"),
        {"kind": "segment_profiles", "name": "Sandbox dest", "use_default_sandbox": "on", "region": "us"},
    )
    assert response.status_code == 302
    assert Destination.objects.get(name="Sandbox dest").profile_spaces.get().region == "sandbox"
    settings.SANDBOX = False
    assert "Use the default sandbox space" not in text(owner_client.get(reverse("mappings:destination_new")))
    response = owner_client.post(
        reverse("mappings:destination_new"),
        {"kind": "segment_profiles", "name": "No sandbox", "use_default_sandbox": "on", "region": "us"},
    )
    assert response.status_code == 400 and not Destination.objects.filter(name="No sandbox").exists()


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        ("", "Enter the endpoint"),
        ("segment-proxy.example.com", "starting with https://"),
        ("http://93.184.216.34", "Use an https:// address"),
        ("https://127.0.0.1:8443", "loopback"),
        ("https://10.1.2.3", "private"),
        ("https://169.254.169.254", "link-local"),
        ("https://user:pw@93.184.216.34", "user name and password"),
        ("https://93.184.216.34/?x=1", "without ?query"),
    ],
)
def test_custom_endpoint_is_checked_like_any_address_a_user_types(owner_client, dest, settings, endpoint, error):
    settings.DEBUG = False
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = False
    response = owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]),
        {"name": "Proxy", "write_key": FAKE_KEY, "region": "custom", "endpoint": endpoint},
    )
    assert response.status_code == 400
    assert error in text(response).replace("&#x27;", "'")
    assert not ProfileSpace.objects.exists()


def test_an_entered_custom_endpoint_is_saved_normalised_and_cleared_to_go_back(owner_client, dest, settings):
    settings.DEBUG = False
    url = reverse("mappings:profile_space_new", args=[dest.pk])
    # An endpoint entered is where the space sends, whatever region was left selected.
    response = owner_client.post(
        url,
        {"name": "Proxy", "write_key": FAKE_KEY, "region": "us", "endpoint": "https://93.184.216.34/seg/v1/batch"},
        follow=True,
    )
    assert "sends there instead of to the region" in text(response)
    space = ProfileSpace.objects.get()
    assert (space.region, space.endpoint) == ("custom", "https://93.184.216.34/seg")
    assert (
        segment.SegmentClient(space.region, base_url=space.endpoint).batch_url == "https://93.184.216.34/seg/v1/batch"
    )
    page = text(owner_client.get(reverse("mappings:destination_settings", args=[dest.pk])))
    assert "https://93.184.216.34/seg" in page
    # Cleared, the space goes back to a region.
    owner_client.post(reverse("mappings:profile_space", args=[space.pk]), {"name": "Proxy", "region": "eu"})
    space.refresh_from_db()
    assert (space.region, space.endpoint) == ("eu", "")


def test_overview_lists_mappings_with_status_toggle_and_last_delivery(owner_client, a_mapping, dest):

    run = DeliveryRunFactory(mapping=a_mapping, status="succeeded", sent=7, unchanged=3, rejected=1)
    Mapping.objects.filter(pk=a_mapping.pk).update(last_run=run)
    page = text(owner_client.get(reverse("mappings:destination", args=[dest.pk])))
    assert "Contacts to profiles" in page and "Main space" in page and "Identify" in page
    assert reverse("mappings:mapping_toggle", args=[a_mapping.pk]) in page
    assert 'role="switch"' in page and "Succeeded" in page
    assert re.search(r'class="num">7</td>', page)


def test_rename_destination(owner_client, dest):
    url = reverse("mappings:destination_settings", args=[dest.pk])
    response = owner_client.post(url, {"name": ""})
    assert "This field is required." in text(response)
    owner_client.post(url, {"name": "Segment EU"})
    dest.refresh_from_db()
    assert dest.name == "Segment EU"
    assert AuditEvent.objects.filter(verb="update", changes__name=["Segment prod", "Segment EU"]).exists()


def test_delete_destination_is_refused_while_mappings_exist(owner_client, a_mapping, dest):
    url = reverse("mappings:destination_delete", args=[dest.pk])
    page = text(owner_client.get(url))
    assert "Not possible while mappings send to it" in page and "Contacts to profiles" in page
    response = owner_client.post(url, follow=True)
    assert "still has mappings" in text(response)
    assert Destination.objects.filter(pk=dest.pk).exists()


def test_delete_destination_without_mappings(owner_client, dest, us_space):
    response = owner_client.post(reverse("mappings:destination_delete", args=[dest.pk]))
    assert response.url == reverse("mappings:destinations")
    assert not Destination.objects.exists() and not ProfileSpace.objects.exists()
    assert AuditEvent.objects.filter(verb="delete", object_type="mappings.Destination").exists()


# --- profile spaces ---------------------------------------------------------------------------------------


def test_add_profile_space_validation_errors_in_place(owner_client, dest):
    url = reverse("mappings:profile_space_new", args=[dest.pk])
    response = owner_client.post(url, {"name": "", "write_key": "", "region": "us"})
    assert response.status_code == 400
    page = text(response)
    assert "Give the Profile Space a name." in page or "This field is required." in page
    assert "Enter the space&#x27;s write key: it is required" in page
    response = owner_client.post(url, {"name": "Space", "write_key": "has space s", "region": "mars"})
    assert "does not look like a write key" in text(response)
    assert "Select a valid choice" in text(response)
    assert not ProfileSpace.objects.exists()


def test_write_key_is_encrypted_and_never_rendered(owner_client, dest):
    owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]), {"name": "Space", "write_key": FAKE_KEY, "region": "eu"}
    )
    space = ProfileSpace.objects.get()
    assert space.write_key == FAKE_KEY and space.region == "eu"
    with connection.cursor() as cursor:
        cursor.execute("SELECT write_key FROM mappings_profilespace WHERE id = %s", [space.pk])
        raw = cursor.fetchone()[0]
    assert FAKE_KEY not in raw
    for url in (
        reverse("mappings:destination_settings", args=[dest.pk]),
        reverse("mappings:profile_space", args=[space.pk]),
        reverse("audit_log"),
    ):
        assert FAKE_KEY not in text(owner_client.get(url))
    event = AuditEvent.objects.get(verb="create", object_type="mappings.ProfileSpace")
    assert FAKE_KEY not in json.dumps(event.changes)


def test_write_key_is_kept_when_left_empty_and_replaced_when_entered(owner_client, us_space):
    url = reverse("mappings:profile_space", args=[us_space.pk])
    owner_client.post(url, {"name": "Renamed", "write_key": "", "region": "us"})
    us_space.refresh_from_db()
    assert us_space.name == "Renamed" and us_space.write_key == FAKE_KEY
    owner_client.post(url, {"name": "Renamed", "write_key": "wk_new_key_987654321", "region": "us"})
    us_space.refresh_from_db()
    assert us_space.write_key == "wk_new_key_987654321"
    assert AuditEvent.objects.filter(verb="update", changes__has_key="write_key").exists()
    assert "wk_new_key_987654321" not in text(owner_client.get(url))


def test_sandbox_region_only_offered_with_the_sandbox(owner_client, dest, settings):
    url = reverse("mappings:destination_settings", args=[dest.pk])
    settings.SANDBOX = True
    assert 'value="sandbox"' in text(owner_client.get(url))
    settings.SANDBOX = False
    assert 'value="sandbox"' not in text(owner_client.get(url))
    response = owner_client.post(
        reverse("mappings:profile_space_new", args=[dest.pk]), {"name": "S", "write_key": FAKE_KEY, "region": "sandbox"}
    )
    assert response.status_code == 400 and not ProfileSpace.objects.exists()


def test_profile_space_delete_refused_while_used(owner_client, a_mapping, us_space):
    url = reverse("mappings:profile_space_delete", args=[us_space.pk])
    assert "Not possible while mappings send to it" in text(owner_client.get(url))
    response = owner_client.post(url, follow=True)
    assert "is used by 1 mapping" in text(response)
    assert ProfileSpace.objects.filter(pk=us_space.pk).exists()
    Mapping.objects.all().delete()
    owner_client.post(url)
    assert not ProfileSpace.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_check_connection_against_the_segment_sandbox(owner_client, dest, segment_sandbox, live_server, settings):
    settings.BASE_URL = live_server.url
    good = ProfileSpaceFactory(destination=dest, name="Good", write_key=segment_sandbox.write_key, region="sandbox")
    bad = ProfileSpaceFactory(destination=dest, name="Bad", write_key="sbx_seg_NoSuchKey000000", region="sandbox")
    response = owner_client.post(reverse("mappings:profile_space_check", args=[good.pk]), HTTP_HX_REQUEST="true")
    page = text(response)
    assert "Connection works" in page and "knows this write key" in page
    assert "the sandbox endpoint and whether it knows this write key" in page
    assert segment_sandbox.write_key not in page
    page = text(owner_client.post(reverse("mappings:profile_space_check", args=[bad.pk]), HTTP_HX_REQUEST="true"))
    assert "Connection failed" in page and "no sandbox space has this write key" in page
    # Without htmx: a flash message on the Settings tab.
    response = owner_client.post(reverse("mappings:profile_space_check", args=[bad.pk]), follow=True)
    assert "no sandbox space has this write key" in text(response)


def test_check_connection_for_real_segment_says_what_was_checked(owner_client, us_space, monkeypatch):
    # The boundary to the outside world: the US endpoint is a closed local port here.
    monkeypatch.setitem(segment.ENDPOINTS, "us", "http://127.0.0.1:9")
    page = text(owner_client.post(reverse("mappings:profile_space_check", args=[us_space.pk]), HTTP_HX_REQUEST="true"))
    assert "Connection failed" in page and "Could not reach" in page
    assert "Segment does not tell whether a write key is right" in page
    assert FAKE_KEY not in page


# --- the mapping editor -------------------------------------------------------------------------------------


def test_new_mapping_without_destination_leads_to_adding_one(owner_client):
    response = owner_client.get(reverse("mappings:mapping_new"))
    assert response.url == reverse("mappings:destination_new")


def test_new_mapping_from_the_models_tab_preselects_the_model(owner_client, dest, us_space, model):
    response = owner_client.get(reverse("mappings:mapping_new") + f"?data_model={model.pk}")
    page = text(response)
    assert response.status_code == 200
    assert re.search(rf'<option value="{model.pk}" selected>', page)
    assert re.search(r'<option value="email" selected>', page)  # e-mail suggested as User ID
    # Columns come with their HubSpot label and a suggested trait name.
    assert 'data-suggest="first_name"' in page and "First name (firstname)" in page
    assert 'data-suggest="hubspot_id"' in page


def test_model_of_another_workspace_is_refused(owner_client, dest, us_space, other_workspace):
    theirs = SourceFactory(workspace=other_workspace, name="Theirs", schema_name="hubspot", hub_id=9)
    their_model = DataModelFactory(source=theirs, collection="contacts", name="Theirs", columns=["email"])
    assert owner_client.get(reverse("mappings:mapping_new") + f"?data_model={their_model.pk}").status_code == 404
    response = owner_client.post(reverse("mappings:mapping_new"), editor_data(their_model, us_space))
    assert response.status_code == 400 and "Select a valid choice" in text(response)
    assert not Mapping.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_id": ""}, "Map a User ID, an Anonymous ID or a Group ID"),
        (
            {"user_id": "", "action": "group", "group_id": "id"},
            "group calls included: map the user the account is attached to as well",
        ),
        ({"action": "group"}, "A Group mapping needs a Group ID column"),
        ({"group_id": "id"}, "Identify calls carry no Group ID"),
        ({"user_id": "", "group_id": "id"}, "drops every message without a User ID or an Anonymous ID"),
        ({"user_id": "nosuchcolumn"}, "Select a valid choice"),
        ({"trait_column": ["firstname", "lastname"], "trait_name": ["name", "name"]}, "is used twice"),
        ({"trait_column": ["firstname"], "trait_name": [""]}, "Give the trait a name."),
        ({"trait_column": [""], "trait_name": ["orphan"]}, "Choose the column this trait takes its value from."),
        ({"trait_column": ["phone"], "trait_name": ["phone"]}, "is not a column of the data model"),
        ({"profile_space": ""}, "This field is required."),
    ],
)
def test_editor_validation_errors_in_place_and_nothing_stored(owner_client, us_space, model, overrides, message):
    response = owner_client.post(reverse("mappings:mapping_new"), editor_data(model, us_space, **overrides))
    assert response.status_code == 400
    page = text(response).replace("&#x27;", "'")
    assert message in page
    assert not Mapping.objects.exists()
    assert 'id="mapping-form"' in page  # the editor again, with what was entered
    if overrides.get("trait_name"):
        for name in overrides["trait_name"]:
            assert f'value="{name}"' in page


def test_space_of_another_destination_is_refused(owner_client, workspace, us_space, model):
    other = DestinationFactory(workspace=workspace, name="Other")
    foreign_space = ProfileSpaceFactory(destination=other, name="Other space", write_key=FAKE_KEY)
    response = owner_client.post(
        reverse("mappings:mapping_new"), editor_data(model, us_space, profile_space=foreign_space.pk)
    )
    assert response.status_code == 400 and not Mapping.objects.exists()


def test_add_row_and_reload_render_without_saving(owner_client, us_space, model, companies):
    data = editor_data(model, us_space, op="add_row")
    page = text(owner_client.post(reverse("mappings:mapping_new"), data))
    assert page.count('name="trait_name"') == 2 + 2 + 1  # two filled rows, two blank ones, the template row
    assert not Mapping.objects.exists()
    page = text(owner_client.post(reverse("mappings:mapping_new"), editor_data(companies, us_space, op="reload")))
    assert '<option value="domain" data-suggest="domain">' in page
    assert '<option value="firstname" data-suggest' not in page
    assert "firstname (not in the model)" in page  # the row kept from the other model, flagged
    assert "Map a User ID" not in page  # a reload does not validate
    assert not Mapping.objects.exists()


def test_save_creates_a_disabled_mapping_and_audits(owner_client, us_space, model, source):
    response = owner_client.post(reverse("mappings:mapping_new"), editor_data(model, us_space))
    mapping = Mapping.objects.get()
    assert response.url == reverse("mappings:mapping_detail", args=[mapping.pk])
    assert mapping.enabled is False
    assert mapping.identifiers == {"user_id": "email", "anonymous_id": None, "group_id": None}
    assert mapping.traits == [["firstname", "first_name"], ["lastname", "last_name"]]
    assert mapping.options == {"empty_values": "null"}
    assert AuditEvent.objects.filter(verb="create", object_type="mappings.Mapping").exists()
    steps = {s.key: s.done for s in selectors.checklist(source)}
    assert steps["mapping"] and not steps["mapping_enabled"]
    page = text(owner_client.get(response.url))
    assert "This mapping is disabled" in page and "first_name" in page


def test_group_mapping_with_user_and_group_id(owner_client, us_space, companies):
    data = editor_data(
        companies, us_space, action="group", user_id="", anonymous_id="id", group_id="domain",
        trait_column=["name"], trait_name=["name"], empty_values="omit",
    )  # fmt: skip
    response = owner_client.post(reverse("mappings:mapping_new"), data)
    assert response.status_code == 302
    mapping = Mapping.objects.get()
    assert mapping.action == "group" and mapping.identifier("group_id") == "domain"
    assert mapping.empty_values == "omit"


def test_edit_mapping_changes_the_config_hash(owner_client, a_mapping, us_space, model):
    url = reverse("mappings:mapping_edit", args=[a_mapping.pk])
    page = text(owner_client.get(url))
    assert 'value="first_name"' in page
    before = a_mapping.config_hash()
    data = editor_data(model, us_space, name="Contacts to profiles")
    data.pop("destination")
    response = owner_client.post(url, data)
    assert response.status_code == 302
    a_mapping.refresh_from_db()
    assert a_mapping.traits == [["firstname", "first_name"], ["lastname", "last_name"]]
    assert a_mapping.config_hash() != before
    event = AuditEvent.objects.get(verb="update", object_type="mappings.Mapping")
    assert "traits" in event.changes and "name" not in event.changes


# --- status, resync -------------------------------------------------------------------------------------


def test_toggle_with_htmx_and_without(owner_client, a_mapping, source):
    url = reverse("mappings:mapping_toggle", args=[a_mapping.pk])
    response = owner_client.post(url, {"enabled": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'aria-checked="true"' in text(response)
    a_mapping.refresh_from_db()
    assert a_mapping.enabled
    assert {s.key: s.done for s in selectors.checklist(source)}["mapping_enabled"]
    response = owner_client.post(url, {"enabled": "0", "next": reverse("mappings:list")})
    assert response.url == reverse("mappings:list")
    a_mapping.refresh_from_db()
    assert not a_mapping.enabled
    verbs = AuditEvent.objects.filter(object_type="mappings.Mapping").values_list("verb", flat=True)
    assert sorted(verbs) == ["disable", "enable"]


def test_toggle_redirect_ignores_foreign_next(owner_client, a_mapping):
    url = reverse("mappings:mapping_toggle", args=[a_mapping.pk])
    response = owner_client.post(url, {"enabled": "1", "next": "https://evil.example/"})
    assert response.url == reverse("mappings:mapping_detail", args=[a_mapping.pk])


def test_resync_asks_for_confirmation(owner_client, a_mapping):
    url = reverse("mappings:mapping_resync", args=[a_mapping.pk])
    page = text(owner_client.get(url))
    assert "Resync all records?" in page and "every record" in page
    Mapping.objects.filter(pk=a_mapping.pk).update(watermark=42, watermark_config_hash="x")
    response = owner_client.post(url)
    assert response.url == reverse("mappings:mapping_detail", args=[a_mapping.pk])
    a_mapping.refresh_from_db()
    assert a_mapping.resync_generation == 1 and a_mapping.watermark == 0
    assert AuditEvent.objects.filter(verb="resync").exists()


def test_checklist_links_resolve(source):
    urls = {s.key: s.url for s in selectors.checklist(source)}
    assert urls["destination"] == reverse("mappings:destination_new") + f"?source={source.pk}"
    assert urls["mapping"] == reverse("mappings:mapping_new")
    assert urls["mapping_enabled"] == reverse("mappings:list")


def test_mapping_list(owner_client, a_mapping):
    page = text(owner_client.get(reverse("mappings:list")))
    assert "Contacts to profiles" in page and "Segment prod" in page


# --- roles and tenants ------------------------------------------------------------------------------------


def _posts(a_mapping, dest, us_space):
    return [
        (reverse("mappings:destination_new"), {"kind": "segment_profiles", "name": "X"}),
        (reverse("mappings:destination_settings", args=[dest.pk]), {"name": "X"}),
        (reverse("mappings:destination_delete", args=[dest.pk]), {}),
        (reverse("mappings:profile_space_new", args=[dest.pk]), {"name": "X", "write_key": FAKE_KEY, "region": "us"}),
        (reverse("mappings:profile_space", args=[us_space.pk]), {"name": "X", "write_key": "", "region": "us"}),
        (reverse("mappings:profile_space_check", args=[us_space.pk]), {}),
        (reverse("mappings:profile_space_delete", args=[us_space.pk]), {}),
        (reverse("mappings:mapping_new"), editor_data(a_mapping.data_model, us_space)),
        (reverse("mappings:mapping_edit", args=[a_mapping.pk]), editor_data(a_mapping.data_model, us_space)),
        (reverse("mappings:mapping_toggle", args=[a_mapping.pk]), {"enabled": "1"}),
        (reverse("mappings:mapping_resync", args=[a_mapping.pk]), {}),
        (reverse("mappings:mapping_test_send", args=[a_mapping.pk]), {"record": "1"}),
        (reverse("mappings:mapping_delete", args=[a_mapping.pk]), {}),
    ]


def test_viewer_sees_everything_and_changes_nothing(viewer_client, a_mapping, dest, us_space):
    for url in (
        reverse("mappings:destinations"),
        reverse("mappings:destination", args=[dest.pk]),
        reverse("mappings:destination_settings", args=[dest.pk]),
        reverse("mappings:mapping_detail", args=[a_mapping.pk]),
        reverse("mappings:mapping_edit", args=[a_mapping.pk]),
    ):
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        assert "Contacts to profiles" in text(response) or "Segment prod" in text(response)
    page = text(viewer_client.get(reverse("mappings:destination", args=[dest.pk])))
    assert "disabled title=" in page  # the toggle is shown, switched off for viewers
    for url, data in _posts(a_mapping, dest, us_space):
        assert viewer_client.post(url, data).status_code == 403, url
    a_mapping.refresh_from_db()
    assert not a_mapping.enabled and a_mapping.resync_generation == 0
    assert Destination.objects.count() == 1 and ProfileSpace.objects.count() == 1 and Mapping.objects.count() == 1
    assert not AuditEvent.objects.exists()


def test_outsider_gets_404(outsider_client, a_mapping, dest, us_space):
    for url, data in _posts(a_mapping, dest, us_space):
        if url == reverse("mappings:destination_new"):
            continue
        if url == reverse("mappings:mapping_new"):
            data = {**data, "destination": dest.pk}
        assert outsider_client.post(url, data).status_code == 404, url
    for url in (
        reverse("mappings:destination", args=[dest.pk]),
        reverse("mappings:profile_space", args=[us_space.pk]),
        reverse("mappings:mapping_detail", args=[a_mapping.pk]),
        reverse("mappings:mapping_new") + f"?destination={dest.pk}",
    ):
        assert outsider_client.get(url).status_code == 404, url
    page = text(outsider_client.get(reverse("mappings:destinations")))
    assert "Segment prod" not in page


# --- "Test the mapping with real HubSpot data" -------------------------------------------------------------


@pytest.fixture
def live_setup(hubspot_sandbox, segment_sandbox, live_server, settings, workspace):
    """A source connected to sandbox portal 1001, a contacts model, and a mapping to the sandbox's default space."""
    settings.BASE_URL = live_server.url
    settings.HUBSPOT_API_BASE = ""
    tok = hubspot_sandbox.token(1001)
    source = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        schema_name="hubspot",
        hub_id=1001,
        token=tok["refresh_token"],
        access_token=tok["access_token"],
        access_token_expires_at=timezone.now() + timedelta(seconds=tok["expires_in"]),
    )
    SourceCollectionFactory(source=source, collection="contacts", properties=CONTACT_SCHEMA)
    model = DataModelFactory(
        source=source, collection="contacts", name="Contacts", columns=["email", "firstname", "lastname"]
    )
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(
        destination=destination, name="Sandbox", write_key=segment_sandbox.write_key, region="sandbox"
    )
    mapping = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"], ["lastname", "last_name"], ["id", "hubspot_id"]],
    )
    return mapping


def _first_contact(hubspot_sandbox) -> dict:
    import requests

    response = requests.get(
        hubspot_sandbox.base_url + "/crm/v3/objects/contacts?limit=1&properties=email,firstname,lastname",
        headers=hubspot_sandbox.headers(1001),
        timeout=30,
    )
    return response.json()["results"][0]


@pytest.mark.django_db(transaction=True)
def test_test_with_real_hubspot_data_shows_and_sends_the_message(
    owner_client, live_setup, hubspot_sandbox, segment_sandbox
):
    mapping = live_setup
    contact = _first_contact(hubspot_sandbox)
    email = contact["properties"]["email"]
    url = reverse("mappings:mapping_detail", args=[mapping.pk])

    # Nothing is asked from HubSpot until the user searches.
    page = text(owner_client.get(url))
    assert "Test the mapping with real HubSpot data" in page and "record-picks" not in page

    # The first records, then a search by e-mail (htmx fragment), then by id.
    page = text(owner_client.get(url, {"q": ""}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="test-panel"))
    assert page.count("<li>") >= 5 and "<html" not in page
    page = text(owner_client.get(url, {"q": email}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="test-panel"))
    assert email in page and f"record={contact['id']}" in page
    page = text(owner_client.get(url, {"q": contact["id"]}))
    assert email in page

    # Pick it: the exact message, as pretty JSON.
    page = text(owner_client.get(url, {"record": contact["id"]}))
    match = re.search(r'<pre class="json" data-testid="message-json">(.*?)</pre>', page, re.S)
    assert match
    import html

    message = json.loads(html.unescape(match.group(1)))
    assert message["type"] == "identify" and message["userId"] == email
    assert message["traits"]["hubspot_id"] == int(contact["id"])
    assert message["traits"]["first_name"] == (contact["properties"]["firstname"] or None)
    assert message["messageId"].startswith(f"hs-{mapping.destination.workspace_id}-{mapping.pk}-{contact['id']}-")
    assert segment_sandbox.write_key not in page and "Send to Profile Space</button>" in page

    # Send it: Segment's answer is shown, and the message is in the sandbox inbox.
    response = owner_client.post(
        reverse("mappings:mapping_test_send", args=[mapping.pk]),
        {"record": contact["id"]},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="test-panel",
    )
    page = text(response)
    assert "Segment accepted the message" in page and "HTTP 200" in page
    assert segment_sandbox.write_key not in page
    inbox = segment_sandbox.messages()
    assert [m["messageId"] for m in inbox] == [message["messageId"]]
    profile = segment_sandbox.profile(email)
    assert profile is not None and profile["traits"]["hubspot_id"] == int(contact["id"])
    assert AuditEvent.objects.filter(verb="test_send", changes__status=200).exists()


@pytest.mark.django_db(transaction=True)
def test_test_panel_explains_a_rejected_record_and_a_missing_one(owner_client, live_setup, hubspot_sandbox):
    mapping = live_setup
    contact = _first_contact(hubspot_sandbox)
    hubspot_sandbox.set_properties(contact["id"], {"email": ""})
    url = reverse("mappings:mapping_detail", args=[mapping.pk])
    page = text(owner_client.get(url, {"record": contact["id"]})).replace("&#x27;", "'")
    assert "This record would be rejected" in page and "'email' is empty for this record" in page
    assert "Send to Profile Space</button>" not in page
    page = text(owner_client.get(url, {"record": "999999999"}))
    assert "HubSpot has no contacts record 999999999" in page


# --- bad input: a clear 4xx or the default page, never a 500 or an open redirect ----------------------------


@pytest.mark.parametrize(
    "nxt",
    ["https://evil.example/", "//evil.example", "/\\evil.example", "dashboard", "mappings:list", "a b", "1e309"],
)
def test_next_is_a_path_of_ours_or_ignored(owner_client, a_mapping, nxt):
    """`next` used to be handed to redirect(), which reverses URL names (a made-up one is a 500) and follows
    other hosts (an open redirect)."""
    detail = reverse("mappings:mapping_detail", args=[a_mapping.pk])
    toggle = owner_client.post(reverse("mappings:mapping_toggle", args=[a_mapping.pk]), {"next": nxt})
    assert toggle.status_code == 302 and toggle["Location"] == detail
    sample = reverse("mappings:sample_mode", args=[a_mapping.pk])
    response = owner_client.post(sample, {"action": "all", "next": nxt})
    assert response.status_code == 302 and response["Location"] == sample
    # A path of ours is still honoured.
    back = owner_client.post(sample, {"action": "all", "next": "/mappings/"})
    assert back["Location"] == "/mappings/"


@pytest.mark.parametrize("day", ["2026-02-31", "2026-13-01", "0000-00-00", "2026-02-29"])
def test_impossible_dates_in_the_rejected_filter_are_explained(owner_client, a_mapping, day):
    response = owner_client.get(reverse("mappings:rejected", args=[a_mapping.pk]), {"since": day, "until": day})
    assert response.status_code == 200
    assert "use a date like 2026-11-29" in response.content.decode()


# --- identifier format and the type table ----------------------------------------------------------------------


def test_editor_explains_the_identifier_format_and_the_date_form(owner_client, dest, us_space, model):
    page = text(owner_client.get(reverse("mappings:mapping_new") + f"?data_model={model.pk}"))
    assert "Identifier format" in page and "a change of capitals in HubSpot keeps the same profile" in page
    assert re.search(r'name="identifier_format" value="trim"[^>]*checked', page)
    assert "trim_ids" not in page  # only offered to mappings made before the option
    assert "<code>1991-05-28</code> is sent as <code>1991-05-28T00:00:00.000Z</code>" in page


def test_a_mapping_made_before_the_identifier_format_keeps_its_hash_when_saved(
    owner_client, a_mapping, us_space, model
):
    """Saved again with the format it has (what the editor shows checked for it), nothing about its messages
    changes: no option stored, same configuration hash, so no record is reconsidered or resent."""
    url = reverse("mappings:mapping_edit", args=[a_mapping.pk])
    page = text(owner_client.get(url))
    assert 'value="trim_ids"' in page and "how mappings made before this option work" in page
    before = a_mapping.config_hash()
    data = editor_data(
        model, us_space, name=a_mapping.name, trait_column=["firstname"], trait_name=["first_name"],
        identifier_format="trim_ids",
    )  # fmt: skip
    data.pop("destination")
    assert owner_client.post(url, data).status_code == 302
    a_mapping.refresh_from_db()
    assert "identifier_format" not in a_mapping.options and a_mapping.config_hash() == before

    data["identifier_format"] = "lower"
    assert owner_client.post(url, data).status_code == 302
    a_mapping.refresh_from_db()
    assert a_mapping.identifier_format == "lower" and a_mapping.config_hash() != before
    assert 'value="trim_ids"' not in text(owner_client.get(url))  # no way back to a format nobody chose


def test_a_new_mapping_gets_the_identifier_format_chosen(owner_client, us_space, model):
    data = editor_data(model, us_space, identifier_format="lower")
    response = owner_client.post(reverse("mappings:mapping_new"), data)
    assert response.status_code == 302
    assert Mapping.objects.get().options == {"empty_values": "null", "identifier_format": "lower"}


# --- names and guidance ---------------------------------------------------------------------------------------


def test_an_unnamed_mapping_is_called_after_its_model_without_repeating_the_space(owner_client, us_space, model):
    for _ in range(2):
        response = owner_client.post(reverse("mappings:mapping_new"), editor_data(model, us_space, name=""))
        assert response.status_code == 302
    names = list(Mapping.objects.order_by("pk").values_list("name", flat=True))
    assert names == ["Contacts", "Contacts (2)"]
    page = text(owner_client.get(reverse("mappings:rejected", args=[Mapping.objects.first().pk])))
    assert "Main space → Main space" not in page and "Contacts</strong></a> → Main space" in page


def _reject(mapping, object_ids, error):
    for object_id in object_ids:
        DeliveryStateFactory(mapping=mapping, object_id=object_id, status="rejected", error=error)


NO_EMAIL = "No User ID or Anonymous ID: 'email' is empty for this record; Segment drops messages without one."


def test_rejected_records_are_explained_in_aggregate_with_the_fix(owner_client, a_mapping):
    _reject(a_mapping, range(1, 4), NO_EMAIL)
    _reject(a_mapping, [10], "The message is 40,000 bytes; Segment accepts at most 32,768 bytes per message.")
    _reject(a_mapping, [11], "The message is 50,000 bytes; Segment accepts at most 32,768 bytes per message.")
    summary = rejected_summary(a_mapping)
    assert summary.total == 5 and not summary.retry_helps
    assert [(r.kind, r.count) for r in summary.reasons] == [("no_identifier", 3), ("too_large", 2)]

    page = text(owner_client.get(reverse("mappings:mapping_detail", args=[a_mapping.pk]))).replace("&#x27;", "'")
    assert "5 records were not sent to Segment" in page
    assert "No User ID or Anonymous ID" in page and "map an Anonymous ID as well" in page
    assert "“email”" in page and "leave them out on purpose" in page
    assert reverse("mappings:mapping_edit", args=[a_mapping.pk]) in page
    assert f"{reverse('mappings:rejected', args=[a_mapping.pk])}?reason=No%20User%20ID%20or%20Anonymous%20ID" in page
    assert "Retrying would not help" in page

    listing = text(owner_client.get(reverse("mappings:rejected", args=[a_mapping.pk])))
    # The list links back to the mapping, explains, and does not offer "Retry all" as the remedy.
    assert f'href="{reverse("mappings:mapping_detail", args=[a_mapping.pk])}"' in listing
    assert "Message over Segment" in listing and 'value="all"' not in listing
    assert "Retry selected" in listing


def test_retry_all_is_offered_when_retrying_can_help(owner_client, a_mapping):
    _reject(a_mapping, [1], NO_EMAIL)
    _reject(a_mapping, [2, 3], "Segment refused this message: HTTP 400: bad traits")
    summary = rejected_summary(a_mapping)
    assert summary.retry_helps and [r.count for r in summary.reasons] == [2, 1]
    listing = text(owner_client.get(reverse("mappings:rejected", args=[a_mapping.pk])))
    assert 'value="all"' in listing and "Retry all 3" in listing and "Retrying would not help" not in listing


def test_reasons_that_differ_per_record_make_one_group_and_the_rest_is_counted(a_mapping, monkeypatch):
    for n in range(1, 6):
        _reject(
            a_mapping, [n], f"The message is {40_000 + n:,} bytes; Segment accepts at most 32,768 bytes per message."
        )
    _reject(a_mapping, [10, 11], NO_EMAIL)
    _reject(a_mapping, [20], "Segment refused this message: HTTP 400: bad traits")
    assert [(r.kind, r.count) for r in rejected_summary(a_mapping).reasons][:2] == [
        ("too_large", 5),
        ("no_identifier", 2),
    ]
    monkeypatch.setattr("mappings.selectors.REASON_ROWS", 2)
    summary = rejected_summary(a_mapping)
    assert summary.total == 8 and [(r.kind, r.count) for r in summary.reasons][-1] == ("rest", 1)

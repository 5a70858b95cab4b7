"""Schema drift: deleted, renamed and retyped properties flag (and by default pause) exactly the mappings that use
them; one-click fixes repair model and mappings and resume delivery; new properties are listed."""

from __future__ import annotations

import copy

import pytest
from django.template import RequestContext, Template
from django.test import RequestFactory
from django.urls import reverse

from hubsync.models import AuditEvent, WorkspaceSettings
from mappings.delivery import deliver, enqueue_deliveries
from mappings.drift import detect_changes, fix_issue, new_properties, schema_discovered
from mappings.models import Mapping, MappingIssue, ProfileSpace
from sources.models import SourceCollection
from tests.factories import AlertChannelFactory, DataModelFactory, MappingFactory, ProfileSpaceFactory

from .conftest import CONTACT_SCHEMA, DEFAULT_TRAITS


@pytest.fixture
def space(destination) -> ProfileSpace:
    # No delivery reaches Segment in these tests: a space without the live sandbox keeps them fast.
    return ProfileSpaceFactory(destination=destination, name="Space", write_key="wk-test", region="sandbox")


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr("mappings.tasks.deliver_mapping.delay_on_commit", lambda *args: calls.append(args))
    return calls


@pytest.fixture
def contacts(source) -> SourceCollection:
    return SourceCollection.objects.get(source=source, collection="contacts")


@pytest.fixture
def mappings(destination, space, contacts_model, source):
    """a: sends email (user_id) and score; b: same model, sends only email; c: another collection."""
    a = MappingFactory(
        destination=destination,
        data_model=contacts_model,
        profile_space=space,
        name="a",
        identifiers={"user_id": "email"},
        traits=DEFAULT_TRAITS,
        enabled=True,
    )
    b = MappingFactory(
        destination=destination,
        data_model=contacts_model,
        profile_space=space,
        name="b",
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"]],
        enabled=True,
    )
    companies = DataModelFactory(source=source, collection="companies", name="Companies", columns=["name"])
    c = MappingFactory(
        destination=destination,
        data_model=companies,
        profile_space=space,
        name="c",
        action="group",
        identifiers={"group_id": "id", "user_id": "owner_email"},
        traits=[["name", "name"]],
        enabled=True,
    )
    return a, b, c


def _discover(sc: SourceCollection, new: dict) -> list[MappingIssue]:
    """What the engine does on discovery: compare with the stored schema, then store the new one."""
    old = sc.properties
    issues = schema_discovered(source_collection=sc, old=old, new=new)
    sc.properties = new
    sc.save(update_fields=["properties"])
    return issues


def _reload(*objs):
    for obj in objs:
        obj.refresh_from_db()


# --- detection -----------------------------------------------------------------------------------------------


def test_detect_delete_rename_and_type_change():
    old = copy.deepcopy(CONTACT_SCHEMA)
    new = copy.deepcopy(CONTACT_SCHEMA)
    del new["notes"]  # deleted, nothing similar added
    new["email_address"] = new.pop("email")  # same label and type under a new name: renamed
    new["score"]["type"] = "string"  # retyped
    new["lastname"]["fieldType"] = "textarea"  # display only: not drift
    changes = detect_changes(old, new)
    assert set(changes) == {"notes", "email", "score"}
    assert changes["notes"]["kind"] == "deleted"
    assert changes["email"]["kind"] == "renamed" and changes["email"]["new_property"] == "email_address"
    assert changes["score"]["kind"] == "type_changed"
    assert changes["score"]["old"]["type"] == "number" and changes["score"]["new"]["type"] == "string"


def test_a_rename_needs_one_clear_candidate():
    old = {"x": {"label": "Region", "type": "string"}}
    two = {"y": {"label": "Region", "type": "string"}, "z": {"label": "region ", "type": "string"}}
    assert detect_changes(old, two)["x"]["kind"] == "deleted"  # ambiguous: two same-label, same-type properties
    by_type = {"y": {"label": "Region", "type": "string"}, "z": {"label": "Region", "type": "number"}}
    assert detect_changes(old, by_type)["x"]["new_property"] == "y"  # the type decides between them
    other = {"y": {"label": "Territory", "type": "string"}}
    assert detect_changes(old, other)["x"]["kind"] == "deleted"


# --- pausing exactly the affected mappings ------------------------------------------------------------------


def test_deleted_property_pauses_only_the_mappings_that_send_it(contacts, mappings, mirror, enqueued):
    a, b, c = mappings
    new = copy.deepcopy(CONTACT_SCHEMA)
    del new["score"]
    issues = _discover(contacts, new)
    _reload(a, b, c)
    assert a.paused_reason == "drift" and a.paused_at is not None
    # b's model lists the column but b does not send it: flagged, not paused. c reads another collection.
    assert not b.paused and not c.paused
    by_mapping = {i.mapping_id: i for i in issues}
    assert set(by_mapping) == {a.pk, b.pk}
    assert by_mapping[a.pk].paused and not by_mapping[b.pk].paused
    assert by_mapping[a.pk].kind == "deleted" and by_mapping[a.pk].property_name == "score"
    assert "trait score" in by_mapping[a.pk].details["uses"]
    assert "was deleted" in by_mapping[a.pk].summary

    # A paused mapping delivers nothing: not enqueued after a sync, and a queued task does nothing.
    mirror.put(1, {"email": "a@example.com"})
    assert enqueue_deliveries(source=a.data_model.source, collections=["contacts"]) == 1
    assert {args[0] for args in enqueued} == {b.pk}
    assert deliver(mapping_id=a.pk) is None
    assert not a.runs.exists()

    # The same drift seen again (next sync) opens nothing new.
    assert _discover(contacts, new) == []
    assert MappingIssue.objects.filter(resolved_at__isnull=True).count() == 2


def test_renamed_identifier_pauses_and_repoint_fixes_and_resumes(contacts, mappings, owner, enqueued):
    a, b, c = mappings
    new = copy.deepcopy(CONTACT_SCHEMA)
    new["email_address"] = new.pop("email")
    issues = _discover(contacts, new)
    _reload(a, b, c)
    assert a.paused and b.paused and not c.paused  # both send email as their user_id
    issue = next(i for i in issues if i.mapping_id == a.pk)
    assert issue.kind == "renamed" and issue.new_property == "email_address"
    assert "renamed from email to email_address" in issue.summary

    fix_issue(issue=issue, action="repoint", actor=owner)
    _reload(a, b, a.data_model)
    # One click repairs the model and every mapping of it, resolves both issues and resumes both mappings.
    assert "email_address" in a.data_model.columns and "email" not in a.data_model.columns
    assert a.identifiers["user_id"] == "email_address" and b.identifiers["user_id"] == "email_address"
    assert ["email_address", "email"] in a.traits  # the trait name on the profile stays the same
    assert not a.paused and not b.paused
    assert not MappingIssue.objects.filter(resolved_at__isnull=True).exists()
    assert set(MappingIssue.objects.values_list("resolution", flat=True)) == {"repointed"}
    assert {args[0] for args in enqueued} == {a.pk, b.pk}  # what waited is delivered now
    assert AuditEvent.objects.filter(verb="drift.repoint").exists()


def test_type_change_pauses_and_remove_fixes_model_and_mappings(contacts, mappings, owner, enqueued):
    a, b, c = mappings
    new = copy.deepcopy(CONTACT_SCHEMA)
    new["score"]["type"] = "string"
    new["score"]["fieldType"] = "text"
    issues = _discover(contacts, new)
    a.refresh_from_db()
    assert a.paused
    issue = next(i for i in issues if i.mapping_id == a.pk)
    assert issue.kind == "type_changed" and "from number to string" in issue.summary
    fix_issue(issue=issue, action="remove", actor=owner)
    _reload(a, b, a.data_model)
    assert "score" not in a.data_model.columns
    assert all(column != "score" for column, _ in a.traits)
    assert not a.paused and a.delivers
    assert not MappingIssue.objects.filter(resolved_at__isnull=True).exists()  # b's flag is resolved too


def test_a_disabled_mapping_is_paused_too(contacts, mappings, enqueued):
    a, _b, _c = mappings
    Mapping.objects.filter(pk=a.pk).update(enabled=False)
    new = copy.deepcopy(CONTACT_SCHEMA)
    del new["score"]
    _discover(contacts, new)
    a.refresh_from_db()
    assert a.paused  # switching it on later must not send data built on a deleted property
    a.enabled = True
    a.save()
    assert not a.delivers and deliver(mapping_id=a.pk) is None


def test_setting_off_flags_without_pausing(contacts, mappings, workspace, mirror, enqueued):
    WorkspaceSettings.objects.create(workspace=workspace, drift_pauses_mappings=False)
    a, b, c = mappings
    new = copy.deepcopy(CONTACT_SCHEMA)
    new["score"]["type"] = "string"
    issues = _discover(contacts, new)
    a.refresh_from_db()
    assert issues and not a.paused and not any(i.paused for i in issues)
    mirror.put(1, {"email": "a@example.com"})
    enqueue_deliveries(source=a.data_model.source, collections=["contacts"])
    assert {args[0] for args in enqueued} == {a.pk, b.pk}


def test_accept_new_type_and_restored_property(contacts, mappings, owner, enqueued):
    a, _b, _c = mappings
    new = copy.deepcopy(CONTACT_SCHEMA)
    new["score"]["type"] = "string"
    issue = next(i for i in _discover(contacts, new) if i.mapping_id == a.pk)
    fix_issue(issue=issue, action="accept", actor=owner)
    a.refresh_from_db()
    assert not a.paused and any(column == "score" for column, _ in a.traits)  # kept, converted by its new type

    # A property deleted and then back (same name, same type) resolves itself.
    gone = copy.deepcopy(new)
    del gone["firstname"]
    _discover(contacts, gone)
    a.refresh_from_db()
    assert a.paused
    _discover(contacts, new)
    a.refresh_from_db()
    assert not a.paused
    assert MappingIssue.objects.filter(property_name="firstname", resolution="restored").count() == 2


def test_an_identifier_cannot_be_removed_only_repointed_or_resumed(contacts, mappings, owner, enqueued):
    from mappings.drift import DriftFixError, fix_choices

    a, _b, _c = mappings
    new = copy.deepcopy(CONTACT_SCHEMA)
    del new["email"]
    issue = next(i for i in _discover(contacts, new) if i.mapping_id == a.pk)
    assert [action for action, _ in fix_choices(issue)] == ["resume"]
    with pytest.raises(DriftFixError):
        fix_issue(issue=issue, action="remove", actor=owner)
    fix_issue(issue=issue, action="resume", actor=owner)
    a.refresh_from_db()
    assert not a.paused


# --- views and fragments -------------------------------------------------------------------------------------


@pytest.fixture
def paused(contacts, mappings, enqueued):
    new = copy.deepcopy(CONTACT_SCHEMA)
    del new["score"]
    _discover(contacts, new)
    a = mappings[0]
    a.refresh_from_db()
    return a, MappingIssue.objects.get(mapping=a)


def test_mapping_page_fragment_and_one_click_fix(paused, owner_client):
    mapping, issue = paused
    page = owner_client.get(reverse("mappings:drift", args=[mapping.pk])).content.decode()
    assert "was deleted" in page and "paused" in page and "Remove it from the model and mappings" in page
    response = owner_client.post(
        reverse("mappings:issue_fix", args=[issue.pk]),
        {"action": "remove", "next": reverse("mappings:drift", args=[mapping.pk])},
    )
    assert response.status_code == 302 and response["Location"] == reverse("mappings:drift", args=[mapping.pk])
    mapping.refresh_from_db()
    assert not mapping.paused
    issue.refresh_from_db()
    assert issue.resolution == "removed"


def test_drift_page_of_a_flagged_mapping_lists_its_change(paused, owner_client):
    """b is flagged, not paused (its model lists the deleted column, it does not send it): its page must show the
    change and must not say there is nothing to review."""
    flagged = Mapping.objects.get(name="b")
    assert not flagged.paused
    page = owner_client.get(reverse("mappings:drift", args=[flagged.pk])).content.decode()
    assert "was deleted" in page and "flagged" in page
    assert "uses no property that HubSpot deleted" not in page  # the old page said so under the listed change
    assert reverse("mappings:mapping_detail", args=[flagged.pk]) in page  # a way back to the mapping


def test_fix_message_says_what_was_done(paused, owner_client):
    mapping, issue = paused
    response = owner_client.post(reverse("mappings:issue_fix", args=[issue.pk]), {"action": "remove"}, follow=True)
    text = [str(m) for m in response.context["messages"]]
    assert text == [
        "HubSpot property “Score” (score) was deleted. score was removed from the data model “Contacts” and its "
        "mappings. The mapping “a” is delivering again."
    ]
    assert "Nothing to review" in response.content.decode()


def test_dashboard_fragment_lists_every_open_issue(paused, owner, workspace):
    request = RequestFactory().get("/")
    request.user, request.workspace = owner, workspace
    request.membership = owner.memberships.get(workspace=workspace)
    html = Template("{% load drift %}{% drift_panel %}").render(RequestContext(request, {}))
    assert html.count('class="drift-issue"') == 2 and "a</strong>" in html and "b</strong>" in html


def test_viewer_cannot_fix_and_outsider_gets_404(paused, viewer_client, outsider_client):
    mapping, issue = paused
    url = reverse("mappings:issue_fix", args=[issue.pk])
    assert viewer_client.post(url, {"action": "remove"}).status_code == 403
    assert "Remove it from" not in viewer_client.get(reverse("mappings:drift", args=[mapping.pk])).content.decode()
    assert outsider_client.post(url, {"action": "remove"}).status_code == 404
    assert outsider_client.get(reverse("mappings:drift", args=[mapping.pk])).status_code == 404
    mapping.refresh_from_db()
    assert mapping.paused


def test_fix_refuses_a_foreign_next_url(paused, owner_client):
    mapping, issue = paused
    response = owner_client.post(
        reverse("mappings:issue_fix", args=[issue.pk]), {"action": "resume", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("mappings:drift", args=[mapping.pk])


def test_new_properties_are_listed_on_the_source_models_page(contacts, contacts_model, owner_client):
    new = copy.deepcopy(CONTACT_SCHEMA)
    new["favourite_colour"] = {"label": "Favourite colour", "type": "string", "fieldType": "text"}
    del new["notes"]
    contacts.properties = new
    contacts.schema_changes = [{"at": "2026-11-29T10:00:00+00:00", "added": ["favourite_colour"], "removed": ["notes"]}]
    contacts.save()
    assert [p["name"] for p in new_properties(contacts)] == ["favourite_colour"]
    page = owner_client.get(reverse("sources:models", args=[contacts.source_id])).content.decode()
    assert "favourite_colour" in page and "Favourite colour" in page
    assert "lists columns HubSpot no longer has" in page and "<code>notes</code>" in page


# --- end to end: the extraction engine against the HubSpot sandbox -------------------------------------------


@pytest.fixture
def hubspot(hubspot_sandbox, settings):
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    hubspot_sandbox.set_knobs(rate_limits=False)
    return hubspot_sandbox


def test_a_sync_detects_a_rename_pauses_the_mapping_and_alerts(
    workspace, hubspot, destination, space, enqueued, inline_handoffs
):
    from hubsync.models import AlertState
    from tests.sources.extract_helpers import make_source, sync

    hubspot.seed(3001, contacts=5, companies=0, deals=0, tickets=0)
    hubspot.add_property("loyalty_tier", portal=3001, collection="contacts", label="Loyalty tier")
    source = make_source(workspace, hubspot, hub_id=3001)
    assert sync(source, "first").status == "succeeded"
    model = DataModelFactory(
        source=source, collection="contacts", name="Contacts", columns=["email", "loyalty_tier", "firstname"]
    )
    affected = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=[["loyalty_tier", "tier"]],
        enabled=True,
    )
    untouched = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"]],
        enabled=True,
    )
    AlertChannelFactory(workspace=workspace, kind="email", name="Ops", emails="ops@acme.test")

    hubspot.delete_property("loyalty_tier", portal=3001, collection="contacts")
    hubspot.add_property("loyalty_level", portal=3001, collection="contacts", label="Loyalty tier")
    # The finished run hands the evaluation over (alerts queue); inline_handoffs runs it here.
    assert sync(source).status == "succeeded"
    affected.refresh_from_db()
    untouched.refresh_from_db()
    assert affected.paused and not untouched.paused
    issue = MappingIssue.objects.get(mapping=affected)
    assert issue.kind == "renamed" and issue.new_property == "loyalty_level"
    # The finished run evaluated the alerts: the drift pause opened its streak.
    assert AlertState.objects.get(key=f"drift:mapping:{affected.pk}").is_open


def test_mapping_page_marks_the_columns_hubspot_no_longer_has(paused, owner_client):
    mapping, issue = paused
    page = owner_client.get(reverse("mappings:mapping_detail", args=[mapping.pk])).content.decode()
    assert page.count("gone from HubSpot") == 1  # score, and only score
    owner_client.post(reverse("mappings:issue_fix", args=[issue.pk]), {"action": "remove"})
    page = owner_client.get(reverse("mappings:mapping_detail", args=[mapping.pk])).content.decode()
    assert "gone from HubSpot" not in page

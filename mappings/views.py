"""Mappings: the editor, the mapping page with "Test the mapping with real HubSpot data", the Mapping Status
toggle, "Resync all" and delete (the destination and Profile Space pages are mappings.views_destinations).

Every change is audited; write keys go into the database encrypted and never come back into a page (the forms
render the key input empty, the audit log redacts it).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.http import safe_next
from models_app.models import SYSTEM_COLUMNS, DataModel
from sources.hubspot import HubSpotClient, HubSpotError, NeedsReconnect

from . import services
from .delivery import preview_message
from .forms import MappingForm, column_schema
from .models import DeliveryState, DeliveryStateCount, Destination, Mapping
from .selectors import delivered_before, rejected_summary
from .views_destinations import _can_change, _mapping_rows
from .views_sample import sample_context

logger = logging.getLogger(__name__)

# Properties that name a record in the test picker, per collection (the first non-empty ones are shown).
DISPLAY_PROPERTIES = {
    "contacts": ["email", "firstname", "lastname"],
    "companies": ["name", "domain"],
    "deals": ["dealname", "amount"],
    "tickets": ["subject"],
}
TEST_RESULTS = 10


def _back(request: WorkspaceRequest, default: str) -> str:
    """Where a form posted from several pages returns to: its `next` when it is a path of ours."""
    return safe_next(request, default)


# --- mappings ---------------------------------------------------------------------------------------------


@workspace_view()
def mapping_list(request: WorkspaceRequest) -> HttpResponse:
    mappings = _mapping_rows(Mapping.objects.filter(destination__workspace=request.workspace))
    return render(
        request,
        "mappings/mapping_list.html",
        {"mappings": mappings, "can_change": _can_change(request), "nav_section": "destinations"},
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _editor(request: WorkspaceRequest, form: MappingForm, mapping: Mapping | None, status: int = 200) -> HttpResponse:
    return render(
        request,
        "mappings/mapping_editor.html",
        {
            "form": form,
            "mapping": mapping,
            "destination": form.destination,
            "can_change": _can_change(request),
            "nav_section": "destinations",
            "column_options": form.column_options(),
            # One blank row is always offered (it is ignored when left empty): adding traits works without JS.
            "blank_rows": 1 + (request.POST.get("op") == "add_row"),
        },
        status=status,
    )


def _reloading(request: WorkspaceRequest) -> bool:
    """The editor posted back to show another model's columns or one more trait row, not to save."""
    return request.POST.get("op") in {"reload", "add_row"}


@workspace_view()
def mapping_new(request: WorkspaceRequest) -> HttpResponse:
    params = request.POST if request.method == "POST" else request.GET
    destinations = list(Destination.objects.filter(workspace=request.workspace))
    destination_id = _int(params.get("destination"))
    if destination_id is None and len(destinations) == 1:
        destination_id = destinations[0].pk
    if destination_id is None:
        if not destinations:
            messages.info(request, "A mapping sends to a Segment Profiles destination: add one first.")
            return redirect("mappings:destination_new")
        return render(
            request,
            "mappings/choose_destination.html",
            {"destinations": destinations, "data_model": params.get("data_model", ""), "nav_section": "destinations"},
        )
    destination = get_for_workspace(request, Destination, pk=destination_id)
    if request.method == "POST":
        form = MappingForm(
            request.POST, workspace=request.workspace, destination=destination, validate=not _reloading(request)
        )
        if _reloading(request):
            return _editor(request, form, None)
        if form.is_valid():
            mapping = services.save_mapping(
                mapping=Mapping(destination=destination), data=form.cleaned_data, actor=request.user
            )
            messages.success(
                request,
                "Mapping saved. It is disabled: test it with a real record below, then switch it on.",
            )
            return redirect("mappings:mapping_detail", mapping.pk)
        return _editor(request, form, None, status=400)
    initial: dict[str, Any] = {
        "action": Mapping.Action.IDENTIFY,
        "empty_values": Mapping.EMPTY_NULL,
        "identifier_format": Mapping.IdentifierFormat.TRIM,
        "archived_behaviour": Mapping.ArchivedBehaviour.NOTHING,
        "archived_trait": Mapping.DEFAULT_ARCHIVED_TRAIT,
    }
    model_id = _int(params.get("data_model"))
    if model_id is not None:
        model = get_for_workspace(request, DataModel, pk=model_id)
        initial["data_model"] = model.pk
        initial.update(_suggested_mapping(model))
    spaces = list(destination.profile_spaces.all())
    if len(spaces) == 1:
        initial["profile_space"] = spaces[0].pk
    form = MappingForm(workspace=request.workspace, destination=destination, initial=initial)
    return _editor(request, form, None)


def _suggested_mapping(model: DataModel) -> dict[str, Any]:
    """A starting point for a new mapping: e-mail (contacts) as User ID, the domain (companies) as Group ID."""
    columns = model.all_columns
    out: dict[str, Any] = {}
    if model.collection == "contacts" and "email" in columns:
        out["user_id"] = "email"
    elif model.collection == "companies":
        out["action"] = Mapping.Action.GROUP
        out["group_id"] = "domain" if "domain" in columns else "id"
    return out


def _saved_message(mapping: Mapping, before_hash: str, before_trait: bool) -> str:
    """What saving did to deliveries, in words (switching the archived trait on or off has its own cost)."""
    if mapping.config_hash() == before_hash or not mapping.enabled:
        return "Mapping saved."
    trait = mapping.archived_trait
    if mapping.sets_archived_trait and not before_trait:
        return (
            f"Mapping saved. Every message now carries {trait}, so the next delivery sends every record once more "
            f"({trait} = false for live records, true for archived ones this mapping delivered)."
        )
    if before_trait and not mapping.sets_archived_trait:
        return (
            f"Mapping saved. Archived records are no longer sent. Profiles keep {trait} as it was last sent: a "
            "record is resent only if something else in its message changed, not just to leave the trait out."
        )
    return "Mapping saved. The next delivery resends the records whose message changed."


@workspace_view()
def mapping_edit(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(request, Mapping.objects.select_related("destination", "data_model"), pk=mapping_id)
    if request.method == "POST":
        form = MappingForm(
            request.POST,
            workspace=request.workspace,
            destination=mapping.destination,
            instance=mapping,
            validate=not _reloading(request),
        )
        if _reloading(request):
            return _editor(request, form, mapping)
        if form.is_valid():
            before_hash, before_trait = mapping.config_hash(), mapping.sets_archived_trait
            services.save_mapping(mapping=mapping, data=form.cleaned_data, actor=request.user)
            messages.success(request, _saved_message(mapping, before_hash, before_trait))
            return redirect("mappings:mapping_detail", mapping.pk)
        return _editor(request, form, mapping, status=400)
    initial = {
        "name": mapping.name,
        "data_model": mapping.data_model_id,
        "profile_space": mapping.profile_space_id,
        "action": mapping.action,
        "empty_values": mapping.empty_values,
        "identifier_format": mapping.identifier_format,
        "archived_behaviour": mapping.archived_behaviour,
        "archived_trait": mapping.archived_trait or Mapping.DEFAULT_ARCHIVED_TRAIT,
        "traits": mapping.traits,
        **{k: mapping.identifier(k) or "" for k in Mapping.IDENTIFIER_KEYS},
    }
    form = MappingForm(workspace=request.workspace, destination=mapping.destination, instance=mapping, initial=initial)
    return _editor(request, form, mapping)


def _mapping_context(request: WorkspaceRequest, mapping: Mapping) -> dict[str, Any]:
    states = DeliveryStateCount.for_mappings([mapping.pk])[mapping.pk]
    schema = column_schema(mapping.data_model)
    labels = {c: (schema.get(c) or {}).get("label") or c for c in mapping.data_model.all_columns}
    return {
        "mapping": mapping,
        "destination": mapping.destination,
        "can_change": _can_change(request),
        "nav_section": "destinations",
        "runs": list(mapping.runs.all()[:10]),
        "state_counts": {s: states.get(s, 0) for s in DeliveryState.Status.values},
        "rejected": list(
            DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.REJECTED).order_by("object_id")[
                :10
            ]
        ),
        "rejected_summary": rejected_summary(mapping) if states.get(DeliveryState.Status.REJECTED) else None,
        "identifier_rows": [
            (label, mapping.identifier(key), labels.get(mapping.identifier(key) or "", ""))
            for key, label in (("user_id", "User ID"), ("anonymous_id", "Anonymous ID"), ("group_id", "Group ID"))
        ],
        "trait_rows": [(column, labels.get(column, column), trait) for column, trait in mapping.traits or []],
        "missing_columns": [c for c in mapping.used_columns() if c not in mapping.data_model.all_columns],
        # Columns HubSpot no longer has (deleted or renamed there): marked in the configuration table, next to
        # the drift panel that offers the fix. Only once a schema was discovered (else every column would be).
        "gone_columns": (
            {c for c in mapping.used_columns() if c not in schema} if len(schema) > len(SYSTEM_COLUMNS) else set()
        ),
        "sample": sample_context(request, mapping),
    }


@workspace_view()
def mapping_detail(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(
        request,
        Mapping.objects.select_related("destination", "data_model", "data_model__source", "profile_space", "last_run"),
        pk=mapping_id,
    )
    test = _test_panel(request, mapping)
    if request.htmx and request.htmx.target == "test-panel":
        return render(request, "mappings/_test_panel.html", {"mapping": mapping, "test": test, **_perm(request)})
    return render(request, "mappings/mapping_detail.html", {**_mapping_context(request, mapping), "test": test})


def _perm(request: WorkspaceRequest) -> dict[str, Any]:
    return {"can_change": _can_change(request)}


# --- "Test the mapping with real HubSpot data" ------------------------------------------------------------


def _display(collection: str, props: dict[str, Any]) -> str:
    wanted = DISPLAY_PROPERTIES.get(collection, [])
    if collection == "contacts":
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
        email = props.get("email") or ""
        return " · ".join(p for p in (name, email) if p)
    return " · ".join(str(props[p]) for p in wanted if props.get(p))


def _hubspot_properties(mapping: Mapping) -> list[str]:
    used = [c for c in mapping.used_columns() if c not in SYSTEM_COLUMNS]
    return list(dict.fromkeys([*used, *DISPLAY_PROPERTIES.get(mapping.data_model.collection, [])]))


def _hubspot_failure(exc: Exception) -> str:
    if isinstance(exc, NeedsReconnect):
        return "HubSpot no longer accepts this source's login: reconnect it on the source's Settings tab."
    if isinstance(exc, HubSpotError):
        return f"HubSpot answered with an error: {exc}"
    return f"HubSpot could not be reached ({type(exc).__name__})."


def _find_records(mapping: Mapping, query: str, archived: bool = False) -> list[dict[str, Any]]:
    """Up to TEST_RESULTS records read live from HubSpot: by id when the query is a number, by HubSpot's own
    search (e-mail, names, domain ...) otherwise, the first records of the collection when it is empty; with
    `archived`, the first archived ones (HubSpot's search never returns those)."""
    model = mapping.data_model
    props = _hubspot_properties(mapping)
    with HubSpotClient(model.source, max_retries=1, timeout=15) as client:
        if archived:
            page = client.list_page(model.collection, properties=props, limit=TEST_RESULTS, archived=True)
            results = page.get("results") or []
        elif query.isdigit():
            results = client.batch_read(model.collection, [query], props)
            results = results or client.batch_read(model.collection, [query], props, archived=True)
        elif query:
            body = {"query": query, "limit": TEST_RESULTS, "properties": props}
            results = client.search_page(model.collection, body).get("results") or []
        else:
            results = client.list_page(model.collection, properties=props, limit=TEST_RESULTS).get("results") or []
    return [
        {
            "id": r["id"],
            "label": _display(model.collection, r.get("properties") or {}),
            "archived": bool(r.get("archived")),
        }
        for r in results[:TEST_RESULTS]
    ]


def _read_record(mapping: Mapping, object_id: int) -> dict[str, Any] | None:
    """The record as HubSpot has it now; an archived one (HubSpot returns those only when asked) comes with
    "archived": true and the properties it had when it was archived, which the mirror keeps as well."""
    model = mapping.data_model
    props = _hubspot_properties(mapping)
    with HubSpotClient(model.source, max_retries=1, timeout=15) as client:
        found = client.batch_read(model.collection, [str(object_id)], props)
        if not found:
            found = [
                {**r, "archived": True}
                for r in client.batch_read(model.collection, [str(object_id)], props, archived=True)
            ]
    return found[0] if found else None


def _preview(
    mapping: Mapping, record: dict[str, Any], state: DeliveryState | None = None
) -> tuple[dict[str, Any], str]:
    archived = bool(record.get("archived"))
    return preview_message(
        mapping,
        object_id=int(record["id"]),
        properties=record.get("properties") or {},
        created_at=parse_datetime(record.get("createdAt") or ""),
        # What the sync stamps an archived record's message with: the time it was archived.
        updated_at=parse_datetime((archived and record.get("archivedAt")) or record.get("updatedAt") or ""),
        archived=archived,
        # The messageId a delivery would give it now (it names the step from what was delivered last).
        previous_hash=state.delivered_hash if state else None,
    )


def _archived_test(mapping: Mapping, state: DeliveryState | None) -> dict[str, Any]:
    """What the test panel says about an archived record: whether a sync sends it, and why (not)."""
    what = "account" if mapping.action == Mapping.Action.GROUP else "profile"
    if not mapping.sets_archived_trait:
        return {
            "archived_note": (
                f"This record is archived (deleted) in HubSpot, and this mapping does nothing for archived records: "
                f"a sync sends no message for it, and the {what} keeps the traits it had. To mark such {what}s, "
                "edit the mapping: “When a record is archived in HubSpot” → Set a trait."
            ),
            "sync_skips": True,
        }
    trait = mapping.archived_trait
    if not delivered_before(state):
        return {
            "archived_note": (
                f"This record is archived (deleted) in HubSpot, and this mapping never delivered it: a sync sends "
                f"nothing for it (no {what} is created just to say that its record is gone). Had it been "
                f"delivered, this is the message that would mark its {what} with {trait} = true:"
            ),
            "sync_skips": True,
        }
    return {
        "archived_note": (
            f"This record is archived (deleted) in HubSpot. A sync sends its {what} this message once: its "
            f"identifiers and its traits as HubSpot last had them, with {trait} = true. If the record is restored, "
            f"the next sync sends {trait} = false."
        )
    }


def _test_panel(request: WorkspaceRequest, mapping: Mapping, object_id: int | None = None) -> dict[str, Any]:
    """The state of the test panel for this request: nothing is asked from HubSpot until the user searches
    (`q`, also empty: "list the first records") or picks a record (`record`)."""
    test: dict[str, Any] = {"query": request.GET.get("q", "").strip(), "archived": request.GET.get("archived") == "1"}
    if object_id is None:
        object_id = _int(request.GET.get("record"))
    try:
        if "q" in request.GET and object_id is None:
            test["results"] = _find_records(mapping, test["query"], archived=test["archived"])
            test["searched"] = True
        if object_id is not None:
            record = _read_record(mapping, object_id)
            if record is None:
                test["error"] = f"HubSpot has no {mapping.data_model.collection} record {object_id} (any more)."
            else:
                state = DeliveryState.objects.filter(mapping=mapping, object_id=object_id).first()
                message, rejected = _preview(mapping, record, state)
                test.update(
                    record_id=object_id,
                    record_label=_display(mapping.data_model.collection, record.get("properties") or {}),
                    record_archived=bool(record.get("archived")),
                    rejected=rejected,
                )
                if record.get("archived"):
                    test.update(_archived_test(mapping, state))
                if mapping.sets_archived_trait or not record.get("archived"):
                    # "Do nothing" sends nothing for an archived record: there is no message to show.
                    test["message_json"] = json.dumps(message, indent=2, ensure_ascii=False)
    except (HubSpotError, requests.RequestException) as exc:
        test["error"] = _hubspot_failure(exc)
    return test


@workspace_view()
@require_POST
def mapping_test_send(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    """Send the previewed message of one record to the Profile Space. The message is rebuilt here from HubSpot
    (never taken from the browser), so what is sent is exactly what the engine would send."""
    mapping = get_for_workspace(
        request, Mapping.objects.select_related("destination", "data_model__source", "profile_space"), pk=mapping_id
    )
    object_id = _int(request.POST.get("record"))
    test: dict[str, Any] = (
        _test_panel(request, mapping, object_id) if object_id is not None else {"error": "Pick a record first."}
    )
    sendable = "message_json" in test and not test.get("rejected") and not test.get("sync_skips")
    if object_id is not None and sendable:
        # Only what a sync would send: never an archived record's message that the sync leaves out.
        test["sent"] = services.send_test(
            mapping=mapping, object_id=object_id, message=json.loads(test["message_json"]), actor=request.user
        )
    if request.htmx:
        return render(request, "mappings/_test_panel.html", {"mapping": mapping, "test": test, **_perm(request)})
    return render(request, "mappings/mapping_detail.html", {**_mapping_context(request, mapping), "test": test})


# --- status, resync, delete -------------------------------------------------------------------------------


@workspace_view()
@require_POST
def mapping_toggle(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(
        request, Mapping.objects.select_related("destination", "data_model__source", "last_run"), pk=mapping_id
    )
    wanted = request.POST.get("enabled") in {"1", "true", "on"}
    services.set_mapping_enabled(mapping=mapping, enabled=wanted, actor=request.user)
    if request.htmx:
        return render(request, "mappings/_toggle.html", {"m": mapping, "can_change": True})
    messages.success(request, f"{mapping}: {'enabled' if wanted else 'disabled'}.")
    return redirect(_back(request, reverse("mappings:mapping_detail", args=[mapping.pk])))


@workspace_view()
def mapping_resync(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(
        request, Mapping.objects.select_related("destination", "data_model__source", "profile_space"), pk=mapping_id
    )
    if request.method == "POST":
        services.resync_mapping(mapping=mapping, actor=request.user)
        if mapping.enabled:
            messages.success(request, "Resync started: every record is sent again.")
        else:
            messages.success(request, "Every record will be sent again once the mapping is enabled.")
        return redirect("mappings:mapping_detail", mapping.pk)
    records = mapping.data_model.source.records.filter(collection=mapping.data_model.collection, archived=False)
    return render(
        request, "mappings/mapping_resync.html", {**_mapping_context(request, mapping), "record_count": records.count()}
    )


@workspace_view()
def mapping_delete(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(request, Mapping.objects.select_related("destination", "data_model"), pk=mapping_id)
    if request.method == "POST":
        destination = mapping.destination
        services.delete_mapping(mapping=mapping, actor=request.user)
        messages.success(request, f"Mapping {mapping} was deleted. The profiles in Segment keep their traits.")
        return redirect("mappings:destination", destination.pk)
    return render(request, "mappings/mapping_delete.html", _mapping_context(request, mapping))

"""Test the mapping with real HubSpot data: a record read from HubSpot now and the exact message a sync would
build for it (`mapping_test`, a read), and sending that message to the Profile Space (`send_mapping_test`). The
mapping page and the API both use these, so what they show and send is the same.

A module of its own rather than part of selectors.py and services.py: it builds the message with the delivery
engine's `preview_message`, and the engine imports both of those modules.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from django.utils.dateparse import parse_datetime

from models_app.models import SYSTEM_COLUMNS
from sources.hubspot import HubSpotClient, HubSpotError, NeedsReconnect

from . import services
from .delivery import preview_message
from .models import DeliveryState, Mapping
from .selectors import delivered_before

# Properties that name a record in the test picker, per collection (the first non-empty ones are shown).
DISPLAY_PROPERTIES = {
    "contacts": ["email", "firstname", "lastname"],
    "companies": ["name", "domain"],
    "deals": ["dealname", "amount"],
    "tickets": ["subject"],
}
TEST_RESULTS = 10


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


def _record_test(mapping: Mapping, object_id: int) -> dict[str, Any]:
    record = _read_record(mapping, object_id)
    if record is None:
        return {"error": f"HubSpot has no {mapping.data_model.collection} record {object_id} (any more)."}
    state = DeliveryState.objects.filter(mapping=mapping, object_id=object_id).first()
    message, rejected = _preview(mapping, record, state)
    test: dict[str, Any] = {
        "record_id": object_id,
        "record_label": _display(mapping.data_model.collection, record.get("properties") or {}),
        "record_archived": bool(record.get("archived")),
        "rejected": rejected,
    }
    if record.get("archived"):
        test.update(_archived_test(mapping, state))
    if mapping.sets_archived_trait or not record.get("archived"):
        # "Do nothing" sends nothing for an archived record: there is no message to show.
        test["message_json"] = json.dumps(message, indent=2, ensure_ascii=False)
    return test


def mapping_test(
    mapping: Mapping, *, object_id: int | None = None, query: str | None = None, archived: bool = False
) -> dict[str, Any]:
    """What "Test the mapping" shows. With `object_id`: that record as HubSpot has it now and the exact message a
    sync would build for it (`message_json`), why it would be rejected (`rejected`) or skipped (`sync_skips`,
    `archived_note`). Without it, and with a `query` (also "": the first records; with `archived`: the first
    archived ones): the records HubSpot finds (`results`). With neither, nothing is asked from HubSpot. A failure
    to read HubSpot is told in `error`. Sends nothing."""
    query = query.strip() if query is not None else None
    test: dict[str, Any] = {"query": query or "", "archived": archived}
    try:
        if query is not None and object_id is None:
            test["results"] = _find_records(mapping, query, archived=archived)
            test["searched"] = True
        if object_id is not None:
            test.update(_record_test(mapping, object_id))
    except (HubSpotError, requests.RequestException) as exc:
        test["error"] = _hubspot_failure(exc)
    return test


def sendable(test: dict[str, Any]) -> bool:
    """Only what a sync would send: a valid message, never an archived record's message that the sync leaves out."""
    return "message_json" in test and not test.get("rejected") and not test.get("sync_skips")


def send_mapping_test(*, mapping: Mapping, object_id: int, actor: Any) -> dict[str, Any]:
    """Read the record from HubSpot, build its message (never taken from the caller, so what is sent is exactly
    what the engine would send) and, when a sync would send it, send it to the Profile Space (audited). Returns
    `mapping_test`'s answer, with `sent` (the Segment answer) when it was sent."""
    test = mapping_test(mapping, object_id=object_id)
    if sendable(test):
        test["sent"] = services.send_test(
            mapping=mapping, object_id=object_id, message=json.loads(test["message_json"]), actor=actor
        )
    return test

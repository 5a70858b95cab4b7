"""The model builder's HubSpot side: the property schema a model's columns are picked from, the live preview
(the first records read from HubSpot now, with the chosen columns) and the schema validation.

Costs, because the preview refreshes as columns are ticked: `read_preview` makes exactly one list request per
refresh (`HubSpotClient.list_page` with `limit=10`; only a property list too long for one URL adds a batch read),
and never asks HubSpot for the schema. The schema is read when the builder page opens (`load_schema`), stored on
the SourceCollection as the extraction engine stores it, and the preview validates against that.

HubSpot errors never escape: they become a `PreviewError` with a message an admin can act on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from django.utils import timezone

from sources.extraction import store_schema
from sources.hubspot import (
    AuthError,
    HubSpotClient,
    HubSpotError,
    MissingScopes,
    NeedsReconnect,
    NotFound,
    TransientError,
)
from sources.models import Source, SourceCollection

from .models import SYSTEM_COLUMNS, model_columns

log = logging.getLogger(__name__)

PREVIEW_LIMIT = 10
# An admin is waiting on the page: a couple of quick retries, then say so, instead of the sync's long patience.
UI_MAX_RETRIES = 2
UI_TIMEOUT = 15.0
UI_BACKOFF_CAP = 2.0

# HubSpot's internal group names -> what HubSpot's own UI calls them.
GROUP_LABELS = {
    "contactinformation": "Contact information",
    "companyinformation": "Company information",
    "dealinformation": "Deal information",
    "ticketinformation": "Ticket information",
    "analyticsinformation": "Web analytics history",
    "emailinformation": "Email information",
    "sales_properties": "Sales properties",
    "socialmediainformation": "Social media information",
    "conversioninformation": "Conversion information",
    "custom_properties": "Custom properties",
}


def group_label(name: str) -> str:
    if not name:
        return "Other"
    if name in GROUP_LABELS:
        return GROUP_LABELS[name]
    text = name.replace("_", " ").strip()
    if text.endswith("information") and " " not in text:
        text = text[: -len("information")] + " information"
    return text[:1].upper() + text[1:]


def ui_client(source: Source) -> HubSpotClient:
    return HubSpotClient(source, max_retries=UI_MAX_RETRIES, timeout=UI_TIMEOUT, backoff_cap=UI_BACKOFF_CAP)


# --- errors an admin can act on -------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewError:
    kind: str  # reconnect | scope | unavailable | not_found | other
    title: str
    detail: str = ""


def describe_error(exc: Exception, *, collection: str) -> PreviewError:
    """What to tell the admin about a failed HubSpot call (never a token, never a traceback)."""
    if isinstance(exc, NeedsReconnect | AuthError):
        return PreviewError(
            "reconnect",
            "HubSpot needs to be reconnected.",
            "HubSpot no longer accepts this source's login. Reconnect HubSpot in the source's settings, then "
            "come back to this model.",
        )
    if isinstance(exc, MissingScopes):
        return PreviewError(
            "scope",
            f"This HubSpot connection may not read {collection}.",
            "HubSpot refused the request for a missing permission (scope). Reconnect HubSpot and grant access to "
            f"{collection}, or build the model on another collection."
            + (f" HubSpot said: {exc.message}" if exc.message else ""),
        )
    if isinstance(exc, NotFound):
        return PreviewError("not_found", f"HubSpot does not know the collection {collection}.", exc.message)
    if isinstance(exc, TransientError | requests.RequestException):
        last_status = getattr(exc, "status", None)
        status = f" (last answer: {last_status})" if last_status else ""
        return PreviewError(
            "unavailable",
            "HubSpot is not answering right now.",
            f"The request failed even after retrying{status}. Nothing is wrong with the model; try again in a minute.",
        )
    if isinstance(exc, HubSpotError):
        return PreviewError("other", "HubSpot refused the request.", str(exc))
    return PreviewError("other", "The preview could not be read from HubSpot.", type(exc).__name__)


# --- the schema -----------------------------------------------------------------------------------------


def load_schema(source: Source, sc: SourceCollection) -> tuple[dict[str, dict], PreviewError | None]:
    """The collection's property schema read live from HubSpot (one request) and stored; on failure the schema
    last stored, with the error. A source that needs reconnecting is not asked at all."""
    if source.status == Source.Status.NEEDS_RECONNECT or not source.token:
        return sc.properties or {}, describe_error(NeedsReconnect("needs reconnect"), collection=sc.collection)
    try:
        with ui_client(source) as client:
            raw = client.get_properties(sc.collection)
    except (HubSpotError, requests.RequestException) as exc:
        log.warning("schema of %s/%s could not be read: %s", source.pk, sc.collection, type(exc).__name__)
        return sc.properties or {}, describe_error(exc, collection=sc.collection)
    return store_schema(sc, raw), None


@dataclass
class Column:
    name: str
    label: str
    type: str
    field_type: str
    group: str
    missing: bool = False  # chosen before, no longer in HubSpot's schema
    selected: bool = False

    @property
    def search_text(self) -> str:
        return f"{self.name} {self.label} {self.type}".lower()


@dataclass
class ColumnGroup:
    key: str
    label: str
    columns: list[Column] = field(default_factory=list)

    @property
    def selected_count(self) -> int:
        return sum(c.selected for c in self.columns)


def column_groups(schema: dict[str, dict], chosen: list[str]) -> list[ColumnGroup]:
    """The properties grouped as HubSpot groups them (groups and properties ordered by label), with the columns
    chosen earlier that HubSpot no longer has in a group of their own at the top."""
    chosen_set = set(chosen)
    groups: dict[str, ColumnGroup] = {}
    for name, meta in schema.items():
        if name in SYSTEM_COLUMNS:
            continue
        key = str(meta.get("groupName") or "")
        group = groups.setdefault(key, ColumnGroup(key, group_label(key)))
        group.columns.append(
            Column(
                name=name,
                label=str(meta.get("label") or name),
                type=str(meta.get("type") or ""),
                field_type=str(meta.get("fieldType") or ""),
                group=key,
                selected=name in chosen_set,
            )
        )
    ordered = sorted(groups.values(), key=lambda g: (g.key == "", g.label.lower()))
    for group in ordered:
        group.columns.sort(key=lambda c: (c.label.lower(), c.name))
    gone = [c for c in chosen if c not in schema and c not in SYSTEM_COLUMNS]
    if gone:
        missing = ColumnGroup(
            "_missing",
            "No longer in HubSpot",
            [Column(name, name, "", "", "_missing", missing=True, selected=True) for name in gone],
        )
        ordered.insert(0, missing)
    return ordered


def ordered_columns(schema: dict[str, dict], chosen: list[str], previous: list[str] | None = None) -> list[str]:
    """Chosen columns in a stable order: those the model had keep their place, new ones follow in the order the
    picker shows them."""
    chosen_set = set(chosen) - set(SYSTEM_COLUMNS)
    kept = [c for c in (previous or []) if c in chosen_set]
    picker_order = [c.name for g in column_groups(schema, []) for c in g.columns]
    new = [c for c in picker_order if c in chosen_set and c not in kept]
    rest = sorted(chosen_set - set(kept) - set(new))
    return kept + new + rest


# --- the preview ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    kind: str  # missing | empty | unselected
    message: str
    columns: tuple[str, ...] = ()


@dataclass
class Preview:
    collection: str
    columns: list[str]  # system columns first, then the chosen ones
    labels: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: PreviewError | None = None
    flags: list[Flag] = field(default_factory=list)
    elapsed_ms: int = 0
    api_calls: int = 0
    read_at: Any = None
    has_more: bool = False
    schema_read_at: Any = None  # when HubSpot's property list the columns were checked against was read

    @property
    def schema_valid(self) -> bool:
        """Every column is in HubSpot's schema (so has a known type) and HubSpot answered: the positive state the
        builder shows. Empty columns and an unselected collection are warnings about the data, not the schema; a
        column without a type (the schema could not be read) is not known to be valid."""
        return self.error is None and not self.missing_columns and all(self.types.get(c) for c in self.columns)

    @property
    def type_summary(self) -> list[tuple[str, int]]:
        """(type, number of columns) over the model's columns, most common first: "3 string, 2 datetime, ..."."""
        counts: dict[str, int] = {}
        for column in self.columns:
            kind = self.types.get(column) or "unknown"
            counts[kind] = counts.get(kind, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    @property
    def display_columns(self) -> list[str]:
        """Table order: the record id, the chosen columns, then the timestamps (the columns the admin just ticked
        should be in view without scrolling)."""
        return ["id", *(c for c in self.columns if c not in SYSTEM_COLUMNS), "created_at", "updated_at"]

    @property
    def table(self) -> list[list[Any]]:
        return [[row.get(c) for c in self.display_columns] for row in self.rows]

    @property
    def empty_columns(self) -> set[str]:
        return {c for f in self.flags if f.kind == "empty" for c in f.columns}

    @property
    def missing_columns(self) -> set[str]:
        return {c for f in self.flags if f.kind == "missing" for c in f.columns}


def _row(record: dict, columns: list[str]) -> dict[str, Any]:
    props = record.get("properties") or {}
    row: dict[str, Any] = {
        "id": record.get("id"),
        "created_at": record.get("createdAt"),
        "updated_at": record.get("updatedAt"),
    }
    for name in columns:
        if name not in SYSTEM_COLUMNS:
            value = props.get(name)
            row[name] = None if value in (None, "") else value
    return row


def read_preview(*, source: Source, sc: SourceCollection, columns: list[str]) -> Preview:
    """The first PREVIEW_LIMIT records of the collection read from HubSpot now, with `columns`, and the schema
    validation: columns HubSpot's schema no longer has, columns empty in every previewed record, and a
    collection the source's selective sync does not include. One HubSpot request."""
    schema = sc.properties or {}
    all_columns = model_columns(columns)
    chosen = all_columns[len(SYSTEM_COLUMNS) :]
    preview = Preview(
        collection=sc.collection,
        columns=all_columns,
        labels={
            **{k: v["label"] for k, v in SYSTEM_COLUMNS.items()},
            **{c: str((schema.get(c) or {}).get("label") or c) for c in chosen},
        },
        types={
            **{k: v["type"] for k, v in SYSTEM_COLUMNS.items()},
            **{c: str((schema.get(c) or {}).get("type") or "") for c in chosen},
        },
        schema_read_at=sc.schema_discovered_at,
    )
    if not sc.selected:
        preview.flags.append(
            Flag(
                "unselected",
                f"{sc.collection} is not selected in this source's selective sync, so nothing from it reaches "
                "the mirror: mappings using this model would deliver nothing new. Add it in the source's "
                "Settings.",
            )
        )
    missing = tuple(c for c in chosen if schema and c not in schema)
    if missing:
        preview.flags.append(
            Flag(
                "missing",
                "No longer in HubSpot's schema (deleted or renamed): "
                + ", ".join(missing)
                + ". Mappings using these columns get empty values; remove them from the model.",
                missing,
            )
        )
    if source.status == Source.Status.NEEDS_RECONNECT or not source.token:
        preview.error = describe_error(NeedsReconnect("needs reconnect"), collection=sc.collection)
        return preview
    started = time.monotonic()
    client = ui_client(source)
    try:
        # Ask only for properties HubSpot has: a missing one is flagged above, and asking for it is pointless.
        wanted = [c for c in chosen if c not in missing]
        page = client.list_page(sc.collection, properties=wanted, limit=PREVIEW_LIMIT)
    except (HubSpotError, requests.RequestException) as exc:
        log.warning("preview of %s/%s failed: %s", source.pk, sc.collection, type(exc).__name__)
        preview.error = describe_error(exc, collection=sc.collection)
        return preview
    except Exception:  # the page must render whatever happened; the log has the traceback
        log.exception("preview of %s/%s failed", source.pk, sc.collection)
        preview.error = PreviewError("other", "The preview could not be read from HubSpot.")
        return preview
    finally:
        client.close()
        preview.elapsed_ms = int((time.monotonic() - started) * 1000)
        preview.api_calls = client.api_calls
        preview.read_at = timezone.now()
    records = (page or {}).get("results") or []
    preview.rows = [_row(r, all_columns) for r in records[:PREVIEW_LIMIT]]
    preview.has_more = bool(((page or {}).get("paging") or {}).get("next"))
    if preview.rows:
        empty = tuple(c for c in chosen if c not in missing and all(row.get(c) is None for row in preview.rows))
        if empty:
            preview.flags.append(
                Flag(
                    "empty",
                    f"Empty in all {len(preview.rows)} previewed records: "
                    + ", ".join(empty)
                    + ". Check that these are the properties you mean; empty values clear traits or are left "
                    "out, as the mapping decides.",
                    empty,
                )
            )
    return preview

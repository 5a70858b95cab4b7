"""Reads of the delivery bookkeeping: what views, the delivery engine and the record debugger ask about a mapping's
records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from django.db.models import Case, CharField, Count, Min, Q, QuerySet, Value, When
from django.db.models.functions import Concat, Left
from django.utils import timezone
from django.utils.dateparse import parse_date

from sources.models import Record

from .models import DeliveryState, Mapping


def delivered_before(state: DeliveryState | None) -> bool:
    """Segment took a message for this record from this mapping at some point (also after a "Resync all")."""
    return state is not None and bool(state.delivered_hash or state.delivered_at)


def sample_cutoff(mapping: Mapping) -> int | None:
    """Sample mode: the highest object id in the sample (the N-th lowest id of the collection, archived records
    included), or None when every record is in it (no sample mode, or fewer than N records so far). Records
    arrive with growing ids, so the cutoff only moves down, except when records HubSpot deleted for good leave
    the mirror: the extraction engine then sends these mappings back to watermark 0. One index scan on the
    mirror's unique (source, collection, object_id)."""
    size = mapping.sample_size
    if not size:
        return None
    model = mapping.data_model
    return (
        Record.objects.filter(source_id=model.source_id, collection=model.collection)
        .order_by("object_id")
        .values_list("object_id", flat=True)[size - 1 : size]
        .first()
    )


def rejected_states(mapping: Mapping) -> QuerySet[DeliveryState]:
    """The mapping's rejected records (the list users filter and retry from)."""
    return DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.REJECTED)


REJECTED_FILTERS = ("reason", "object_id", "since", "until")


def rejected_filters(data: Any) -> dict[str, str]:
    """The rejected list's filters from a query string, a form or a JSON body (a missing one is "")."""
    return {key: str(data.get(key) or "").strip() for key in REJECTED_FILTERS}


def filter_rejected(mapping: Mapping, filters: dict[str, str]) -> tuple[QuerySet, list[str]]:
    """The rejected records matching the filters of the rejected list (`reason` contained in the reason, the HubSpot
    `object_id`, updated `since` / `until` a day), and a message per filter value that could not be used. A
    filter left empty ("") matches everything."""
    qs = rejected_states(mapping)
    problems: list[str] = []
    if filters["reason"]:
        qs = qs.filter(error__icontains=filters["reason"])
    if filters["object_id"]:
        if filters["object_id"].isdigit():
            qs = qs.filter(object_id=int(filters["object_id"]))
        else:
            problems.append("A HubSpot record id is a number.")
    tz = timezone.get_current_timezone()
    for key, lookup, at in (("since", "updated_at__gte", time.min), ("until", "updated_at__lte", time.max)):
        if filters[key]:
            try:
                day = parse_date(filters[key])
            except ValueError:  # well-formed but impossible, like 2026-02-31
                day = None
            if day is None:
                problems.append(f"{key.title()}: use a date like 2026-11-29.")
            else:
                qs = qs.filter(**{lookup: datetime.combine(day, at, tzinfo=tz)})
    return qs, problems


# --- why records were rejected, in aggregate ---------------------------------------------------------------

# Distinct reasons read per page view; the rest (there are seldom more than a handful) count as "other reasons".
REASON_ROWS = 200


@dataclass
class RejectedReason:
    """One kind of rejection with how many records it holds and what would fix it."""

    kind: str
    title: str
    count: int
    example: str  # one record's full reason, as the list shows it
    fix: str
    filter: str  # the rejected list's "reason contains" value that shows exactly these records
    # Whether "Retry" can deliver these records as they are. Data- or mapping-bound rejections come back until
    # HubSpot or the mapping changes, and either change makes the next delivery reconsider them by itself.
    retry_helps: bool
    edit_mapping: bool = False


@dataclass
class RejectedSummary:
    total: int = 0
    reasons: list[RejectedReason] = field(default_factory=list)

    @property
    def retry_helps(self) -> bool:
        return any(r.retry_helps for r in self.reasons)


def _identifier_fix(mapping: Mapping) -> str:
    if mapping.identifier("anonymous_id"):
        return (
            "Both identifier columns are empty for these records. Fill one in HubSpot, or map another column as "
            "Anonymous ID. Or leave them out on purpose: they are skipped at every sync, cost nothing, and are "
            "picked up by themselves when HubSpot gives them a value."
        )
    column = mapping.identifier("user_id")
    what = f"“{column}”" if column else "the User ID column"
    return (
        f"These records have no {what} in HubSpot. To send them anyway, map an Anonymous ID as well (for "
        "example the record id, column “id”): Segment then keeps a profile for each of them. Or leave them "
        "out on purpose, filtering them in effect: they are skipped at every sync, cost nothing, and are sent "
        f"by themselves as soon as HubSpot gives them {what}."
    )


# The reasons mappings.delivery.messages writes, told apart by how they begin (checked in the database, so that
# reasons that differ per record, such as a message's size, still make one group).
REASON_KINDS: list[tuple[str, Q]] = [
    ("no_identifier", Q(error__startswith="No User ID or Anonymous ID")),
    ("no_identifier_column", Q(error__startswith="The mapping maps neither")),
    ("no_group_id", Q(error__startswith="No Group ID") | Q(error__startswith="The mapping has no Group ID")),
    ("too_large", Q(error__startswith="The message is", error__contains="Segment accepts at most")),
    ("archived", Q(error__startswith="Archived (deleted) in HubSpot")),
]
OTHER = "other:"


def _reason(mapping: Mapping, kind: str, count: int, example: str) -> RejectedReason:
    """Title, fix, list filter and whether retrying helps, for one kind of rejection."""
    if kind == "no_identifier":
        return RejectedReason(
            kind,
            "No User ID or Anonymous ID",
            count,
            example,
            _identifier_fix(mapping),
            "No User ID or Anonymous ID",
            retry_helps=False,
            edit_mapping=True,
        )
    if kind == "no_identifier_column":
        fix = "Edit the mapping: map a User ID or an Anonymous ID column. Saving it reconsiders every record."
        return RejectedReason(
            kind,
            "The mapping has no User ID or Anonymous ID",
            count,
            example,
            fix,
            "maps neither",
            retry_helps=False,
            edit_mapping=True,
        )
    if kind == "no_group_id":
        fix = (
            "A group call needs a Group ID. Fill the column in HubSpot, or edit the mapping to use a column every "
            "account has (for example the record id, “id”)."
        )
        return RejectedReason(
            kind, "No Group ID", count, example, fix, "Group ID", retry_helps=False, edit_mapping=True
        )
    if kind == "too_large":
        fix = (
            "Segment refuses messages over 32 KB. Edit the mapping to leave out the largest traits (named in each "
            "reason), or shorten the values in HubSpot."
        )
        return RejectedReason(
            kind,
            "Message over Segment's 32 KB limit",
            count,
            example,
            fix,
            "Segment accepts at most",
            retry_helps=False,
            edit_mapping=True,
        )
    if kind == "archived":
        fix = "Nothing to fix: records deleted in HubSpot are not sent. Restoring one in HubSpot sends it again."
        return RejectedReason(
            kind, "Archived in HubSpot", count, example, fix, "Archived (deleted) in HubSpot", retry_helps=False
        )
    fix = "See each record's reason. Once its cause is gone, retry these records."
    return RejectedReason(kind, example[:160], count, example, fix, example[:60], retry_helps=True)


def rejected_summary(mapping: Mapping) -> RejectedSummary:
    """The mapping's rejected records grouped by why, largest group first: one GROUP BY over its rejected states,
    the known reasons grouped by kind, any other by its first 120 characters (at most REASON_ROWS groups read)."""
    kind = Case(
        *[When(condition, then=Value(name)) for name, condition in REASON_KINDS],
        default=Concat(Value(OTHER), Left("error", 120)),
        output_field=CharField(),
    )
    rows = list(
        rejected_states(mapping)
        .annotate(kind=kind)
        .values("kind")
        .annotate(n=Count("pk"), example=Min("error"))
        .order_by("-n", "kind")[:REASON_ROWS]
    )
    summary = RejectedSummary()
    summary.reasons = [_reason(mapping, row["kind"], row["n"], row["example"] or "") for row in rows]
    summary.total = sum(r.count for r in summary.reasons)
    if len(rows) == REASON_ROWS:
        rest = rejected_states(mapping).count() - summary.total
        if rest > 0:
            summary.total += rest
            summary.reasons.append(
                RejectedReason("rest", "Other reasons", rest, "", "See each record's reason in the list.", "", True)
            )
    return summary

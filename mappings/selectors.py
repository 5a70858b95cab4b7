"""Reads of the delivery bookkeeping: what views, the delivery engine and the record debugger ask about a mapping's
records."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, QuerySet

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


def _classify(mapping: Mapping, error: str) -> tuple[str, str, str, str, bool, bool]:
    """(kind, title, fix, filter, retry_helps, edit_mapping) of one stored rejection reason. The reasons are
    written by mappings.delivery.messages; the prefixes below are theirs."""
    if error.startswith("No User ID or Anonymous ID"):
        return (
            "no_identifier",
            "No User ID or Anonymous ID",
            _identifier_fix(mapping),
            "No User ID or Anonymous ID",
            False,
            True,
        )
    if error.startswith("The mapping maps neither"):
        fix = "Edit the mapping: map a User ID or an Anonymous ID column. Saving it reconsiders every record."
        return ("no_identifier_column", "The mapping has no User ID or Anonymous ID", fix, "maps neither", False, True)
    if error.startswith(("No Group ID", "The mapping has no Group ID")):
        fix = (
            "A group call needs a Group ID. Fill the column in HubSpot, or edit the mapping to use a column every "
            "account has (for example the record id, “id”)."
        )
        return ("no_group_id", "No Group ID", fix, "Group ID", False, True)
    if error.startswith("The message is") and "Segment accepts at most" in error:
        fix = (
            "Segment refuses messages over 32 KB. Edit the mapping to leave out the largest traits (named in each "
            "reason), or shorten the values in HubSpot."
        )
        return ("too_large", "Message over Segment's 32 KB limit", fix, "Segment accepts at most", False, True)
    if error.startswith("Archived (deleted) in HubSpot"):
        fix = "Nothing to fix: records deleted in HubSpot are not sent. Restoring one in HubSpot sends it again."
        return ("archived", "Archived in HubSpot", fix, "Archived (deleted) in HubSpot", False, False)
    fix = "See each record's reason. Once its cause is gone, retry these records."
    return ("other:" + error[:120], error[:160], fix, error[:60], True, False)


def rejected_summary(mapping: Mapping) -> RejectedSummary:
    """The mapping's rejected records grouped by why, largest group first: one GROUP BY over its states (on the
    (mapping, status) index), at most REASON_ROWS distinct texts read."""
    rows = list(rejected_states(mapping).values("error").annotate(n=Count("pk")).order_by("-n", "error")[:REASON_ROWS])
    summary = RejectedSummary()
    groups: dict[str, RejectedReason] = {}
    for row in rows:
        error = row["error"] or ""
        kind, title, fix, needle, retry_helps, edit = _classify(mapping, error)
        group = groups.get(kind)
        if group is None:
            group = groups[kind] = RejectedReason(kind, title, 0, error, fix, needle, retry_helps, edit)
        group.count += row["n"]
    summary.reasons = sorted(groups.values(), key=lambda g: -g.count)
    counted = sum(g.count for g in summary.reasons)
    summary.total = counted
    if len(rows) == REASON_ROWS:
        rest = rejected_states(mapping).count() - counted
        if rest > 0:
            summary.total += rest
            summary.reasons.append(
                RejectedReason("rest", "Other reasons", rest, "", "See each record's reason in the list.", "", True)
            )
    return summary

"""The record debugger: look up a HubSpot record by id or email, and explain in words what happened to it.

For the record: its mirror row (every property), the history of changes syncs saw (sources.RecordChange), and
for every mapping that reads its collection the verdict: delivered (when, messageId, the exact payload), rejected
(the reason), waiting for the next delivery, left out by sample mode, archived, or the mapping is off; plus the
message the mapping would send now (monitoring.verdicts).

What each mapping did and would do with the record is in monitoring.verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Lower

from mappings.models import DeliveryState, Mapping
from sources.models import MergedRecord, Record, RecordChange, SourceCollection

from .verdicts import Verdict, build_verdict

HISTORY_SHOWN = 100
MAX_MATCHES = 50


def email_lookup(qs: QuerySet[Record], email: str) -> QuerySet[Record]:
    """Records whose `email` property equals `email`, case-insensitively. Written as the expression of the
    `record_email` functional index (sources.Record.Meta) so PostgreSQL answers from the index."""
    return qs.alias(email_lc=Lower(KT("properties__email"))).filter(email_lc=email.strip().lower())


def not_in_mirror(workspace: Any, query: str) -> tuple[str, str]:
    """Why a searched record is not in the mirror, as far as hubsync can tell, and the heading when it is known
    to have left HubSpot ("Merged in HubSpot." / "Deleted in HubSpot.": an explanation, not an error; "" when
    unknown).

    A record permanently deleted in HubSpot (a GDPR delete) is removed from the mirror, with its history, by the
    next full sync (sources.extraction.deletions): nothing of it stays but the delivery states of the mappings that
    sent it (ids and hashes, no data). So an id with a delivery state but no mirror row was in the mirror once and
    was deleted in HubSpot. Without one, there is no telling deleted from never synced.

    A record HubSpot merged into another one leaves the mirror too (sources.extraction.mirror), and a MergedRecord
    row says into which record: that is said first."""
    kind = "email" if "@" in query else "id"
    if query.isdigit() and len(query) <= 18:
        merge = merged_into(workspace, int(query))
        if merge is not None:
            return merged_words(merge), "Merged in HubSpot."
        states = list(
            DeliveryState.objects.filter(mapping__destination__workspace=workspace, object_id=int(query))
            .select_related("mapping__data_model", "mapping__profile_space")
            .order_by("mapping__name", "mapping_id")[:5]
        )
        if states:
            had = "; ".join(
                f"“{s.mapping}” ({s.mapping.data_model.collection}) "
                + (f"delivered it on {s.delivered_at:%Y-%m-%d %H:%M} UTC" if s.delivered_at else "had it on file")
                for s in states
            )
            return (
                f"HubSpot id {query} is not in the mirror: it was deleted in HubSpot. It was synced before ({had}), "
                "so a full sync found it permanently deleted in HubSpot (for instance a GDPR delete) and removed it "
                "from the mirror, with its change history and any message kept for it. What Segment received "
                "before is not changed by hubsync."
            ), "Deleted in HubSpot."

    return (
        f"No record with the {kind} {query} in this workspace's mirror: it was deleted in HubSpot, or never synced. "
        "If it exists in HubSpot, it has not been synced yet (is its collection selected, and is the record inside "
        "the source's start date?). A record permanently deleted in HubSpot is removed from the mirror by a full "
        "sync."
    ), ""


def merged_into(workspace: Any, object_id: int) -> MergedRecord | None:
    """The latest merge that took this HubSpot id out of the workspace's mirror, if any."""
    if object_id >= 10**18:
        return None
    return MergedRecord.objects.filter(source__workspace=workspace, object_id=object_id).order_by("-merged_at").first()


def merged_words(merge: MergedRecord) -> str:
    """What became of a record HubSpot merged into another one, and of its profile."""
    return (
        f"HubSpot id {merge.object_id} was merged into {merge.collection} id {merge.merged_into} in HubSpot (a sync "
        f"found it on {merge.merged_at:%Y-%m-%d %H:%M} UTC). HubSpot answers this id with the merged record and "
        "lists it no more, so hubsync removed it from the mirror (its change history is kept). The merged record "
        f"{merge.merged_into} is synced and delivered under its own id, like any other record: search for it to "
        "see its deliveries. The profile this id had in Segment stays as it was: hubsync neither deletes nor merges "
        "Segment profiles. When the merged record has the same identifier (say the e-mail used as User ID, which "
        "HubSpot takes from the primary record), its messages go on updating that same profile; when the identifier "
        "differs (the record id, or the other record's e-mail), the old profile keeps its last values: merge or "
        "delete it in Segment if it should go."
    )


def find_records(workspace: Any, query: str) -> tuple[list[Record], str]:
    """(matching records of the workspace, "" or a message saying why the query could not be used)."""
    query = (query or "").strip()
    qs = Record.objects.filter(source__workspace=workspace).select_related("source")
    if not query:
        return [], ""
    if query.isdigit():
        if len(query) > 18:
            return [], "That id is too long for a HubSpot record id."
        # Spelled out on the mirror's unique (source, collection, object_id) index: an id alone is its third
        # column, and PostgreSQL would scan (150 ms at 1M rows instead of < 1 ms). Collections stay listed
        # after being deselected (selected=False), so their mirror rows are still found.
        pairs = list(
            SourceCollection.objects.filter(source__workspace=workspace).values_list("source_id", "collection")
        )
        found = qs.filter(
            source_id__in={s for s, _c in pairs}, collection__in={c for _s, c in pairs}, object_id=int(query)
        )
    elif "@" in query:
        found = email_lookup(qs, query)
    else:
        return [], "Enter a HubSpot record id (a number, e.g. 51) or an email address."
    return list(found.order_by("source__name", "collection", "object_id")[:MAX_MATCHES]), ""


@dataclass
class Lookup:
    """What a search of the record debugger found: the matching records; else why nothing was (`problem`), or
    that the record left HubSpot (`gone`, the explanation, and `gone_heading`: merged or deleted). `bad_query`:
    the problem is the query itself (neither an id nor an e-mail address, or an id too long), not the data."""

    matches: list[Record] = field(default_factory=list)
    problem: str = ""
    gone: str = ""
    gone_heading: str = ""
    bad_query: bool = False


def look_up(workspace: Any, query: str, *, mapping_id: str = "") -> Lookup:
    """Search the workspace's mirror (`find_records`). When several records share the id, `mapping_id` (coming
    from a mapping's rejected records) keeps the one of that mapping's collection. When nothing matches, say why
    (`not_in_mirror`)."""
    matches, problem = find_records(workspace, query)
    if len(matches) > 1 and mapping_id.isdigit():
        mapping = (
            Mapping.objects.filter(pk=int(mapping_id), destination__workspace=workspace)
            .select_related("data_model")
            .first()
        )
        if mapping is not None:
            model = mapping.data_model
            matches = [
                r for r in matches if r.source_id == model.source_id and r.collection == model.collection
            ] or matches
    found = Lookup(matches, problem, bad_query=bool(problem))
    if not matches and not problem:
        why, heading = not_in_mirror(workspace, query)
        if heading:
            found.gone, found.gone_heading = why, heading
        else:
            found.problem = why
    return found


def explain(record: Record) -> dict[str, Any]:
    """Everything the debugger page shows for one record (constant queries per mapping)."""
    changes = list(
        RecordChange.objects.filter(
            source_id=record.source_id, collection=record.collection, object_id=record.object_id
        ).order_by("-change_seq")[:HISTORY_SHOWN]
    )
    schema = (
        SourceCollection.objects.filter(source_id=record.source_id, collection=record.collection)
        .values_list("properties", flat=True)
        .first()
    ) or {}
    mappings = list(
        Mapping.objects.filter(data_model__source_id=record.source_id, data_model__collection=record.collection)
        .select_related("data_model", "profile_space", "destination", "last_run")
        .order_by("name", "id")
    )
    states = {s.mapping_id: s for s in DeliveryState.objects.filter(mapping__in=mappings, object_id=record.object_id)}
    verdicts = [build_verdict(m, record, states.get(m.pk), changes, schema) for m in mappings]
    last_change_of: dict[str, RecordChange] = {}
    for change in changes:  # newest first: the first one seen per property is its latest change
        for name in change.changes or {}:
            last_change_of.setdefault(name, change)
    for verdict in verdicts:
        for row in verdict.traits:
            row.last_change = last_change_of.get(row.column)
    return {
        "record": record,
        "label": label(record),
        "properties": sorted((record.properties or {}).items()),
        "changes": changes,
        "history_capped": len(changes) == HISTORY_SHOWN,
        "verdicts": verdicts,
        "summary": _summary(record, verdicts),
    }


def label(record: Record) -> str:
    """ "contact 51", "company 7": how the page names a record."""
    singular = {"companies": "company"}.get(record.collection)
    if singular is None:
        singular = record.collection[:-1] if record.collection.endswith("s") else record.collection
    return f"{singular.replace('_', ' ')} {record.object_id}"


def _summary(record: Record, verdicts: list[Verdict]) -> list[str]:
    """The answers, in words, at the top of the page."""
    name = label(record)
    lines: list[str] = []
    if not verdicts:
        lines.append(
            f"No mapping reads {record.collection} of {record.source}: this record is in the mirror but nothing "
            "sends it to Segment. Create a data model and a mapping for this collection."
        )
        return lines
    for v in verdicts:
        archived_row = next((row for row in v.traits if row.origin), None)
        if v.kind == "delivered" and record.archived and archived_row is not None and archived_row.value is True:
            lines.append(
                f"The profile ({v.profile}) shows that {name} is archived in HubSpot: {archived_row.trait} = "
                f"{archived_row.value_json}. {v.headline}"
            )
        elif v.kind == "delivered":
            values = ", ".join(
                f"{row.trait} = {json.dumps(row.value, ensure_ascii=False, default=str)} (from {row.column})"
                for row in v.traits[:6]
            )
            more = f" and {len(v.traits) - 6} more" if len(v.traits) > 6 else ""
            lines.append(
                f"Why the profile ({v.profile}) has its traits: {v.headline} It carried {values}{more}."
                if v.profile
                else v.headline
            )
        else:
            lines.append(f"Why {name} did not arrive: {v.headline}" if v.kind != "retry" else v.headline)
    return lines

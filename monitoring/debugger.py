"""The record debugger: look up a HubSpot record by id or email, and explain in words what happened to it.

For the record: its mirror row (every property), the history of changes syncs saw (sources.RecordChange), and
for every mapping that reads its collection the verdict: delivered (when, messageId, the exact payload), rejected
(the reason), waiting for the next delivery, left out by sample mode, archived, or the mapping is off; plus the
message the mapping would send now (mappings.deliver.preview_message).

The payload delivered last is not stored (that would double the database for one reader). It is rebuilt: the
current row, then the row rolled back change by change through the history, until the payload hash equals the
hash Segment accepted (DeliveryState.delivered_hash). A match is exact by construction; when none matches (the
mapping changed since, or the delivered version is older than the kept history) the page says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Lower

from mappings.deliver import MessageBuilder, archived_skip_reason, delivered_before, preview_message, sample_cutoff
from mappings.models import DeliveryRun, DeliveryState, Mapping
from sources.models import MergedRecord, Record, RecordChange, SourceCollection

HISTORY_SHOWN = 100
MAX_MATCHES = 50


def email_lookup(qs: QuerySet[Record], email: str) -> QuerySet[Record]:
    """Records whose `email` property equals `email`, case-insensitively. Written as the expression of the
    `record_email` functional index (sources.Record.Meta) so PostgreSQL answers from the index."""
    return qs.alias(email_lc=Lower(KT("properties__email"))).filter(email_lc=email.strip().lower())


def not_in_mirror(workspace: Any, query: str) -> tuple[str, bool]:
    """Why a searched record is not in the mirror, as far as hubsync can tell, and whether it is known to have
    been deleted in HubSpot (an explanation, not an error).

    A record permanently deleted in HubSpot (a GDPR delete) is removed from the mirror, with its history, by the
    next full sync (sources.extraction.deletions): nothing of it stays but the delivery states of the mappings that
    sent it (ids and hashes, no data). So an id with a delivery state but no mirror row was in the mirror once and
    was deleted in HubSpot. Without one, there is no telling deleted from never synced.

    A record HubSpot merged into another one leaves the mirror too (sources.extraction.mirror), and a MergedRecord
    row says into which record: that is said first."""
    kind = "email" if "@" in query else "id"
    if query.isdigit() and len(query) <= 18:
        merge = (
            MergedRecord.objects.filter(source__workspace=workspace, object_id=int(query))
            .order_by("-merged_at").first()
        )
        if merge is not None:
            return merged_words(merge), True
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
            ), True
    return (
        f"No record with the {kind} {query} in this workspace's mirror: it was deleted in HubSpot, or never synced. "
        "If it exists in HubSpot, it has not been synced yet (is its collection selected, and is the record inside "
        "the source's start date?). A record permanently deleted in HubSpot is removed from the mirror by a full "
        "sync."
    ), False


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
class TraitRow:
    trait: str
    column: str
    value: Any  # in the message (delivered, else would send)
    current: Any  # the property in the mirror now
    last_change: RecordChange | None = None
    origin: str = ""  # set when the value does not come from a property (the archived trait)

    @property
    def value_json(self) -> str:
        """The value as Segment sees it (true, ["a", "b"], "text"), not as Python prints it."""
        return json.dumps(self.value, ensure_ascii=False, default=str)


@dataclass
class Verdict:
    mapping: Mapping
    state: DeliveryState | None
    kind: str  # delivered | rejected | waiting | retry | pending | sample | archived | off | never
    headline: str
    details: list[str] = field(default_factory=list)
    would_send: dict[str, Any] | None = None
    would_send_error: str = ""
    would_send_note: str = ""  # why nothing would be sent (an archived record the mapping leaves alone)
    delivered_payload: dict[str, Any] | None = None
    delivered_note: str = ""
    same_as_delivered: bool = False
    traits: list[TraitRow] = field(default_factory=list)
    profile: str = ""  # "userId ann@example.com" / "groupId 42"

    @property
    def ok(self) -> bool:
        return self.kind == "delivered"

    @property
    def badge(self) -> str:
        return {"delivered": "ok", "rejected": "bad", "pending": "warn", "waiting": "info", "retry": "info"}.get(
            self.kind, ""
        )

    def pretty(self, payload: dict[str, Any] | None) -> str:
        return json.dumps(payload, indent=2, ensure_ascii=False, default=str) if payload is not None else ""

    @property
    def would_send_json(self) -> str:
        return self.pretty(self.would_send)

    @property
    def delivered_json(self) -> str:
        return self.pretty(self.delivered_payload)

    @property
    def rejected_json(self) -> str:
        return self.pretty(self.state.last_payload) if self.state and self.state.last_payload else ""


def _profile(payload: dict[str, Any] | None) -> str:
    if not payload:
        return ""
    parts = [f"{key} {payload[key]}" for key in ("userId", "anonymousId", "groupId") if payload.get(key)]
    return ", ".join(parts)


def _reconstruct(
    builder: MessageBuilder,
    record: Record,
    changes: list[RecordChange],
    delivered_hash: str,
    message_id: str | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """The payload Segment accepted last, rebuilt from the row and its history (see the module docstring).
    `message_id`: the messageId it was accepted with, when known (it also depends on what was delivered before
    it, see MessageBuilder.finish); without it the rebuilt payload has none."""
    if not delivered_hash:
        return None, ""
    props = dict(record.properties or {})
    updated_at = record.updated_at
    archived = record.archived
    for step in range(len(changes) + 1):
        content, error = builder.build(record.object_id, record.created_at, updated_at, props, archived)
        # After "Set a trait" was switched back to "Do nothing", what was delivered may carry the trait still.
        former = builder.with_former_trait(content, archived)
        for candidate in (content, former):
            if error or candidate is None:
                continue
            payload, payload_hash, _message_id = builder.finish(record.object_id, candidate, updated_at)
            if payload_hash == delivered_hash:
                note = (
                    "Same as the record's current data."
                    if step == 0
                    else f"Built from the record as it was before change #{changes[step - 1].change_seq} "
                    f"(seen {changes[step - 1].seen_at:%Y-%m-%d %H:%M} UTC)."
                )
                if candidate is former:
                    note += (
                        f" It carried {builder.former_archived_trait} = {json.dumps(archived)} from when the "
                        "mapping set that trait; the profile keeps it."
                    )
                rebuilt = json.loads(payload)
                if message_id:
                    rebuilt["messageId"] = message_id
                else:
                    rebuilt.pop("messageId", None)
                return rebuilt, note
        if step == len(changes):
            break
        change = changes[step]
        if change.truncated:
            return None, (
                "Cannot rebuild the delivered message: a long value in the history was shortened. Its messageId "
                "and time are shown above."
            )
        for name, (old, _new) in (change.changes or {}).items():
            if old is None:
                props.pop(name, None)
            else:
                props[name] = old
        if change.archived is not None:  # this change archived (True) or restored (False) the record
            archived = not change.archived
        if change.previous_updated_at is not None:
            updated_at = change.previous_updated_at
    return None, (
        "Cannot rebuild the delivered message exactly: the mapping changed since it was sent, or it predates the "
        "record history that is kept. Its messageId and time are shown above."
    )


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
    states = {
        s.mapping_id: s
        for s in DeliveryState.objects.filter(mapping__in=mappings, object_id=record.object_id)
    }
    verdicts = [_verdict(m, record, states.get(m.pk), changes, schema) for m in mappings]
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


def _verdict(
    mapping: Mapping, record: Record, state: DeliveryState | None, changes: list[RecordChange], schema: dict
) -> Verdict:
    builder = MessageBuilder(mapping, schema)
    would_send, error = preview_message(
        mapping,
        object_id=record.object_id,
        properties=record.properties or {},
        created_at=record.created_at,
        updated_at=record.updated_at,
        schema=schema,
        archived=record.archived,
        previous_hash=state.delivered_hash if state else None,
    )
    verdict = Verdict(mapping=mapping, state=state, kind="never", headline="", would_send=would_send)
    verdict.would_send_error = error
    space = mapping.profile_space
    label = f"“{mapping}” → {space}"
    delivered_hash = state.delivered_hash if state else ""
    # An archived record is sent only to a profile this mapping delivered it to: with "Set a trait", marked; with
    # "Do nothing", once, when the values it was archived with are not what the profile got (the engine's rule).
    sends_archived = mapping.sets_archived_trait and delivered_before(state)
    content, _error = builder.build(
        record.object_id, record.created_at, record.updated_at, record.properties or {}, record.archived
    )
    final_values = bool(
        record.archived and record.archived_update and not mapping.sets_archived_trait and delivered_hash
        and not _error
        and not builder.covers(content, delivered_hash, archived=True, exact=True)
    )
    skipped_archived = record.archived and not sends_archived and not final_values
    _payload, payload_hash, _message_id = builder.finish(record.object_id, content, record.updated_at)
    # Right after "Set a trait" went back to "Do nothing": delivered = this message + `<trait>: false`.
    covered = bool(delivered_hash and not record.archived and not error and builder.covers(content, delivered_hash))
    if delivered_hash:
        delivered_id = state.message_id if state.status == DeliveryState.Status.DELIVERED else None
        verdict.delivered_payload, verdict.delivered_note = _reconstruct(
            builder, record, changes, delivered_hash, delivered_id
        )
        verdict.same_as_delivered = not error and not skipped_archived and payload_hash == delivered_hash
    # The traits table shows what was delivered when known, else what the message holds now (even when it
    # cannot be sent: the values explain the rejection as well).
    shown = verdict.delivered_payload or would_send
    verdict.profile = _profile(verdict.delivered_payload or (would_send if not error else None))
    for column, trait in mapping.traits or []:
        value = (shown or {}).get("traits", {}).get(trait) if shown else None
        current = record.object_id if column == "id" else (record.properties or {}).get(column)
        verdict.traits.append(TraitRow(trait=trait, column=column, value=value, current=current))
    archived_trait = builder.archived_trait or builder.former_archived_trait
    if archived_trait and shown and archived_trait in (shown.get("traits") or {}):
        last_flip = next((c for c in changes if c.archived is not None), None)
        verdict.traits.append(
            TraitRow(
                trait=archived_trait,
                column="",
                value=shown["traits"][archived_trait],
                current="archived" if record.archived else "live",
                last_change=last_flip,
                origin="archived in HubSpot?",
            )
        )
    if final_values:
        verdict.details.append(
            "The record is archived (deleted) in HubSpot and this mapping does nothing for archived records, but "
            "it was changed just before the archive and its profile does not have those values yet: they are sent "
            "once (without any archived trait), and nothing after that."
        )
    if skipped_archived:
        # What "would send now" shows must be what a delivery does: nothing.
        verdict.would_send = None
        verdict.would_send_note = archived_skip_reason(mapping)

    cutoff = sample_cutoff(mapping) if mapping.sample_size else None
    current_config = mapping.watermark_config_hash == builder.config_hash
    waiting = record.change_seq > mapping.watermark or not current_config
    running = mapping.last_run is not None and mapping.last_run.status in DeliveryRun.ACTIVE
    when = "the delivery running now" if running else "the next delivery"
    if state and state.status == DeliveryState.Status.DELIVERED and state.delivered_at:
        delivered_words = (
            f"Delivered to {space} on {state.delivered_at:%Y-%m-%d %H:%M} UTC (messageId {state.message_id})."
        )
    else:
        delivered_words = ""

    if not mapping.enabled:
        verdict.kind = "off"
        verdict.headline = f"{label} is switched off: nothing is delivered until it is enabled."
        if delivered_words:
            verdict.details.append("Before that: " + delivered_words)
    elif mapping.paused:
        verdict.kind = "off"
        verdict.headline = (
            f"{label} is paused ({mapping.paused_reason}): a property it uses changed in HubSpot, so nothing is "
            "delivered until the mapping is fixed or resumed."
        )
        if delivered_words:
            verdict.details.append("Before that: " + delivered_words)
    elif cutoff is not None and record.object_id > cutoff:
        verdict.kind = "sample"
        verdict.headline = (
            f"Not sent: {label} is in sample mode and delivers only its first {mapping.sample_size} records "
            f"(HubSpot ids up to {cutoff}); this record's id {record.object_id} is beyond them. Switch the mapping "
            "to all records to send it."
        )
    elif skipped_archived:
        verdict.kind = "archived"
        if mapping.sets_archived_trait:
            verdict.headline = (
                f"Not sent by {label}: the record was archived (deleted) in HubSpot before this mapping delivered "
                f"it. “Set a trait” marks only profiles this mapping delivered ({mapping.archived_trait} = true); "
                "no profile is created for a deleted record."
            )
        else:
            verdict.headline = (
                f"Not sent by {label}: the record is archived (deleted) in HubSpot, and this mapping does nothing "
                "for archived records."
            )
            if delivered_words:
                verdict.details.append(
                    "The profile still shows the record as it was last delivered. To mark it as gone, edit the "
                    "mapping: “When a record is archived in HubSpot” → Set a trait."
                )
        if delivered_words:
            verdict.details.append("Before it was archived: " + delivered_words)
    elif state and state.status == DeliveryState.Status.RETRY:
        verdict.kind = "retry"
        verdict.headline = (
            f"Retry requested for {label}: {when} reconsiders this record (it was rejected: {state.error})"
        )
    elif waiting:
        verdict.kind = "waiting"
        why = (
            f"the record changed (change #{record.change_seq}) after the last delivery, which got to "
            f"#{mapping.watermark}"
            if current_config
            else "the mapping was changed, so every record is reconsidered"
        )
        verdict.headline = f"Waiting for {label}: {why}; {when} handles it."
        if error:
            verdict.details.append(f"It will be rejected unless the data or the mapping changes: {error}")
        elif state and state.delivered_hash and verdict.same_as_delivered:
            verdict.details.append("Its message is unchanged from what was delivered, so nothing will be resent.")
        elif covered:
            verdict.details.append(_covered_words(builder))
        if delivered_words:
            verdict.details.append("Last time: " + delivered_words)
    elif state and state.status == DeliveryState.Status.REJECTED:
        verdict.kind = "rejected"
        verdict.headline = f"Rejected by {label}: {state.error}"
        verdict.details.append(
            f"Rejected on {state.updated_at:%Y-%m-%d %H:%M} UTC. Fix the data in HubSpot (the next sync brings the "
            "change and it is reconsidered) or the mapping, or retry it from the mapping's rejected records."
        )
        if delivered_words:
            verdict.details.append("An earlier version was delivered: " + delivered_words)
    elif state and state.status == DeliveryState.Status.PENDING:
        verdict.kind = "pending"
        verdict.headline = f"Not delivered yet by {label}: {state.error or 'waiting to be sent.'}"
    elif state and state.status == DeliveryState.Status.DELIVERED:
        verdict.kind = "delivered"
        verdict.headline = delivered_words
        if verdict.same_as_delivered:
            verdict.details.append(
                "The profile holds exactly the message shown below: the record has not changed since."
            )
        elif covered:
            verdict.details.append(_covered_words(builder))
    else:
        verdict.kind = "never"
        verdict.headline = f"{label} has no delivery of this record on file."
        if error:
            verdict.details.append(f"It would be rejected: {error}")
    if record.archived and sends_archived and verdict.kind not in ("off", "sample"):
        verdict.details.insert(
            0,
            f"The record is archived (deleted) in HubSpot. This mapping sets a trait for that: its message carries "
            f"the identifiers and the traits as HubSpot last had them, with {mapping.archived_trait} = true "
            "(a restore in HubSpot sends false again).",
        )
    return verdict


def _covered_words(builder: MessageBuilder) -> str:
    return (
        f"Nothing will be resent: the profile already holds everything this message sets. It was delivered "
        f"with {builder.former_archived_trait} = false while the mapping set that trait, and leaving a trait "
        "out of a message does not remove it from the profile."
    )


def label(record: Record) -> str:
    """"contact 51", "company 7": how the page names a record."""
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

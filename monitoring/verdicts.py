"""The record debugger's verdicts: for one record and one mapping, what was delivered, what would be sent now,
and why, in words.

The payload delivered last is not stored (that would double the database for one reader). It is rebuilt: the
current row, then the row rolled back change by change through the history, until the payload hash equals the
hash Segment accepted (DeliveryState.delivered_hash). A match is exact by construction; when none matches (the
mapping changed since, or the delivered version is older than the kept history) the page says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mappings.delivery import MessageBuilder, archived_skip_reason, preview_message
from mappings.models import DeliveryRun, DeliveryState, Mapping
from mappings.selectors import delivered_before, sample_cutoff
from sources.models import Record, RecordChange


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


@dataclass
class _Facts:
    """What the explanation rules look at, computed once per record and mapping."""

    mapping: Mapping
    record: Record
    state: DeliveryState | None
    builder: MessageBuilder
    content: Any  # the record's message content as built now (what the delivery engine would build)
    label: str  # “mapping” → space
    error: str | None  # why the message would be rejected now
    covered: bool  # the profile already holds everything the message sets (see _covered_words)
    final_values: bool  # "Do nothing", archived right after a change the profile lacks: sent once
    skipped_archived: bool  # archived and not sent by this mapping
    sends_archived: bool  # "Set a trait" and delivered before: the archived message is sent
    cutoff: int | None  # sample mode: the highest id delivered
    current_config: bool  # the watermark was set with the mapping as it is now
    waiting: bool  # past the watermark: the next delivery handles it
    when: str  # "the delivery running now" / "the next delivery"
    delivered_words: str  # when and with which messageId the record was delivered ("" if not)


def build_verdict(
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
    facts = _facts(mapping, record, state, builder, error)
    _fill_payloads(verdict, facts, changes)
    if facts.final_values:
        verdict.details.append(
            "The record is archived (deleted) in HubSpot and this mapping does nothing for archived records, but "
            "it was changed just before the archive and its profile does not have those values yet: they are sent "
            "once (without any archived trait), and nothing after that."
        )
    if facts.skipped_archived:
        # What "would send now" shows must be what a delivery does: nothing.
        verdict.would_send = None
        verdict.would_send_note = archived_skip_reason(mapping)
    for rule in _RULES:
        if rule(verdict, facts):
            break
    if record.archived and facts.sends_archived and verdict.kind not in ("off", "sample"):
        verdict.details.insert(
            0,
            f"The record is archived (deleted) in HubSpot. This mapping sets a trait for that: its message carries "
            f"the identifiers and the traits as HubSpot last had them, with {mapping.archived_trait} = true "
            "(a restore in HubSpot sends false again).",
        )
    return verdict


def _facts(
    mapping: Mapping, record: Record, state: DeliveryState | None, builder: MessageBuilder, error: str | None
) -> _Facts:
    delivered_hash = state.delivered_hash if state else ""
    # An archived record is sent only to a profile this mapping delivered it to: with "Set a trait", marked; with
    # "Do nothing", once, when the values it was archived with are not what the profile got (the engine's rule).
    sends_archived = mapping.sets_archived_trait and delivered_before(state)
    content, build_error = builder.build(
        record.object_id, record.created_at, record.updated_at, record.properties or {}, record.archived
    )
    final_values = bool(
        record.archived
        and record.archived_update
        and not mapping.sets_archived_trait
        and delivered_hash
        and not build_error
        and not builder.covers(content, delivered_hash, archived=True, exact=True)
    )
    current_config = mapping.watermark_config_hash == builder.config_hash
    running = mapping.last_run is not None and mapping.last_run.status in DeliveryRun.ACTIVE
    space = mapping.profile_space
    if state and state.status == DeliveryState.Status.DELIVERED and state.delivered_at:
        delivered_words = (
            f"Delivered to {space} on {state.delivered_at:%Y-%m-%d %H:%M} UTC (messageId {state.message_id})."
        )
    else:
        delivered_words = ""
    return _Facts(
        mapping=mapping,
        record=record,
        state=state,
        builder=builder,
        content=content,
        label=f"“{mapping}” → {space}",
        error=error,
        # Right after "Set a trait" went back to "Do nothing": delivered = this message + `<trait>: false`.
        covered=bool(delivered_hash and not record.archived and not error and builder.covers(content, delivered_hash)),
        final_values=final_values,
        skipped_archived=record.archived and not sends_archived and not final_values,
        sends_archived=sends_archived,
        cutoff=sample_cutoff(mapping) if mapping.sample_size else None,
        current_config=current_config,
        waiting=record.change_seq > mapping.watermark or not current_config,
        when="the delivery running now" if running else "the next delivery",
        delivered_words=delivered_words,
    )


def _fill_payloads(verdict: Verdict, f: _Facts, changes: list[RecordChange]) -> None:
    """The delivered payload (rebuilt), the profile it names, and the traits table."""
    record, state, builder = f.record, f.state, f.builder
    _payload, payload_hash, _message_id = builder.finish(record.object_id, f.content, record.updated_at)
    if state and state.delivered_hash:
        delivered_id = state.message_id if state.status == DeliveryState.Status.DELIVERED else None
        verdict.delivered_payload, verdict.delivered_note = _reconstruct(
            builder, record, changes, state.delivered_hash, delivered_id
        )
        verdict.same_as_delivered = not f.error and not f.skipped_archived and payload_hash == state.delivered_hash
    # The traits table shows what was delivered when known, else what the message holds now (even when it
    # cannot be sent: the values explain the rejection as well).
    shown = verdict.delivered_payload or verdict.would_send
    verdict.profile = _profile(verdict.delivered_payload or (verdict.would_send if not f.error else None))
    for column, trait in f.mapping.traits or []:
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


# --- the explanation: the first rule that applies writes the headline ---------------------------------------


def _off(verdict: Verdict, f: _Facts) -> bool:
    if f.mapping.enabled and not f.mapping.paused:
        return False
    verdict.kind = "off"
    if not f.mapping.enabled:
        verdict.headline = f"{f.label} is switched off: nothing is delivered until it is enabled."
    else:
        verdict.headline = (
            f"{f.label} is paused ({f.mapping.paused_reason}): a property it uses changed in HubSpot, so nothing is "
            "delivered until the mapping is fixed or resumed."
        )
    if f.delivered_words:
        verdict.details.append("Before that: " + f.delivered_words)
    return True


def _sample(verdict: Verdict, f: _Facts) -> bool:
    if f.cutoff is None or f.record.object_id <= f.cutoff:
        return False
    verdict.kind = "sample"
    verdict.headline = (
        f"Not sent: {f.label} is in sample mode and delivers only its first {f.mapping.sample_size} records "
        f"(HubSpot ids up to {f.cutoff}); this record's id {f.record.object_id} is beyond them. Switch the mapping "
        "to all records to send it."
    )
    return True


def _archived(verdict: Verdict, f: _Facts) -> bool:
    if not f.skipped_archived:
        return False
    verdict.kind = "archived"
    if f.mapping.sets_archived_trait:
        verdict.headline = (
            f"Not sent by {f.label}: the record was archived (deleted) in HubSpot before this mapping delivered "
            f"it. “Set a trait” marks only profiles this mapping delivered ({f.mapping.archived_trait} = true); "
            "no profile is created for a deleted record."
        )
    else:
        verdict.headline = (
            f"Not sent by {f.label}: the record is archived (deleted) in HubSpot, and this mapping does nothing "
            "for archived records."
        )
        if f.delivered_words:
            verdict.details.append(
                "The profile still shows the record as it was last delivered. To mark it as gone, edit the "
                "mapping: “When a record is archived in HubSpot” → Set a trait."
            )
    if f.delivered_words:
        verdict.details.append("Before it was archived: " + f.delivered_words)
    return True


def _retry(verdict: Verdict, f: _Facts) -> bool:
    if not (f.state and f.state.status == DeliveryState.Status.RETRY):
        return False
    verdict.kind = "retry"
    verdict.headline = (
        f"Retry requested for {f.label}: {f.when} reconsiders this record (it was rejected: {f.state.error})"
    )
    return True


def _waiting(verdict: Verdict, f: _Facts) -> bool:
    if not f.waiting:
        return False
    verdict.kind = "waiting"
    why = (
        f"the record changed (change #{f.record.change_seq}) after the last delivery, which got to "
        f"#{f.mapping.watermark}"
        if f.current_config
        else "the mapping was changed, so every record is reconsidered"
    )
    verdict.headline = f"Waiting for {f.label}: {why}; {f.when} handles it."
    if f.error:
        verdict.details.append(f"It will be rejected unless the data or the mapping changes: {f.error}")
    elif f.state and f.state.delivered_hash and verdict.same_as_delivered:
        verdict.details.append("Its message is unchanged from what was delivered, so nothing will be resent.")
    elif f.covered:
        verdict.details.append(_covered_words(f.builder))
    if f.delivered_words:
        verdict.details.append("Last time: " + f.delivered_words)
    return True


def _rejected(verdict: Verdict, f: _Facts) -> bool:
    if not (f.state and f.state.status == DeliveryState.Status.REJECTED):
        return False
    verdict.kind = "rejected"
    verdict.headline = f"Rejected by {f.label}: {f.state.error}"
    verdict.details.append(
        f"Rejected on {f.state.updated_at:%Y-%m-%d %H:%M} UTC. Fix the data in HubSpot (the next sync brings the "
        "change and it is reconsidered) or the mapping, or retry it from the mapping's rejected records."
    )
    if f.delivered_words:
        verdict.details.append("An earlier version was delivered: " + f.delivered_words)
    return True


def _pending(verdict: Verdict, f: _Facts) -> bool:
    if not (f.state and f.state.status == DeliveryState.Status.PENDING):
        return False
    verdict.kind = "pending"
    verdict.headline = f"Not delivered yet by {f.label}: {f.state.error or 'waiting to be sent.'}"
    return True


def _delivered(verdict: Verdict, f: _Facts) -> bool:
    if not (f.state and f.state.status == DeliveryState.Status.DELIVERED):
        return False
    verdict.kind = "delivered"
    verdict.headline = f.delivered_words
    if verdict.same_as_delivered:
        verdict.details.append("The profile holds exactly the message shown below: the record has not changed since.")
    elif f.covered:
        verdict.details.append(_covered_words(f.builder))
    return True


def _never(verdict: Verdict, f: _Facts) -> bool:
    verdict.kind = "never"
    verdict.headline = f"{f.label} has no delivery of this record on file."
    if f.error:
        verdict.details.append(f"It would be rejected: {f.error}")
    return True


_RULES: tuple[Callable[[Verdict, _Facts], bool], ...] = (
    _off,
    _sample,
    _archived,
    _retry,
    _waiting,
    _rejected,
    _pending,
    _delivered,
    _never,
)


def _covered_words(builder: MessageBuilder) -> str:
    return (
        f"Nothing will be resent: the profile already holds everything this message sets. It was delivered "
        f"with {builder.former_archived_trait} = false while the mapping set that trait, and leaving a trait "
        "out of a message does not remove it from the profile."
    )

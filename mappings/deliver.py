"""The delivery engine: mirror rows past a mapping's watermark → Segment identify/group messages → batches.

For one enabled mapping, `deliver` reads the mirror rows of its data model's collection with change_seq above
the watermark, in keyset-ordered chunks (memory stays flat whatever the size), builds each record's message,
and skips it when its payload hash equals the hash Segment last accepted for that record. Invalid records are
rejected for themselves (reason kept in DeliveryState) and the run goes on. The rest is packed into batches
under Segment's limits and sent.

What makes it safe to kill at any moment:
- `delivered_hash`, the delivered status and the watermark are written only after Segment accepted the batch,
  in one transaction per batch. A killed or failed delivery therefore resends what was not confirmed, and the
  resend carries the same deterministic messageId, so Segment drops any copy it had already taken.
- What Segment may hold without our knowing is written down as the run's `unconfirmed`: before each send (should
  the worker die), and for every batch whose answer never came or was a transient error after the body went out
  (timeouts, reset connections, 5xx, retries exhausted). The next run sends those records whatever their hash,
  so a record that went back to the payload delivered before (A → B unconfirmed → A) still reaches the profile.
- The watermark only moves to a change_seq below which every record is resolved (delivered, unchanged,
  rejected or archived); a failed batch holds it just below its first record.
- One message per record in flight: a record read again during the run (its row changed after the run
  started) replaces its waiting message, or waits until the batch carrying its previous message is settled,
  and is compared with that message rather than with the delivered hash read before it was sent. Batches retry
  independently, so this is what makes the last message Segment applies for a record the one whose hash is
  recorded, with the record's latest values.
- One delivery per mapping at a time, decided by a partial unique constraint on DeliveryRun. A run whose
  worker died (no heartbeat for DELIVERY_STALE_SECONDS) is marked failed by the next one, which takes over.

Two ways a record below the watermark is looked at again without rewinding it:
- **Retry** (`request_retry`): rejected records the user asked to retry get status "retry". After the scan past
  the watermark, each run reads those states (keyset chunks) and reconsiders their mirror rows. They never move
  the watermark; a failed batch leaves them in "retry" for the next run. Rewinding the watermark instead would
  rescan the whole collection for one record, and would race with a delivery in progress (its checkpoint
  writes its own watermark).
- **Sample mode** (`Mapping.sample_size`): rows beyond the first N object ids are skipped and count as
  resolved. The sample size is part of the configuration hash, so switching to all records starts the next run
  from 0: the sampled records are unchanged (not resent), the rest are sent once.

Archived records (deleted in HubSpot, restorable for 90 days) follow the mapping's choice. "Do nothing": skipped and
counted as archived, except that a record this mapping delivered and that was changed just before its archive
(`Record.archived_update`) is sent once more, without any trait, when its profile does not have those values. "Set a
trait": every message carries `<trait>: false`, and a record that this mapping delivered before is sent once more
when archived, with its last known traits and `<trait>: true` (counted as sent); a restore sends `false` again. The
trait is part of the configuration hash, so switching it on resends every record once (each message changed).
Switching it back off changes the live records' messages only by leaving the trait out, which would change no
profile: `MessageBuilder.covers` counts them unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db import connections as db_connections
from django.db.models import Case, F, Func, OuterRef, Subquery, TextField, Value, When
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from hubsync import handoff
from hubsync.fields import DecryptionError
from models_app.models import SYSTEM_COLUMNS
from sources.extraction import execute_run_foreground
from sources.models import Record, Source, SourceCollection, SyncRun

from .convert import converter_for, is_empty, iso_utc
from .models import DeliveryRun, DeliveryState, Mapping
from .segment import (
    LIBRARY,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    BatchResult,
    SegmentClient,
    SegmentError,
    SegmentPermanentError,
    SegmentTransientError,
    close_session,
)

logger = logging.getLogger(__name__)

# Room kept in every batch for the envelope: '{"batch":[' + '],"sentAt":"2026-01-01T00:00:00.000Z"}'.
BATCH_ENVELOPE_BYTES = 64
MESSAGE_ID_HASH_CHARS = 32
CONTEXT_JSON = json.dumps({"library": LIBRARY}, separators=(",", ":"))
# Segment's own Profiles destination sends this so that profile writes are not forwarded to other destinations.
INTEGRATIONS = {"All": False}


@dataclass(slots=True)
class _Pending:
    object_id: int
    change_seq: int
    payload: bytes
    payload_hash: str
    message_id: str
    retry: bool = False  # from the retry pass: below the watermark, so it must not hold it
    archived: bool = False  # archived in HubSpot, sent with the archived trait true


@dataclass(slots=True)
class _Delivered:
    """A delivered state waiting for the next checkpoint (lighter than a model instance on the hot path)."""

    object_id: int
    delivered_hash: str
    message_id: str
    status: str = "delivered"


class _Sender(ThreadPoolExecutor):
    """The threads that send batches; each cleans up its connections when the run ends."""

    def __init__(self, threads: int) -> None:
        super().__init__(max_workers=threads, thread_name_prefix="segment-sender")
        self.threads = threads

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        barrier = threading.Barrier(self.threads)
        with contextlib.suppress(RuntimeError):  # already shut down
            for _ in range(self.threads):
                # The barrier makes each thread take exactly one of these clean-ups.
                self.submit(_sender_thread_done, barrier)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


class _Abort(Exception):
    """A batch failed in a way that makes sending more pointless (Segment down, bad write key)."""


# One encoder for the whole process: json.dumps with options builds a new one on every call.
_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def _dumpb(obj: Any) -> bytes:
    """Compact JSON with sorted keys, as UTF-8 bytes: what is hashed and sent. orjson writes the same bytes as
    the json module configured above (tests/mappings/test_deliver.py compares them) several times faster, with
    two exceptions that go through the json module, so that a payload's hash never depends on which encoder
    wrote it: what orjson refuses (integers beyond 64 bits, lone surrogates), and floats below 1e-4, which
    orjson writes as 0.00001 where json writes 1e-05 (only trait values can be floats)."""
    traits = obj.get("traits") if obj.__class__ is dict else None
    if traits and any(v.__class__ is float and 0 < abs(v) < 1e-4 for v in traits.values()):
        return _json_dumps(obj).encode("utf-8", "surrogatepass")
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return _json_dumps(obj).encode("utf-8", "surrogatepass")


def _dumps(obj: Any) -> str:
    return _dumpb(obj).decode("utf-8", "surrogatepass")


def _loads(text: str | bytes) -> Any:
    """The picked properties (JSON text from the database): orjson, several times faster than json.loads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. a lone surrogate escape, which orjson refuses and json accepts
        return json.loads(text)


class MessageBuilder:
    """Builds one mapping's messages from mirror rows. Everything that depends only on the configuration
    (converters, column accessors, hash salt) is prepared once, so the per-record work stays small."""

    def __init__(self, mapping: Mapping, schema: dict[str, Any]) -> None:
        self.mapping = mapping
        self.action = mapping.action
        self.omit_empty = mapping.empty_values == Mapping.EMPTY_OMIT
        self.workspace_id = mapping.destination.workspace_id
        specs = {**schema, **SYSTEM_COLUMNS}
        self.column_types = {
            col: {k: specs.get(col, {}).get(k) for k in ("type", "fieldType")} for col in mapping.used_columns()
        }
        self.config_hash = mapping.config_hash(self.column_types)
        self.user_id_col = mapping.identifier("user_id")
        self.anonymous_id_col = mapping.identifier("anonymous_id")
        self.group_id_col = mapping.identifier("group_id")
        fmt = mapping.identifier_format
        self.normalise = _NORMALISE.get(fmt, str.strip)
        # A trait reading an identifier column carries the identifier's form (the `email` trait equals the User
        # ID), except for mappings that kept the format they had before the option existed.
        id_columns = (
            set() if fmt == Mapping.IdentifierFormat.TRIM_IDENTIFIERS
            else {self.user_id_col, self.anonymous_id_col, self.group_id_col} - {None}
        )
        self.traits = [
            (
                column,
                trait,
                _normalised(converter_for(specs.get(column)), self.normalise)
                if column in id_columns and self.normalise is not None
                else converter_for(specs.get(column)),
                column in SYSTEM_COLUMNS,
            )
            for column, trait in mapping.traits or []
        ]
        self.needs_created_at = "created_at" in mapping.used_columns()
        # The properties the message reads (everything else in the mirror row is never looked at).
        self.property_columns = [c for c in mapping.used_columns() if c not in SYSTEM_COLUMNS]
        # What reaches the profile and is not in the message body: the space it goes to and the resync
        # generation (a "Resync all" must produce new messageIds, or Segment's deduplication would drop them).
        self.salt = f"{mapping.profile_space_id}:{mapping.resync_generation}:".encode()
        self.id_prefix = f"hs-{self.workspace_id}-{mapping.pk}-"
        # "When a record is archived": the trait sent true / false ("Set a trait"), else None ("Do nothing").
        self.archived_trait = mapping.archived_trait if mapping.sets_archived_trait else None
        # "Do nothing" after "Set a trait": the trait the profiles were given, which they keep (see `covers`).
        self.former_archived_trait = (
            mapping.archived_trait if not self.archived_trait and mapping.archived_trait else None
        )

    def _identifier(self, column: str | None, object_id: int, created_at: Any, updated_at: Any, props: dict) -> Any:
        # Identifiers are sent as strings (what Segment stores), without type conversion: "00123" must stay so.
        if not column:
            return None
        value = _raw(column, object_id, created_at, updated_at, props)
        if is_empty(value):
            return None
        if hasattr(value, "tzinfo"):
            return iso_utc(value)
        text = str(value)
        return self.normalise(text) if self.normalise is not None else text

    def build(
        self, object_id: int, created_at: Any, updated_at: Any, props: dict[str, Any], archived: bool = False
    ) -> tuple[dict, str]:
        """The message's content (what reaches the profile) and, when it cannot be sent, the reason; "" if valid.
        With "Set a trait" the archived trait says whether the record is archived; an archived record's message
        is otherwise the one its last known properties make, identifiers included, so the profile keeps its
        identity and the values it showed, and only learns that the record is gone."""
        props = props or {}
        traits: dict[str, Any] = {}
        system = None
        omit = self.omit_empty
        for column, trait, conv, is_system in self.traits:
            if is_system:
                system = system or {"id": object_id, "created_at": created_at, "updated_at": updated_at}
                raw = system[column]
            else:
                raw = props.get(column)
            # Inline is_empty (the hot loop): None, "" and blank strings are empty.
            if raw is None or (raw.__class__ is str and (raw == "" or raw.isspace())) or raw == []:
                if not omit:
                    traits[trait] = None
            else:
                traits[trait] = conv(raw)
        if self.archived_trait is not None:
            traits[self.archived_trait] = bool(archived)
        user_id = self._identifier(self.user_id_col, object_id, created_at, updated_at, props)
        anonymous_id = self._identifier(self.anonymous_id_col, object_id, created_at, updated_at, props)
        content: dict[str, Any] = {"type": self.action, "integrations": INTEGRATIONS}
        if traits:
            content["traits"] = traits
        if user_id is not None:
            content["userId"] = user_id
        if anonymous_id is not None:
            content["anonymousId"] = anonymous_id
        error = ""
        if self.action == Mapping.Action.GROUP:
            group_id = self._identifier(self.group_id_col, object_id, created_at, updated_at, props)
            if group_id is not None:
                content["groupId"] = group_id
            else:
                error = self._missing("Group ID", self.group_id_col, "a group call needs a groupId")
        if not error and user_id is None and anonymous_id is None:
            # Segment's API drops (with a 200!) any message, group calls included, that has neither userId nor
            # anonymousId. A group mapping therefore needs a User ID or Anonymous ID column as well: the user
            # the account is attached to. We refuse here, visibly, rather than let Segment drop it silently.
            cols = [c for c in (self.user_id_col, self.anonymous_id_col) if c]
            if cols:
                error = (
                    f"No User ID or Anonymous ID: {' and '.join(repr(c) for c in cols)} "
                    f"{'is' if len(cols) == 1 else 'are'} empty for this record; Segment drops messages without one."
                )
            else:
                error = (
                    "The mapping maps neither User ID nor Anonymous ID; Segment drops messages without one "
                    "(group calls need one too)."
                )
        return content, error

    @staticmethod
    def _missing(label: str, column: str | None, why: str) -> str:
        if column:
            return f"No {label}: {column!r} is empty for this record ({why})."
        return f"The mapping has no {label} column ({why})."

    def with_former_trait(self, content: dict[str, Any], archived: bool) -> dict[str, Any] | None:
        """The content as "Set a trait" made it before the option was switched back to "Do nothing" (None when
        the mapping never set the trait)."""
        if self.former_archived_trait is None:
            return None
        return {**content, "traits": {**(content.get("traits") or {}), self.former_archived_trait: archived}}

    def covers(
        self, content: dict[str, Any], delivered_hash: str | None, *, archived: bool = False, exact: bool = False
    ) -> bool:
        """Whether the profile already holds everything this record's message would write, because what was
        delivered is this very message plus `<former trait>: <archived>`. That is the case for every live record
        right after "Set a trait" is switched back to "Do nothing": leaving a trait out of a message does not
        remove it from the profile, so resending them all would change nothing. `exact`: also when what was
        delivered is this very message."""
        if not delivered_hash:
            return False
        if exact and self.digest(content)[1] == delivered_hash:
            return True
        if self.former_archived_trait is None:
            return False
        former = self.with_former_trait(content, archived)
        return hashlib.sha256(self.salt + _dumpb(former)).hexdigest() == delivered_hash

    def digest(self, content: dict[str, Any]) -> tuple[bytes, str]:
        """(content as JSON bytes, payload hash). The hash covers what reaches the profile (content + space + resync
        generation) and not the timestamp, so a HubSpot change to an unmapped property, which moves updatedAt,
        is not resent. Cheap on its own: an unchanged record needs nothing more."""
        core = _dumpb(content)
        return core, hashlib.sha256(self.salt + core).hexdigest()

    def envelope(
        self,
        object_id: int,
        core: bytes,
        payload_hash: str,
        updated_at: Any,
        previous_hash: str | None = None,
        previous_id: str = "",
    ) -> tuple[bytes, str]:
        """(payload bytes, messageId): the digested content with the per-send fields.

        The messageId names the step from what Segment last accepted for the record (`previous_hash`, its
        delivered hash) to this payload, not the payload alone: a record that goes back to a payload it had
        before (archived, then restored; a value changed and changed back) would otherwise reuse that payload's
        messageId, and Segment drops a messageId it saw in the last 24 hours. A resend after a failure or a
        crash starts from the same delivered hash (written only once Segment accepted), so it keeps its
        messageId and Segment still drops the copy. A record's first message is named by its payload alone.

        `previous_id`, the messageId Segment accepted last for the record, makes the name depend on the record's
        whole delivered history rather than on the last step: with steps alone, A → B → A → B within 24 hours
        would give the second B the first one's id and Segment would drop it. (Empty for states recorded before
        it was kept: their next message is named from the step alone, as it was then.)"""
        if previous_id:
            named_by = hashlib.sha256(f"{payload_hash}:{previous_hash}:{previous_id}".encode()).hexdigest()
        elif previous_hash:
            named_by = hashlib.sha256(f"{payload_hash}:{previous_hash}".encode()).hexdigest()
        else:
            named_by = payload_hash
        message_id = f"{self.id_prefix}{object_id}-{named_by[:MESSAGE_ID_HASH_CHARS]}"
        tail = f',"messageId":"{message_id}","context":{CONTEXT_JSON}'
        if updated_at is not None:
            tail += f',"timestamp":"{iso_utc(updated_at)}"'
        # `core` is a JSON object: splice the per-send fields in before its closing brace.
        return core[:-1] + tail.encode() + b"}", message_id

    def finish(
        self,
        object_id: int,
        content: dict[str, Any],
        updated_at: Any,
        previous_hash: str | None = None,
        previous_id: str = "",
    ) -> tuple[bytes, str, str]:
        """Encode the full message once: (payload bytes, payload hash, messageId); see `digest` and `envelope`."""
        core, payload_hash = self.digest(content)
        payload, message_id = self.envelope(object_id, core, payload_hash, updated_at, previous_hash, previous_id)
        return payload, payload_hash, message_id


def _trim_lower(text: str) -> str:
    return text.strip().lower()


# The identifier formats (Mapping.IdentifierFormat) as functions of the identifier's text; None leaves it alone.
_NORMALISE = {
    Mapping.IdentifierFormat.AS_IS: None,
    Mapping.IdentifierFormat.TRIM: str.strip,
    Mapping.IdentifierFormat.LOWER: _trim_lower,
    Mapping.IdentifierFormat.TRIM_IDENTIFIERS: str.strip,
}


def _normalised(convert: Any, normalise: Any) -> Any:
    """A trait converter that writes text values the way the identifier from the same column is written."""

    def converted(raw: Any) -> Any:
        value = convert(raw)
        return normalise(value) if value.__class__ is str else value

    return converted


def _raw(column: str, object_id: int, created_at: Any, updated_at: Any, props: dict[str, Any]) -> Any:
    if column == "id":
        return object_id
    if column == "created_at":
        return created_at
    if column == "updated_at":
        return updated_at
    return props.get(column)


def _oversize_reason(size: int, content: dict[str, Any]) -> str:
    sizes = sorted(((len(_dumps(v).encode()), k) for k, v in (content.get("traits") or {}).items()), reverse=True)[:3]
    largest = ", ".join(f"{k!r} ({n:,} bytes)" for n, k in sizes)
    return f"The message is {size:,} bytes; Segment accepts at most {MAX_MESSAGE_BYTES:,} bytes per message." + (
        f" Largest traits: {largest}." if largest else ""
    )


# What the delivered-hash lookup returns, with "Set a trait", for a record Segment took a message for before "Resync
# all" cleared its hash: not empty (it was delivered), and equal to no payload hash (so it is sent again).
DELIVERED_BEFORE = "delivered-before-resync"


def archived_skip_reason(mapping: Mapping) -> str:
    """Why an archived record is not sent, in the words the UI uses."""
    if mapping.sets_archived_trait:
        return (
            "Archived (deleted) in HubSpot before this mapping delivered it: not sent (“Set a trait” marks only "
            "profiles this mapping delivered; no profile is created for a deleted record)."
        )
    return "Archived (deleted) in HubSpot: not sent (this mapping does nothing for archived records)."


def delivered_before(state: DeliveryState | None) -> bool:
    """Segment took a message for this record from this mapping at some point (also after a "Resync all")."""
    return state is not None and bool(state.delivered_hash or state.delivered_at)


# Keys per jsonb_build_object / json_object call: PostgreSQL allows 100 arguments per function (2 per key).
_PICK_KEYS_PER_CALL = 50


class _PickProperties(Func):
    """The mapped keys of a row's `properties`, as one small JSON object built by the database.

    A real HubSpot row carries ~65 properties of which a mapping reads a handful: decoding (and, on PostgreSQL,
    transferring) the whole document for every row was most of the per-row cost of a delivery. A key missing from
    the row comes back as null, which the builder reads exactly like a missing key (`props.get(column)` is None).
    Values keep their JSON types: PostgreSQL's `->` and SQLite's `->` both return JSON, which the object
    constructor embeds as is. Over 50 keys the objects are merged (SQLite's json_patch leaves out null values,
    which read as None all the same). Returned as JSON text (decoded by `_loads`, faster than Django's
    JSONField conversion)."""

    output_field = TextField()

    def __init__(self, keys: list[str]) -> None:
        super().__init__(F("properties"))
        self.keys = keys

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[override]
        column, params = compiler.compile(self.source_expressions[0])
        build = "jsonb_build_object" if connection.vendor == "postgresql" else "json_object"
        calls, args = [], []
        for start in range(0, len(self.keys), _PICK_KEYS_PER_CALL):
            part = self.keys[start : start + _PICK_KEYS_PER_CALL]
            calls.append(f"{build}({', '.join(f'%s, {column} -> %s' for _ in part)})")
            for key in part:
                args += [key, *params, key]
        if len(calls) == 1:
            return calls[0], args
        if connection.vendor == "postgresql":
            return "(" + " || ".join(calls) + ")", args
        return f"json_patch({', '.join(calls)})", args  # SQLite: merge the objects (no key is in two of them)


class _Delivery:
    def __init__(self, mapping: Mapping, run: DeliveryRun, client: SegmentClient | None = None) -> None:
        self.mapping = mapping
        self.run = run
        model = mapping.data_model
        self.source_id = model.source_id
        self.collection = model.collection
        schema = (
            SourceCollection.objects.filter(source_id=self.source_id, collection=self.collection)
            .values_list("properties", flat=True)
            .first()
        ) or {}
        self.builder = MessageBuilder(mapping, schema)
        self.client = client or SegmentClient(mapping.profile_space.region)
        self.chunk_size = settings.DELIVERY_CHUNK_SIZE
        same_config = mapping.watermark_config_hash == self.builder.config_hash
        self.start = mapping.watermark if same_config else 0
        self.read_seq = self.start  # the last row considered (resolved, or waiting in the buffer)
        self.failed_seq: int | None = None
        self.retry_failed = False  # a batch of retried records failed: they stay in "retry"
        self.retrying = False  # in the retry pass (after the scan past the watermark)
        self.retry_unchanged: list[int] = []  # retried records whose payload Segment already has
        self.sample_cutoff = sample_cutoff(mapping)
        self.buffer: list[_Pending] = []
        self.buffered: dict[int, _Pending] = {}  # the buffer by record: one message per record in it
        self.buffer_bytes = BATCH_ENVELOPE_BYTES
        # Records of batches that failed after they may have reached Segment (timeouts, lost connections, 5xx,
        # retries exhausted): Segment may hold their message although we recorded nothing. Like a killed run's,
        # they are this run's `unconfirmed`, and the next run sends them whatever their hash.
        self.uncertain: set[int] = set()
        # States to write at the next checkpoint, one per record (last wins: a record changed during the run can
        # be read twice, and one upsert statement must not touch a row twice).
        self.states: dict[int, DeliveryState | _Delivered] = {}
        self.write_key = ""
        self.max_in_flight = max(1, settings.DELIVERY_MAX_IN_FLIGHT)
        self.sender = _Sender(self.max_in_flight)
        self.inflight: deque[tuple[list[_Pending], Future]] = deque()
        self.inflight_items: dict[int, _Pending] = {}  # what is in flight, by record (one message each)
        # What this run recorded as delivered since the rows being considered were read (their delivered hash
        # predates it): (payload hash, messageId) by record, emptied at every read.
        self.recent: dict[int, tuple[str, str]] = {}
        run.watermark_from = self.start
        # Records a killed run may have had accepted by Segment without recording it (its `unconfirmed`). Such a
        # record that has since gone back to the payload delivered before (B sent unrecorded, then back to A)
        # would look unchanged and the profile would keep B: these are sent whatever their hash. Cleared as they
        # are considered; until then they stay in this run's own `unconfirmed`, should it be killed too.
        self.forced: set[int] = {int(i) for i in _inherited_unconfirmed(mapping.pk, run.pk) or []}
        if self.forced:  # inherited at once, should this run be killed before its first send
            run.unconfirmed = sorted(self.forced)
            DeliveryRun.objects.filter(pk=run.pk).update(unconfirmed=run.unconfirmed)
        run.watermark_to = self.start

    # --- reading -----------------------------------------------------------------------------------------
    def _chunks(self):
        """Keyset pages over the mirror ordered by change_seq (unique per source: sources.ChangeCounter hands
        out blocks under a row lock, so pages commit in sequence order and nothing can appear behind us). Each
        row comes with the hash last delivered for it (a correlated lookup on the state's unique index), so
        the diff costs no extra query."""
        after = self.start
        base = self._base_rows().order_by("change_seq")
        fields = self._fields()
        while True:
            self.recent = {}  # every outcome so far is checkpointed: the rows read now carry it
            rows = list(base.filter(change_seq__gt=after).values_list(*fields)[: self.chunk_size])
            if not rows:
                return
            yield rows
            after = rows[-1][1]
            if len(rows) < self.chunk_size:
                return

    def _base_rows(self):
        delivered = DeliveryState.objects.filter(mapping_id=self.mapping.pk, object_id=OuterRef("object_id"))
        # One lookup for both: "<delivered hash> <delivered messageId>" (split in `_consider`).
        if self.builder.archived_trait is None:
            delivered = delivered.annotate(
                known=Concat(F("delivered_hash"), Value(" "), _delivered_id(), output_field=TextField())
            ).values("known")
        else:
            # "Set a trait" marks only profiles this mapping delivered to, so an archived row must know whether
            # Segment ever took a message for it. "Resync all" forgets the hash but not delivered_at: the same
            # lookup says so with a value no payload hash can equal.
            delivered = delivered.annotate(
                known=Concat(
                    Case(
                        When(delivered_hash="", delivered_at__isnull=False, then=Value(DELIVERED_BEFORE)),
                        default=F("delivered_hash"),
                    ),
                    Value(" "),
                    _delivered_id(),
                    output_field=TextField(),
                )
            ).values("known")
        rows = Record.objects.filter(source_id=self.source_id, collection=self.collection).annotate(
            delivered=Subquery(delivered[:1])
        )
        if self._picks_properties:
            # Only the mapped properties leave the database: decoding ~65 HubSpot properties per row to use a
            # handful was the largest cost of a delivery.
            keys = self.builder.property_columns
            rows = rows.annotate(picked=_PickProperties(keys) if keys else Value("{}", output_field=TextField()))
        return rows

    @property
    def _picks_properties(self) -> bool:
        return connection.vendor in ("postgresql", "sqlite")

    def _fields(self) -> tuple[str, ...]:
        created = "created_at" if self.builder.needs_created_at else "archived"  # a cheap stand-in when unused
        props = "picked" if self._picks_properties else "properties"
        return ("object_id", "change_seq", "archived", created, "updated_at", props, "delivered", "archived_update")

    def _retry_pass(self) -> None:
        """Reconsider the records whose rejection the user asked to retry (status "retry"), in object-id keyset
        chunks. Runs after the scan, whose outcomes are checkpointed first: a record the scan already resolved
        lost its "retry" status then and is not looked at twice."""
        base = self._base_rows()
        fields = self._fields()
        after = 0
        while True:
            ids = list(
                DeliveryState.objects.filter(
                    mapping_id=self.mapping.pk, status=DeliveryState.Status.RETRY, object_id__gt=after
                )
                .order_by("object_id")
                .values_list("object_id", flat=True)[: self.chunk_size]
            )
            if not ids:
                break
            if not self.retrying:
                self._checkpoint()
                self.retrying = True
            found = set()
            self.recent = {}
            for row in base.filter(object_id__in=ids).order_by("object_id").values_list(*fields):
                found.add(row[0])
                self._consider(row)
            now = timezone.now()
            for object_id in ids:
                if object_id not in found:  # gone from the mirror (e.g. the model's collection was deleted)
                    self._state(
                        DeliveryState(
                            mapping_id=self.mapping.pk,
                            object_id=object_id,
                            status=DeliveryState.Status.REJECTED,
                            error="This record is no longer in the mirror: nothing to send.",
                            updated_at=now,
                        )
                    )
            self._checkpoint()
            after = ids[-1]
            if len(ids) < self.chunk_size:
                break
        if self.retrying:
            self._flush()
            self._collect_all()

    def execute(self) -> None:
        self.write_key = self.mapping.profile_space.write_key
        try:
            for rows in self._chunks():
                for row in rows:
                    self._consider(row)
                    # Only now: a flush while considering this row must not count it as resolved.
                    self.read_seq = row[1]
                self._checkpoint()
            self._flush()
            self._collect_all()
            self._retry_pass()
        except _Abort:
            self._drain_after_abort()
            raise
        finally:
            self.sender.shutdown()

    def _consider(self, row: tuple) -> None:
        object_id, change_seq, archived, created_at, updated_at, props, delivered, archived_update = row
        if delivered is None:  # never delivered
            delivered_hash, delivered_id = None, ""
        else:
            delivered_hash, _space, delivered_id = delivered.partition(" ")
        if self.recent and object_id in self.recent:
            delivered_hash, delivered_id = self.recent[object_id]
        if props.__class__ is str:  # the picked properties, as JSON text
            props = _loads(props)
        self.run.considered += 1
        if self.sample_cutoff is not None and object_id > self.sample_cutoff:
            # Sample mode: beyond the first N records. Neither sent nor marked: "switch to all" sends it.
            self.run.outside_sample += 1
            if self.retrying:
                self._retry_left(object_id, "Outside the sample: delivered when the mapping switches to all records.")
            return
        content = error = None
        if archived and archived_update and self.builder.archived_trait is None and delivered_hash:
            # "Do nothing", for a record this mapping delivered and that HubSpot changed just before archiving it
            # (sources.Record.archived_update): those values still reach its profile, once; nothing else is sent
            # for it. Already there (or there with the former trait): skipped like any archived one.
            content, error = self.builder.build(object_id, created_at, updated_at, props, archived)
            if not error and (self.forced and object_id in self.forced or not self.builder.covers(
                content, delivered_hash, archived=True, exact=True
            )):
                archived = False  # a live record's message: counted as sent, not as "archived sent"
            else:
                content = None
        if archived and (self.builder.archived_trait is None or not delivered_hash):
            # Archived (deleted) in HubSpot and not sent: the mapping does nothing for archived records, or it
            # sets a trait but never delivered this one (no profile is made just to say its record is gone).
            self.run.archived += 1
            if self.retrying:
                self._retry_left(object_id, archived_skip_reason(self.mapping), DeliveryState.Status.REJECTED)
            return
        # With "Set a trait", an archived record that was delivered before goes on from here like any other: its
        # message (last known traits + `<trait>: true`) is sent when it differs from the delivered one, and
        # counts as sent or unchanged.
        if content is None:
            content, error = self.builder.build(object_id, created_at, updated_at, props, archived)
        if error:
            self._reject(object_id, error, content)
            return
        core, payload_hash = self.builder.digest(content)
        forced = self.forced and object_id in self.forced
        if forced:
            self.forced.discard(object_id)  # from here on it is in the buffer or in flight: still unconfirmed
        older = None
        if self.buffered or self.inflight_items:  # (the newest first: a waiting message goes out after the other)
            older = self.buffered.get(object_id) or self.inflight_items.get(object_id)
        if older is not None:
            # Read again while its previous message is still waiting or in flight: what the profile will hold is
            # that message, not the delivered hash (a record changed and changed back during the run must not
            # look unchanged while the changed version lands). See _add and _flush for the order.
            delivered_hash, delivered_id = older.payload_hash, older.message_id
            unchanged = payload_hash == delivered_hash
        else:
            unchanged = not forced and (
                delivered_hash == payload_hash or (not archived and self.builder.covers(content, delivered_hash))
            )
        if unchanged:
            # (Before the envelope: most rows of a reconsidering run end here. Segment took this payload, so it
            # is not over the size limit either.)
            self.run.unchanged += 1
            if self.retrying:
                self.retry_unchanged.append(object_id)  # the profile already holds exactly this payload
            return
        payload, message_id = self.builder.envelope(
            object_id, core, payload_hash, updated_at, delivered_hash, delivered_id
        )
        if len(payload) > MAX_MESSAGE_BYTES:
            self._reject(object_id, _oversize_reason(len(payload), content), None)
            return
        self._add(_Pending(object_id, change_seq, payload, payload_hash, message_id, self.retrying, archived))

    def _retry_left(self, object_id: int, reason: str, status: str = DeliveryState.Status.PENDING) -> None:
        """A retried record that is not sent and would otherwise keep its "retry" status forever."""
        self._state(
            DeliveryState(
                mapping_id=self.mapping.pk,
                object_id=object_id,
                status=status,
                error=reason,
                updated_at=timezone.now(),
            )
        )

    # --- bookkeeping -------------------------------------------------------------------------------------
    def _reject(self, object_id: int, reason: str, content: dict | None) -> None:
        self.run.rejected += 1
        now = timezone.now()
        self._state(
            DeliveryState(
                mapping_id=self.mapping.pk,
                object_id=object_id,
                status=DeliveryState.Status.REJECTED,
                error=reason,
                last_payload=content,
                updated_at=now,
            )
        )

    def _add(self, item: _Pending) -> None:
        older = self.buffered.get(item.object_id)
        if older is not None:
            # The record changed again while its previous message waited here (rows committed after the run
            # started are read too): only the newer one goes out. It holds the watermark unless both are retries.
            self.buffer.remove(older)
            self.buffer_bytes -= len(older.payload) + 1
            item.retry = item.retry and older.retry
        size = len(item.payload) + 1  # the comma
        if self.buffer and (len(self.buffer) >= MAX_BATCH_MESSAGES or self.buffer_bytes + size > MAX_BATCH_BYTES):
            self._flush()
        self.buffer.append(item)
        self.buffered[item.object_id] = item
        self.buffer_bytes += size

    def _watermark(self) -> int:
        """The highest change_seq below which every record is resolved: rows are considered in change_seq
        order, so that is just below the first unconfirmed one (a failed batch, else the batch in flight, else
        the unsent buffer), or the last row read."""
        if self.failed_seq is not None:
            return max(self.start, min(self.read_seq, self.failed_seq - 1))
        first = self.inflight[0][0][0] if self.inflight else (self.buffer[0] if self.buffer else None)
        if first is not None and not first.retry:  # retried records are below the watermark: they don't hold it
            return max(self.start, first.change_seq - 1)
        return self.read_seq

    def _checkpoint(self) -> None:
        """Persist states, watermark and counters together: constant queries per batch or chunk."""
        watermark = self._watermark()
        now = timezone.now()
        with transaction.atomic():
            # The mapping's row lock first: every writer of its states (this checkpoint, "retry", "resync all")
            # takes it before touching states and their counters, so they queue instead of deadlocking.
            _lock_mapping(self.mapping.pk)
            by_status: dict[str, list] = {}
            for state in self.states.values():
                by_status.setdefault(state.status, []).append(state)
            delivered = by_status.pop(DeliveryState.Status.DELIVERED, None)
            if delivered:
                _upsert_delivered(self.mapping.pk, delivered, now)
            for status, states in by_status.items():
                DeliveryState.objects.bulk_create(
                    states,
                    update_conflicts=True,
                    unique_fields=["mapping", "object_id"],
                    update_fields=_STATE_UPDATE_FIELDS[status],
                )
            if self.retry_unchanged:
                DeliveryState.objects.filter(
                    mapping_id=self.mapping.pk, object_id__in=self.retry_unchanged, status=DeliveryState.Status.RETRY
                ).update(status=DeliveryState.Status.DELIVERED, error="", updated_at=now)
                self.retry_unchanged = []
            if watermark != self.mapping.watermark or self.mapping.watermark_config_hash != self.builder.config_hash:
                Mapping.objects.filter(pk=self.mapping.pk).update(
                    watermark=watermark, watermark_config_hash=self.builder.config_hash
                )
                self.mapping.watermark = watermark
                self.mapping.watermark_config_hash = self.builder.config_hash
            self.run.watermark_to = watermark
            self.run.heartbeat_at = now
            # (`unconfirmed` is written before each send, not here: a checkpoint only shrinks it, and a stale id
            # costs at most one needless resend after a kill.)
            self.run.save(update_fields=[*RUN_COUNT_FIELDS, "watermark_from", "watermark_to", "heartbeat_at"])
        self.states.clear()

    # --- sending -----------------------------------------------------------------------------------------
    # Up to DELIVERY_MAX_IN_FLIGHT batches are in flight while the next one is built: Segment's (or the
    # sandbox's) time to answer overlaps with our reading and encoding and with each other. Outcomes are
    # recorded oldest first, so "everything below the first unconfirmed record" stays the watermark rule.
    #
    # Never two messages of one record in flight: batches retry independently, so an older message's retry could
    # land after the newer one while the state records the newer hash, and the profile would keep the older
    # values for good. A batch carrying a record that an earlier batch still carries waits until that one is
    # settled; the recorded hash is then always the one of the last message Segment applied.
    def _flush(self) -> None:
        # Collect first, so that the checkpoint it makes still sees these items in the buffer (unconfirmed).
        while len(self.inflight) >= self.max_in_flight:
            self._collect_oldest()
        while self.inflight_items and any(object_id in self.inflight_items for object_id in self.buffered):
            self._collect_oldest()
        items, self.buffer, self.buffer_bytes = self.buffer, [], BATCH_ENVELOPE_BYTES
        self.buffered = {}
        if items:
            # Before Segment can accept them: should the worker die before their outcome is recorded, the next run
            # knows which records to resend whatever their hash (see `forced`). One small UPDATE per batch.
            DeliveryRun.objects.filter(pk=self.run.pk).update(unconfirmed=self._unconfirmed(items))
            future = self.sender.submit(self.client.send_batch, self.write_key, [i.payload for i in items])
            self.inflight.append((items, future))
            for item in items:
                self.inflight_items[item.object_id] = item

    def _unconfirmed(self, sending: list[_Pending] = ()) -> list[int] | None:
        """Ids whose outcome is not recorded: in flight, being sent, in the buffer, or inherited and not yet
        considered."""
        ids = {item.object_id for batch, _future in self.inflight for item in batch}
        ids.update(item.object_id for item in sending)
        ids.update(item.object_id for item in self.buffer)
        ids.update(self.forced)
        ids.update(self.uncertain)
        return sorted(ids) or None

    def _landed(self, items: list[_Pending]) -> None:
        """A batch is no longer in flight (its outcome is about to be recorded)."""
        self.inflight.popleft()
        for item in items:
            self.inflight_items.pop(item.object_id, None)

    def _collect_oldest(self) -> None:
        """Wait for the oldest batch in flight and record its outcome (then checkpoint)."""
        items, future = self.inflight[0]
        try:
            result = future.result()
        except SegmentError as exc:
            self._landed(items)
            self._failed_batch(items, exc)
        else:
            self._landed(items)
            self._delivered(items, result.attempts)
        self._checkpoint()

    def _collect_all(self) -> None:
        while self.inflight:
            self._collect_oldest()

    def _drain_after_abort(self) -> None:
        """A batch failed for good: record what the batches still in flight came to (Segment may well have
        accepted them), without splitting or retrying anything."""
        while self.inflight:
            items, future = self.inflight[0]
            self._landed(items)
            try:
                result = future.result()
            except SegmentError as exc:
                self._count_requests(exc.attempts)
                self._fail(items, str(exc), uncertain=isinstance(exc, SegmentTransientError))
            else:
                self._delivered(items, result.attempts)

    def _send_now(self, items: list[_Pending]) -> None:
        """Synchronous send, used while splitting a refused batch."""
        try:
            result = self.client.send_batch(self.write_key, [item.payload for item in items])
        except SegmentError as exc:
            self._failed_batch(items, exc)
        else:
            self._delivered(items, result.attempts)

    def _failed_batch(self, items: list[_Pending], exc: SegmentError) -> None:
        self._count_requests(exc.attempts)
        if isinstance(exc, SegmentPermanentError) and exc.status in (400, 413):
            if len(items) > 1:
                # A batch Segment calls malformed or too large: split it to find the record(s) at fault, so
                # one bad record is rejected for itself instead of failing its 2,499 neighbours.
                middle = len(items) // 2
                self._send_now(items[:middle])
                self._send_now(items[middle:])
            else:
                self._reject(items[0].object_id, f"Segment refused this message: {exc.body}", None)
            return
        # Segment is down past our retries, or refuses the key: sending more now is pointless.
        self._fail(items, str(exc), uncertain=isinstance(exc, SegmentTransientError))
        raise _Abort(str(exc)) from exc

    def _delivered(self, items: list[_Pending], attempts: int) -> None:
        self._count_requests(attempts)
        self.run.sent += len(items)
        self.run.archived_sent += sum(item.archived for item in items)
        self.run.batches += 1
        for item in items:
            self._state(_Delivered(item.object_id, item.payload_hash, item.message_id))
            self.recent[item.object_id] = (item.payload_hash, item.message_id)

    def _count_requests(self, attempts: int) -> None:
        self.run.requests += attempts
        self.run.retries += max(0, attempts - 1)

    def _fail(self, items: list[_Pending], reason: str, *, uncertain: bool) -> None:
        """Segment did not confirm this batch: the records stay pending (delivered_hash untouched) and the
        watermark stops just below the first of them, so the next run sends them again with the same ids.
        `uncertain`: the batch may have reached Segment all the same (no answer, or a transient error after the
        body went out), so the next run sends these records even if they went back to the delivered payload
        (A → B → A would otherwise look unchanged while the profile holds B)."""
        self.run.failed += len(items)
        if uncertain:
            self.uncertain.update(item.object_id for item in items)
            reason = f"Not confirmed, and Segment may have applied it: sent again next run, whatever it holds. {reason}"
        else:
            reason = f"Not delivered yet (will be retried): {reason}"
        scanned = [item.change_seq for item in items if not item.retry]
        if scanned:
            first = min(scanned)
            self.failed_seq = first if self.failed_seq is None else min(self.failed_seq, first)
        if len(scanned) < len(items):
            self.retry_failed = True  # those stay in "retry": the next run reconsiders them
        now = timezone.now()
        for item in items:
            self._state(
                DeliveryState(
                    mapping_id=self.mapping.pk,
                    object_id=item.object_id,
                    status=DeliveryState.Status.RETRY if item.retry else DeliveryState.Status.PENDING,
                    error=reason[:2000],
                    message_id=item.message_id,
                    updated_at=now,
                )
            )

    def _state(self, state: DeliveryState | _Delivered) -> None:
        self.states.pop(state.object_id, None)
        self.states[state.object_id] = state


def _delivered_id() -> Coalesce:
    """The state's delivered messageId, "" for states recorded before it was kept."""
    return Coalesce(F("delivered_message_id"), Value(""), output_field=TextField())


def _lock_mapping(mapping_id: int) -> None:
    """Lock the mapping's row until the transaction ends (a no-op on SQLite, where writers take turns)."""
    list(Mapping.objects.select_for_update(no_key=True).filter(pk=mapping_id).values_list("pk", flat=True))


def _sender_thread_done(barrier: threading.Barrier) -> None:
    # A sender thread's pooled HTTP connections and any database connection opened there (by hooks) end
    # with the run instead of lingering until garbage collection.
    close_session()
    db_connections.close_all()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=10)


def _upsert_delivered(mapping_id: int, states: list[_Delivered], now: Any) -> None:
    """One statement for a whole batch of delivered states (the hot path: Django's bulk_create spends more
    time preparing 2,500 model instances than the database spends writing them)."""
    table = DeliveryState._meta.db_table
    update = (
        "delivered_hash = excluded.delivered_hash, status = excluded.status, error = '', "
        "message_id = excluded.message_id, delivered_message_id = excluded.delivered_message_id, "
        "delivered_at = excluded.delivered_at, last_payload = NULL, updated_at = excluded.updated_at"
    )
    columns = (
        "mapping_id, object_id, delivered_hash, status, error, message_id, delivered_message_id, delivered_at, "
        "last_payload, updated_at"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "
                f"SELECT %s, t.o, t.h, 'delivered', '', t.m, t.m, %s, NULL, %s "
                f"FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS t(o, h, m) "
                f"ON CONFLICT (mapping_id, object_id) DO UPDATE SET {update}",
                [
                    mapping_id,
                    now,
                    now,
                    # Array literals built here: psycopg's list dumper costs more per element than the upsert.
                    # Safe unquoted: ints, hex hashes and messageIds ("hs-<ws>-<mapping>-<id>-<hex>").
                    "{" + ",".join([str(s.object_id) for s in states]) + "}",
                    "{" + ",".join([s.delivered_hash for s in states]) + "}",
                    "{" + ",".join([s.message_id for s in states]) + "}",
                ],
            )
        else:
            at = connection.ops.adapt_datetimefield_value(now)
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, 'delivered', '', %s, %s, %s, NULL, %s) "
                f"ON CONFLICT (mapping_id, object_id) DO UPDATE SET {update}",
                [(mapping_id, s.object_id, s.delivered_hash, s.message_id, s.message_id, at, at) for s in states],
            )


_STATE_UPDATE_FIELDS = {
    DeliveryState.Status.DELIVERED: [
        "delivered_hash",
        "status",
        "error",
        "message_id",
        "delivered_message_id",
        "delivered_at",
        "last_payload",
        "updated_at",
    ],
    # Rejected and pending leave delivered_hash alone: the profile still holds what was delivered last.
    DeliveryState.Status.REJECTED: ["status", "error", "last_payload", "updated_at"],
    DeliveryState.Status.PENDING: ["status", "error", "message_id", "updated_at"],
    DeliveryState.Status.RETRY: ["status", "error", "message_id", "updated_at"],
}
RUN_COUNT_FIELDS = [
    "considered",
    "sent",
    "unchanged",
    "rejected",
    "failed",
    "archived",
    "archived_sent",
    "outside_sample",
    "batches",
    "requests",
    "retries",
]


# --- runs ----------------------------------------------------------------------------------------------------
def _inherited_unconfirmed(mapping_id: int, run_id: int) -> list[int] | None:
    """The `unconfirmed` ids the mapping's previous run left (None after a run that ended normally)."""
    return (
        DeliveryRun.objects.filter(mapping_id=mapping_id).exclude(pk=run_id).order_by("-created_at", "-id")
        .values_list("unconfirmed", flat=True).first()
    )


def _claim_run(mapping: Mapping, sync_run_id: int | None) -> DeliveryRun | None:
    """Create this mapping's one active run, or return None when another live run holds it. A request that
    finds a run in progress leaves `delivery_requested` set, and that run enqueues one more delivery when it
    ends: the flag is raised *before* trying, so a run finishing in between either sees it or has already
    released the constraint (and then our insert succeeds)."""
    Mapping.objects.filter(pk=mapping.pk).update(delivery_requested=True)
    stale_after = timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    for _attempt in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                run = DeliveryRun.objects.create(
                    mapping=mapping,
                    sync_run_id=sync_run_id,
                    status=DeliveryRun.Status.RUNNING,
                    created_at=now,
                    started_at=now,
                    heartbeat_at=now,
                )
                Mapping.objects.filter(pk=mapping.pk).update(delivery_requested=False, last_run=run)
            return run
        except IntegrityError:
            active = DeliveryRun.objects.filter(mapping=mapping, status__in=DeliveryRun.ACTIVE).first()
            if active is None:
                continue  # it just finished: try again
            if not active.is_stale(running_after=stale_after, queued_after=stale_after, now=now):
                return None
            # Its worker is gone (killed, OOM, lost machine): fail it so that delivery can go on.
            active.fail_if_unchanged(
                error=f"Lost: no heartbeat since {active.last_sign_of_life.isoformat()} (worker killed or stopped); "
                "taken over.",
                now=now,
            )
    return None


def _finish(run: DeliveryRun, mapping: Mapping) -> None:
    run.finished_at = timezone.now()
    with transaction.atomic():
        requested = (
            Mapping.objects.select_for_update()
            .filter(pk=mapping.pk)
            .values_list("delivery_requested", flat=True)
            .first()
        )
        run.save(
            update_fields=[
                "status", "finished_at", "error", *RUN_COUNT_FIELDS, "watermark_to", "heartbeat_at", "unconfirmed"
            ]
        )
        if requested:
            Mapping.objects.filter(pk=mapping.pk).update(delivery_requested=False)
            if run.status == DeliveryRun.Status.SUCCEEDED:
                # Changes were merged while we ran and their delivery request found us busy: go again. After a
                # failure we don't loop; the next sync (or a retry by hand) delivers them.
                from .tasks import deliver_mapping

                deliver_mapping.delay_on_commit(mapping.pk)
    handoff.send(handoff.RUN_FINISHED, workspace_id=mapping.destination.workspace_id)


def deliver(
    *, mapping_id: int, sync_run_id: int | None = None, client: SegmentClient | None = None
) -> DeliveryRun | None:
    """Deliver one mapping's pending changes. Returns the run, or None when the mapping is gone or disabled, or
    another live delivery of it is in progress (that one delivers these changes too, see `_claim_run`)."""
    mapping = Mapping.objects.select_related("data_model", "profile_space", "destination").filter(pk=mapping_id).first()
    if mapping is None or not mapping.delivers:  # deleted, switched off or paused (drift) since it was queued
        return None
    if sync_run_id is not None and not SyncRun.objects.filter(pk=sync_run_id).exists():
        sync_run_id = None  # deleted meanwhile: deliver anyway (a foreign-key error would read as "busy")
    run = _claim_run(mapping, sync_run_id)
    if run is None:
        return None
    engine = None

    def unresolved() -> list[int] | None:
        """What the next run must resend whatever its hash: after a failure, what this run left unconfirmed
        (inherited ids included; all of them if it never got going)."""
        return _inherited_unconfirmed(mapping.pk, run.pk) if engine is None else engine._unconfirmed()

    try:
        engine = _Delivery(mapping, run, client)
        engine.execute()
    except _Abort as exc:
        run.error = str(exc)[:4000]
    except DecryptionError:
        run.error = "The profile space's write key could not be decrypted (check HUBSYNC_ENCRYPTION_KEYS)."
        run.status = DeliveryRun.Status.FAILED
        run.unconfirmed = unresolved()
        _finish(run, mapping)
        return run
    except Exception as exc:
        logger.exception("delivery %s of mapping %s failed", run.pk, mapping_id)
        run.status = DeliveryRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:4000]
        run.unconfirmed = unresolved()
        _finish(run, mapping)
        raise
    if engine is not None and (engine.failed_seq is not None or engine.retry_failed):
        engine._checkpoint()  # the failed batch's pending states and the held-back watermark
        run.status = DeliveryRun.Status.PARTIAL if run.sent else DeliveryRun.Status.FAILED
        run.unconfirmed = unresolved()
    else:
        # Every outcome is recorded; an inherited id the scan never met is gone from the mirror: nothing to send.
        run.status = DeliveryRun.Status.SUCCEEDED
        run.unconfirmed = None
    _finish(run, mapping)
    return run


def preview_message(
    mapping: Mapping,
    *,
    object_id: int,
    properties: dict[str, Any],
    created_at: Any = None,
    updated_at: Any = None,
    schema: dict[str, Any] | None = None,
    archived: bool = False,
    previous_hash: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The exact message the engine would send for one record (e.g. read live from HubSpot for "Test the
    mapping"), and the reason it would be rejected ("" when valid). Sends nothing. For an archived record it is
    the message "Set a trait" sends; whether one is sent at all is the caller's to say (`archived_skip_reason`):
    never with "Do nothing", and only to profiles this mapping delivered before with "Set a trait".
    `previous_hash` (the record's delivered hash) gives the messageId a delivery would give it now (with the
    messageId Segment accepted last, read from the record's state)."""
    if schema is None:
        model = mapping.data_model
        schema = (
            SourceCollection.objects.filter(source_id=model.source_id, collection=model.collection)
            .values_list("properties", flat=True)
            .first()
        ) or {}
    builder = MessageBuilder(mapping, schema)
    content, error = builder.build(object_id, created_at, updated_at, properties, archived)
    previous_id = ""
    if previous_hash:
        previous_id = (
            DeliveryState.objects.filter(mapping_id=mapping.pk, object_id=object_id)
            .values_list("delivered_message_id", flat=True)
            .first()
        ) or ""
    payload, _hash, _message_id = builder.finish(object_id, content, updated_at, previous_hash, previous_id)
    if not error and len(payload) > MAX_MESSAGE_BYTES:
        error = _oversize_reason(len(payload), content)
    return json.loads(payload), error


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


def set_sample_mode(*, mapping: Mapping, sample_size: int | None) -> None:
    """Start small (sample_size = N) or switch to all records (None), and enqueue a delivery when enabled.
    The configuration hash changes either way, so the next delivery reconsiders every record: after switching
    to all records, exactly the ones the sample left out are sent (the rest are unchanged)."""
    Mapping.objects.filter(pk=mapping.pk).update(sample_size=sample_size, updated_at=timezone.now())
    mapping.sample_size = sample_size
    if mapping.delivers:
        from .tasks import deliver_mapping

        deliver_mapping.delay_on_commit(mapping.pk)


def rejected_states(mapping: Mapping):
    """The mapping's rejected records (the list users filter and retry from)."""
    return DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.REJECTED)


def request_retry(*, mapping: Mapping, object_ids: list[int] | None = None, states: Any = None) -> int:
    """Mark rejected records for retry: the next delivery reconsiders them (rebuilds their message from the
    mirror, sends it if valid and different from what Segment has). `object_ids` picks some, `states` a
    filtered queryset of `rejected_states(mapping)`; neither means all. Enqueues a delivery when the mapping is
    enabled (a delivery in progress picks them up or runs again). Returns how many were marked."""
    qs = states if states is not None else rejected_states(mapping)
    qs = qs.filter(mapping=mapping, status=DeliveryState.Status.REJECTED)
    if object_ids is not None:
        qs = qs.filter(object_id__in=[int(x) for x in object_ids])
    with transaction.atomic():
        _lock_mapping(mapping.pk)
        marked = qs.update(status=DeliveryState.Status.RETRY, updated_at=timezone.now())
    if marked and mapping.delivers:
        from .tasks import deliver_mapping

        deliver_mapping.delay_on_commit(mapping.pk)
    return marked


def send_test_message(mapping: Mapping, message: dict[str, Any]) -> BatchResult:
    """Send one previewed message to the mapping's Profile Space (raises SegmentError when refused). It is a
    real write: the profile changes, and the record's delivery state is left alone (the next run compares
    with what it last delivered itself)."""
    space = mapping.profile_space
    return SegmentClient(space.region).send_batch(space.write_key, [message])


def resync_all(mapping: Mapping) -> None:
    """Forget what was delivered: the next delivery rebuilds and resends every record, with new messageIds
    (the resync generation is part of the payload hash) so Segment's deduplication does not drop them."""
    with transaction.atomic():
        _lock_mapping(mapping.pk)
        Mapping.objects.filter(pk=mapping.pk).update(
            watermark=0, watermark_config_hash="", resync_generation=F("resync_generation") + 1
        )
        DeliveryState.objects.filter(mapping=mapping).update(delivered_hash="", updated_at=timezone.now())
    mapping.refresh_from_db(fields=["watermark", "watermark_config_hash", "resync_generation"])


def enqueue_deliveries(
    *, source: Any, collections: list[str] | tuple[str, ...] | set[str], sync_run: Any = None
) -> int:
    """Enqueue (after commit) a delivery of every enabled mapping whose data model reads one of `collections`
    of `source`. The extraction engine calls this after merging pages, also during long backfills. Returns the
    number of deliveries enqueued."""
    from .tasks import deliver_mapping

    mapping_ids = list(
        Mapping.objects.filter(
            enabled=True, paused_reason="", data_model__source=source, data_model__collection__in=list(collections)
        ).values_list("pk", flat=True)
    )
    sync_run_id = getattr(sync_run, "pk", None)
    for mapping_id in mapping_ids:
        deliver_mapping.delay_on_commit(mapping_id, sync_run_id)
    return len(mapping_ids)


def deliveries_after_sync(*, source_id: int, collections: list[str], sync_run_id: int | None = None) -> int:
    """The reaction to extraction's "mirror changed": enqueue the deliveries of `collections` plus those of the
    collections whose deliveries are behind (a failed or killed delivery, a mapping enabled since), so the next
    run resends them even when HubSpot had no change. Returns the number of deliveries enqueued."""
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return 0
    wanted = set(collections) | collections_behind(source)
    if not wanted:
        return 0
    sync_run = SyncRun.objects.filter(pk=sync_run_id).first() if sync_run_id is not None else None
    return enqueue_deliveries(source=source, collections=sorted(wanted), sync_run=sync_run)


def collections_behind(source: Any) -> set[str]:
    """The collections of `source` with an enabled mapping that has not delivered everything in the mirror: rows
    past its watermark (a failed, partial or killed delivery holds the watermark back) or a configuration
    changed since its watermark was set. The extraction engine adds them to the deliveries it starts after a run,
    so a delivery that did not finish is resent by the next run even when HubSpot had no change."""
    behind: set[str] = set()
    mappings = Mapping.objects.filter(enabled=True, data_model__source=source).select_related(
        "data_model", "destination"
    )
    for mapping in mappings:
        collection = mapping.data_model.collection
        if collection in behind:
            continue
        schema = (
            SourceCollection.objects.filter(source=source, collection=collection)
            .values_list("properties", flat=True)
            .first()
        ) or {}
        edited = mapping.watermark_config_hash != MessageBuilder(mapping, schema).config_hash
        pending = Record.objects.filter(source=source, collection=collection, change_seq__gt=mapping.watermark)
        # Records whose retry was asked for (or whose retried batch failed) wait below the watermark.
        retrying = DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.RETRY)
        if edited or pending.exists() or retrying.exists():
            behind.add(collection)
    return behind


def sync_in_foreground(*, run_id: int, progress: Any = None) -> tuple[SyncRun | None, set[str]]:
    """One sync run executed in this process, which then delivers by itself (`manage.py sync`, tests): returns
    the finished run (None when another worker owns it) and the collections to deliver, those the run changed
    and those whose deliveries are behind."""
    finished, changed = execute_run_foreground(run_id=run_id, progress=progress)
    if finished is None:
        return None, changed
    return finished, changed | collections_behind(finished.source)


def deliver_collections(
    *, source: Any, collections: list[str] | tuple[str, ...] | set[str], sync_run_id: int | None = None
) -> list[tuple[Mapping, DeliveryRun | None]]:
    """Deliver, in this process and one after the other, every enabled mapping on `collections` of `source`
    (what enqueue_deliveries would queue). For `manage.py sync` and tests; (mapping, run or None) each."""
    mappings = (
        Mapping.objects.filter(enabled=True, data_model__source=source, data_model__collection__in=list(collections))
        .select_related("data_model")
        .order_by("pk")
    )
    return [(mapping, deliver(mapping_id=mapping.pk, sync_run_id=sync_run_id)) for mapping in mappings]

"""The delivery engine: mirror rows past a mapping's watermark → Segment identify/group messages → batches.

For one enabled mapping, `deliver` reads the mirror rows of its data model's collection with change_seq above
the watermark, in keyset-ordered chunks (memory stays flat whatever the size), builds each record's message,
and skips it when its payload hash equals the hash Segment last accepted for that record. Invalid records are
rejected for themselves (reason kept in DeliveryState) and the run goes on. The rest is packed into batches
under Segment's limits and sent.

Two ways a record below the watermark is looked at again without rewinding it:
- **Retry** (`services.request_retry`): rejected records the user asked to retry get status "retry". After the scan past
  the watermark, each run reads those states (keyset chunks) and reconsiders their mirror rows. They never move
  the watermark; a failed batch leaves them in "retry" for the next run. Rewinding the watermark instead would
  rescan the whole collection for one record, and would race with a delivery in progress (its checkpoint
  writes its own watermark).
- **Sample mode** (`Mapping.sample_size`): rows beyond the first N object ids are skipped and count as
  resolved. The sample size is part of the configuration hash, so switching to all records starts the next run
  from 0: the sampled records are unchanged (not resent), the rest are sent once.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Case, ExpressionWrapper, F, Func, OuterRef, Subquery, TextField, Value, When
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hubsync.fields import DecryptionError
from hubsync.jsoncodec import loads
from sources.models import Record, SourceCollection, SyncRun

from ..models import DeliveryRun, DeliveryState, Mapping
from ..segment import MAX_MESSAGE_BYTES, SegmentClient
from ..selectors import sample_cutoff
from .background import Background
from .checkpoint import _Delivered
from .messages import DELIVERED_BEFORE, MessageBuilder, _oversize_reason, _Pending, archived_skip_reason
from .runs import _claim_run, _finish, _inherited_unconfirmed
from .sender import BATCH_ENVELOPE_BYTES, SendingMixin, _Abort, _Sender

logger = logging.getLogger(__name__)


# Keys per jsonb_build_array call: PostgreSQL allows 100 arguments per function.
_PICK_KEYS_PER_CALL = 100


def _mapped_properties(keys: list[str]) -> Func | Value | ExpressionWrapper:
    """What a chunk reads of a row's `properties`, as JSON text (decoded by `loads`, faster than Django's
    JSONField conversion): on PostgreSQL the mapped keys' values (`_PickProperties`); on SQLite the document as
    stored. SQLite's JSON functions cost more than decoding the whole document here (13 µs a row against 8 for a
    65-key contact), and their paths miss keys stored with escapes (any non-ASCII key, as Django writes JSON)."""
    if connection.vendor == "postgresql":
        return _PickProperties(keys) if keys else Value("[]", output_field=TextField())
    return ExpressionWrapper(F("properties"), output_field=TextField())


def _sqlite_datetime(value: datetime | str | None) -> datetime | None:
    """What Django's SQLite backend makes of a stored datetime: sqlite3 has parsed the column (naive, in UTC, as
    Django writes them); text is parsed the way Django would."""
    if value is None:
        return None
    if value.__class__ is not datetime:
        parsed = parse_datetime(str(value))
        if parsed is None:
            raise ValueError(f"not a datetime: {value!r}")
        value = parsed
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _picked_keys(keys: list[str]) -> list[str] | None:
    """The keys whose values `_mapped_properties` reads, in order (PostgreSQL); None where it reads the document."""
    return keys if connection.vendor == "postgresql" else None


def _properties(value: Any, keys: list[str] | None) -> dict[str, Any]:
    """A row's properties as read (see `_mapped_properties`): JSON text, decoded; with `keys` (`_picked_keys`),
    the values of those keys in their order. A document that is not an object (the mirror never writes one)
    reads as no properties."""
    if value.__class__ is str:
        value = loads(value)
    if keys is not None and value.__class__ is list:
        return dict(zip(keys, value, strict=True))
    return value if value.__class__ is dict else {}


class _PickProperties(Func):
    """The values of the mapped keys of a row's `properties`, in the keys' order, as one small JSON array built
    by PostgreSQL (`_properties` pairs them with the keys again).

    A real HubSpot row carries ~65 properties of which a mapping reads a handful: decoding and transferring the
    whole document for every row was most of the per-row cost of a delivery. An array rather than an object:
    without the keys PostgreSQL writes a third less text per row, and the chunk's query takes about a third less
    time (measured: 20 of 65 keys, 2,000 rows, 19.5 ms against 30.6). A key missing from the row comes back as
    null, which the builder reads exactly like a missing key (`props.get(column)` is None). Values keep their
    JSON types. Over 100 keys the arrays are concatenated."""

    output_field = TextField()

    def __init__(self, keys: list[str]) -> None:
        super().__init__(F("properties"))
        self.keys = keys

    def as_sql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return self._postgresql(column, params)

    def _postgresql(self, column: str, params: list) -> tuple[str, list]:
        """PostgreSQL decompresses a TOASTed document again for every `->`: jsonb_to_record takes all the keys
        in one pass (3-4× less work for 20 keys of a 65-key contact). Its columns are identifiers, at most 63
        bytes: a longer key is read with `->`. A document that is not an object (never written by the mirror)
        reads as {} rather than failing the run."""
        columns = [k for k in dict.fromkeys(self.keys) if len(k.encode()) <= _PG_MAX_IDENTIFIER_BYTES]
        named = {k: f"x.{_pg_identifier(k)}" for k in columns}
        values: list[str] = []
        args: list = []  # the `->` fallbacks' arguments, in the order of their placeholders
        for key in self.keys:
            if key in named:
                values.append(named[key])
            else:
                values.append(f"{column} -> %s")
                args += [*params, key]
        calls = []
        for start in range(0, len(self.keys), _PICK_KEYS_PER_CALL):
            part = range(start, min(start + _PICK_KEYS_PER_CALL, len(self.keys)))
            calls.append(f"jsonb_build_array({', '.join(values[i] for i in part)})")
        built = " || ".join(calls)
        if not columns:
            return f"({built})", args
        record = ", ".join(f"{_pg_identifier(k)} jsonb" for k in columns)
        source = f"CASE WHEN jsonb_typeof({column}) = 'object' THEN {column} ELSE '{{}}'::jsonb END"
        return (
            f"(SELECT {built} FROM jsonb_to_record({source}) AS x({record}))",
            [*args, *params, *params],
        )


# Chunks read ahead of the one being considered (each holds DELIVERY_CHUNK_SIZE rows in memory).
_CHUNKS_AHEAD = 2

# PostgreSQL's identifiers (NAMEDATALEN - 1).
_PG_MAX_IDENTIFIER_BYTES = 63


def _pg_identifier(name: str) -> str:
    """A quoted identifier for SQL that Django formats with %-style parameters (so a % is doubled)."""
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


def _delivered_id() -> Coalesce:
    """The state's delivered messageId, "" for states recorded before it was kept."""
    return Coalesce(F("delivered_message_id"), Value(""), output_field=TextField())


class _Delivery(SendingMixin):
    """One run of one mapping: reads and considers the rows here; sends (SendingMixin) and records
    (CheckpointMixin) through its bases."""

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
        self.picked_keys = _picked_keys(self.builder.property_columns)
        space = mapping.profile_space
        self.client = client or SegmentClient(space.region, base_url=space.endpoint)
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
        # What this run recorded as delivered that the rows being considered may not show (their delivered hash
        # was read before it was written): (payload hash, messageId, number of the checkpoint writing it) by
        # record, pruned at every chunk (`_forget_recent`).
        self.recent: dict[int, tuple[str, str, int]] = {}
        self.checkpoints = 0
        self.covered: set[int] = set()
        self.covered_by: Future | None = None
        self.chunk: list[tuple] = []  # the rows being considered (scan past the watermark only)
        self.writer = Background("delivery-writer")
        self.reader = Background("delivery-reader")
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
        base = self._base_rows().order_by("change_seq")
        fields = self._fields()
        ahead = not self.reader.inline  # the next chunks are read while this one is considered
        after, done = self.start, False

        def read_next() -> tuple[int, list[tuple]]:
            # On the reader's thread, in submission order: each read starts after the rows of the one before.
            nonlocal after, done
            if done:
                return self.writer.committed, []
            seen, rows = self._read_chunk(base, fields, after)
            if len(rows) < self.chunk_size:
                done = True
            else:
                after = rows[-1][1]
            return seen, rows

        # Two chunks ahead: a read delayed by a busy database server is absorbed by the other one waiting.
        pending = deque([self.reader.submit(read_next) for _ in range(_CHUNKS_AHEAD if ahead else 1)])
        while True:
            seen, rows = pending.popleft().result()
            if not rows:
                return
            full = len(rows) == self.chunk_size
            if full and ahead:
                pending.append(self.reader.submit(read_next))
            self._forget_recent(seen)
            yield rows
            if not full:
                return
            if not ahead:
                pending.append(self.reader.submit(read_next))

    def _read_chunk(self, base, fields: tuple[str, ...], after: int) -> tuple[int, list[tuple]]:
        """(checkpoints committed before the read, the rows). Read first: a checkpoint committed meanwhile may
        or may not show in the rows, and counts as not shown."""
        seen = self.writer.committed
        rows = base.filter(change_seq__gt=after).values_list(*fields)[: self.chunk_size]
        if connection.vendor != "sqlite":
            return seen, list(rows)
        # SQLite: the query as Django writes it, the datetimes made aware here (Django's per-value converters cost
        # more than the rest of the read; sqlite3 itself has parsed the declared bool and datetime columns).
        sql, params = rows.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            raw = cursor.fetchall()
        if fields[3] == "created_at":
            return seen, [(*r[:3], _sqlite_datetime(r[3]), _sqlite_datetime(r[4]), *r[5:]) for r in raw]
        return seen, [(*r[:4], _sqlite_datetime(r[4]), *r[5:]) for r in raw]

    def _forget_recent(self, seen: int) -> None:
        """Drop the outcomes written by the checkpoints the rows about to be considered were read after."""
        if self.recent:
            self.recent = {k: v for k, v in self.recent.items() if v[2] > seen}

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
        return rows.annotate(picked=_mapped_properties(self.builder.property_columns))

    def _fields(self) -> tuple[str, ...]:
        created = "created_at" if self.builder.needs_created_at else "archived"  # a cheap stand-in when unused
        return ("object_id", "change_seq", "archived", created, "updated_at", "picked", "delivered", "archived_update")

    def _retry_pass(self) -> None:
        """Reconsider the records whose rejection the user asked to retry (status "retry"), in object-id keyset
        chunks. Runs after the scan, whose outcomes are checkpointed first: a record the scan already resolved
        lost its "retry" status then and is not looked at twice."""
        base = self._base_rows()
        fields = self._fields()
        after = 0
        while True:
            self.writer.wait()  # the outcomes so far are written: the states and rows read now show them
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
                self.writer.wait()
            found = set()
            self.recent = {}  # everything is written: the rows read now show it
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
                self.chunk = rows
                for row in rows:
                    self._consider(row)
                    # Only now: a flush while considering this row must not count it as resolved.
                    self.read_seq = row[1]
                self._checkpoint_if_due()
            self.chunk = []
            self._flush()
            self._collect_all()
            self._retry_pass()
            self.writer.wait()
        except _Abort:
            self._drain_after_abort()
            self.writer.wait()  # a failed write is the error to report (the abort is recorded by it)
            raise
        finally:
            self.sender.shutdown()
            self.reader.close()
            # What was decided is written before the run ends (unless a write failed: then nothing more is).
            self.writer.close()

    def _bound_to_be_sent(self) -> list[int]:
        """The rows of this chunk not yet considered (change_seq past `read_seq`: the row being considered is one)
        that were never delivered and are not archived: each will be sent or rejected, so naming them in the
        `unconfirmed` list ahead costs nothing after a kill (they are sent anyway) and spares their batches a
        write each. Rows delivered before are left out: naming one would resend it after a kill even if
        unchanged."""
        read_seq = self.read_seq
        return [row[0] for row in self.chunk if row[1] > read_seq and row[6] is None and not row[2]]

    def _consider(self, row: tuple) -> None:
        object_id, change_seq, archived, created_at, updated_at, props, delivered, archived_update = row
        delivered_hash, delivered_id = self._last_delivered(object_id, delivered)
        props = _properties(props, self.picked_keys)
        self.run.considered += 1
        if self.sample_cutoff is not None and object_id > self.sample_cutoff:
            # Sample mode: beyond the first N records. Neither sent nor marked: "switch to all" sends it.
            self.run.outside_sample += 1
            if self.retrying:
                self._retry_left(object_id, "Outside the sample: delivered when the mapping switches to all records.")
            return
        content = error = None
        if archived and archived_update and self.builder.archived_trait is None and delivered_hash:
            content = self._final_values(object_id, created_at, updated_at, props, delivered_hash)
            # When sent, it is a live record's message: counted as sent, not as "archived sent".
            archived = content is None
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

    def _last_delivered(self, object_id: int, delivered: str | None) -> tuple[str | None, str]:
        """(delivered hash, delivered messageId) of a row being considered: what this run recorded since the row
        was read, else the row's own lookup (see `_base_rows`); (None, "") when never delivered."""
        if self.recent and object_id in self.recent:
            recent = self.recent[object_id]
            return recent[0], recent[1]
        if delivered is None:
            return None, ""
        delivered_hash, _space, delivered_id = delivered.partition(" ")
        return delivered_hash, delivered_id

    def _final_values(
        self, object_id: int, created_at: Any, updated_at: Any, props: dict[str, Any], delivered_hash: str
    ) -> dict[str, Any] | None:
        """With "Do nothing", a record this mapping delivered and that HubSpot changed just before archiving it
        (sources.Record.archived_update): those values still reach its profile, once; nothing else is sent for
        it. Their message, or None when they are already there (or there with the former trait): the record is
        then skipped like any archived one."""
        content, error = self.builder.build(object_id, created_at, updated_at, props, True)
        if not error and (
            self.forced
            and object_id in self.forced
            or not self.builder.covers(content, delivered_hash, archived=True, exact=True)
        ):
            return content
        return None

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

"""Recording outcomes: delivery states, the watermark, the run's counters and what it left unconfirmed.

What makes a delivery safe to kill at any moment:
- `delivered_hash`, the delivered status and the watermark are written only after Segment accepted the batch,
  in one transaction per batch. A killed or failed delivery therefore resends what was not confirmed, and the
  resend carries the same deterministic messageId, so Segment drops any copy it had already taken.
- What Segment may hold without our knowing is written down as the run's `unconfirmed`: before each send (should
  the worker die), and for every batch whose answer never came or was a transient error after the body went out
  (timeouts, reset connections, 5xx, retries exhausted). The next run sends those records whatever their hash,
  so a record that went back to the payload delivered before (A → B unconfirmed → A) still reaches the profile.
- The watermark only moves to a change_seq below which every record is resolved (delivered, unchanged,
  rejected or archived); a failed batch holds it just below its first record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from hubsync.querylog import execute_bulk, forget_queries

from ..models import DeliveryRun, DeliveryState, Mapping
from ..services import lock_mapping

if TYPE_CHECKING:
    from collections import deque
    from concurrent.futures import Future

    from .background import Background
    from .messages import MessageBuilder, _Pending


_KEEP: Any = object()  # `_checkpoint(unconfirmed=...)` not given: the run's `unconfirmed` stays as written

# A chunk with nothing else to write still checkpoints after this long (heartbeat, counters on the run page).
CHECKPOINT_EVERY_SECONDS = 1.0


@dataclass(slots=True)
class _Delivered:
    """A delivered state waiting for the next checkpoint (lighter than a model instance on the hot path)."""

    object_id: int
    delivered_hash: str
    message_id: str
    status: str = "delivered"


class CheckpointMixin:
    """The engine's bookkeeping: outcomes wait in `states` and reach the database together at each checkpoint."""

    mapping: Mapping
    run: DeliveryRun
    builder: MessageBuilder
    start: int
    read_seq: int
    failed_seq: int | None
    retry_failed: bool
    retry_unchanged: list[int]
    states: dict[int, DeliveryState | _Delivered]
    recent: dict[int, tuple[str, str, int]]
    uncertain: set[int]
    forced: set[int]
    buffer: list[_Pending]
    inflight: deque[tuple[list[_Pending], Future]]
    writer: Background
    checkpointed_at: float = 0.0  # time.monotonic() of the last checkpoint
    checkpoints: int  # submitted so far; `writer.committed` says how many are written

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

    def _checkpoint_if_due(self) -> None:
        """After a chunk: a checkpoint when there is something to write (states, a watermark that moved) or the
        last one is over a second old (heartbeat, counters). Most chunks of a first delivery have neither: the
        checkpoints of the batches sent meanwhile wrote it all, and a write costs round trips."""
        if (
            self.states
            or self.retry_unchanged
            or self._watermark() != self.mapping.watermark
            or self.mapping.watermark_config_hash != self.builder.config_hash
            or time.monotonic() - self.checkpointed_at > CHECKPOINT_EVERY_SECONDS
        ):
            self._checkpoint()

    def _checkpoint(self, *, unconfirmed: Any = _KEEP) -> Future:
        """Persist states, watermark and counters together (and the run's `unconfirmed` when given): constant
        queries per batch or chunk. What is written is taken now; the writing is the writer thread's
        (background.py), in order, one transaction each. Returns the write's future."""
        watermark = self._watermark()
        now = timezone.now()
        states, self.states = self.states, {}
        retry_unchanged, self.retry_unchanged = self.retry_unchanged, []
        move = watermark != self.mapping.watermark or self.mapping.watermark_config_hash != self.builder.config_hash
        if move:
            self.mapping.watermark = watermark
            self.mapping.watermark_config_hash = self.builder.config_hash
        self.run.watermark_to = watermark
        self.run.heartbeat_at = now
        # (`unconfirmed` is written before each send, with the checkpoint that precedes it: a checkpoint alone only
        # shrinks it, and a stale id costs at most one needless resend after a kill.)
        run_fields = {name: getattr(self.run, name) for name in _RUN_CHECKPOINT_FIELDS}
        if unconfirmed is not _KEEP:
            run_fields["unconfirmed"] = unconfirmed
        self.checkpoints += 1
        self.checkpointed_at = time.monotonic()
        return self.writer.submit(
            _write_checkpoint,
            self.writer,
            self.checkpoints,
            self.mapping.pk,
            list(states.values()),
            retry_unchanged,
            (watermark, self.builder.config_hash) if move else None,
            run_fields,
            now,
        )

    def _unconfirmed(self, sending: Sequence[_Pending] = (), *, unwritten: bool = True) -> list[int] | None:
        """Ids whose outcome is not recorded: in flight, being sent, in the buffer, delivered but not yet written
        (`unwritten` False: the list is written by the next checkpoint, after all those), or inherited and not
        yet considered."""
        ids = {item.object_id for batch, _future in self.inflight for item in batch}
        ids.update(item.object_id for item in sending)
        ids.update(item.object_id for item in self.buffer)
        ids.update(self.forced)
        ids.update(self.uncertain)
        # Accepted by Segment, with a checkpoint not yet committed (or failed: then none after it runs either).
        if unwritten:
            committed = self.writer.committed
            ids.update(object_id for object_id, recent in self.recent.items() if recent[2] > committed)
        return sorted(ids) or None

    def _delivered(self, items: list[_Pending], attempts: int) -> None:
        self._count_requests(attempts)
        self.run.sent += len(items)
        self.run.archived_sent += sum(item.archived for item in items)
        self.run.batches += 1
        for item in items:
            self._state(_Delivered(item.object_id, item.payload_hash, item.message_id))
            # Written by the next checkpoint (number self.checkpoints + 1).
            self.recent[item.object_id] = (item.payload_hash, item.message_id, self.checkpoints + 1)

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


def _write_checkpoint(
    writer: Background,
    number: int,
    mapping_id: int,
    states: list[DeliveryState | _Delivered],
    retry_unchanged: list[int],
    watermark: tuple[int, str] | None,
    run_fields: dict[str, Any],
    now: Any,
) -> None:
    run_id = run_fields.pop("pk")
    _store(mapping_id, states, retry_unchanged, watermark, run_id, run_fields, now)
    writer.committed = number
    forget_queries()


def _store(
    mapping_id: int,
    states: list[DeliveryState | _Delivered],
    retry_unchanged: list[int],
    watermark: tuple[int, str] | None,
    run_id: int,
    run_fields: dict[str, Any],
    now: Any,
) -> None:
    """One checkpoint, in one transaction. On PostgreSQL the usual one (delivered states only, the hot path) is a
    single statement: one round trip instead of six (begin, lock, upsert, watermark, run, commit)."""
    if connection.vendor == "postgresql" and not retry_unchanged and all(s.__class__ is _Delivered for s in states):
        _store_in_one_statement(mapping_id, states, watermark, run_id, run_fields, now)  # type: ignore[arg-type]
        return
    with transaction.atomic():
        # The mapping's row lock first: every writer of its states (this checkpoint, "retry", "resync all")
        # takes it before touching states and their counters, so they queue instead of deadlocking.
        lock_mapping(mapping_id)
        by_status: dict[str, list] = {}
        for state in states:
            by_status.setdefault(state.status, []).append(state)
        delivered = by_status.pop(DeliveryState.Status.DELIVERED, None)
        if delivered:
            _upsert_delivered(mapping_id, delivered, now)
        for status, group in by_status.items():
            DeliveryState.objects.bulk_create(
                group,
                update_conflicts=True,
                unique_fields=["mapping", "object_id"],
                update_fields=_STATE_UPDATE_FIELDS[status],
            )
        if retry_unchanged:
            DeliveryState.objects.filter(
                mapping_id=mapping_id, object_id__in=retry_unchanged, status=DeliveryState.Status.RETRY
            ).update(status=DeliveryState.Status.DELIVERED, error="", updated_at=now)
        if watermark is not None:
            Mapping.objects.filter(pk=mapping_id).update(watermark=watermark[0], watermark_config_hash=watermark[1])
        DeliveryRun.objects.filter(pk=run_id).update(**run_fields)


def _store_in_one_statement(
    mapping_id: int,
    states: list[_Delivered],
    watermark: tuple[int, str] | None,
    run_id: int,
    run_fields: dict[str, Any],
    now: Any,
) -> None:
    """The checkpoint as one PostgreSQL statement (its own transaction outside an atomic block): the mapping's row
    lock (or the watermark's update, which takes the same lock), then the delivered states' upsert and the run's
    counters. The sub-statements of a WITH run together in no set order, so the upsert and the run's update read
    the lock's row: neither can write before the lock is held, the order every writer of states keeps."""
    mapping_table, mapping_pk = Mapping._meta.db_table, Mapping._meta.pk.column
    params: list[Any] = []
    if watermark is not None:
        lock = (
            f"UPDATE {mapping_table} SET watermark = %s, watermark_config_hash = %s "
            f"WHERE {mapping_pk} = %s RETURNING {mapping_pk} AS id"
        )
        params += [watermark[0], watermark[1], mapping_id]
    else:
        lock = f"SELECT {mapping_pk} AS id FROM {mapping_table} WHERE {mapping_pk} = %s FOR NO KEY UPDATE"
        params.append(mapping_id)
    parts = [f"l AS MATERIALIZED ({lock})" if watermark is None else f"l AS ({lock})"]
    if states:
        parts.append(
            f"s AS (INSERT INTO {DeliveryState._meta.db_table} ({_STATE_COLUMNS}) "
            f"SELECT l.id, t.o, t.h, 'delivered', '', t.m, t.m, %s, NULL, %s "
            f"FROM l, unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS t(o, h, m) "
            f"ON CONFLICT (mapping_id, object_id) DO UPDATE SET {_STATE_UPSERT})"
        )
        params += [now, now, *_state_arrays(states)]
    run_table, run_pk = DeliveryRun._meta.db_table, DeliveryRun._meta.pk.column
    assignments = []
    for name, value in run_fields.items():
        field = DeliveryRun._meta.get_field(name)
        assignments.append(f"{field.column} = %s")  # type: ignore[union-attr]
        params.append(field.get_db_prep_save(value, connection))  # type: ignore[union-attr]
    parts.append(f"r AS (UPDATE {run_table} SET {', '.join(assignments)} FROM l WHERE {run_table}.{run_pk} = %s)")
    params.append(run_id)
    with connection.cursor() as cursor:
        execute_bulk(cursor, f"WITH {', '.join(parts)} SELECT 1", params)


def _state_arrays(states: list[_Delivered]) -> list[str]:
    """The delivered states as three PostgreSQL array literals (object ids, hashes, messageIds), built here:
    psycopg's list dumper costs more per element than the upsert. Safe unquoted: ints, hex hashes and messageIds
    ("hs-<ws>-<mapping>-<id>-<hex>")."""
    return [
        "{" + ",".join([str(s.object_id) for s in states]) + "}",
        "{" + ",".join([s.delivered_hash for s in states]) + "}",
        "{" + ",".join([s.message_id for s in states]) + "}",
    ]


_STATE_COLUMNS = (
    "mapping_id, object_id, delivered_hash, status, error, message_id, delivered_message_id, delivered_at, "
    "last_payload, updated_at"
)
_STATE_UPSERT = (
    "delivered_hash = excluded.delivered_hash, status = excluded.status, error = '', "
    "message_id = excluded.message_id, delivered_message_id = excluded.delivered_message_id, "
    "delivered_at = excluded.delivered_at, last_payload = NULL, updated_at = excluded.updated_at"
)


def _upsert_delivered(mapping_id: int, states: list[_Delivered], now: Any) -> None:
    """One statement for a whole batch of delivered states (the hot path: Django's bulk_create spends more
    time preparing 2,500 model instances than the database spends writing them)."""
    table = DeliveryState._meta.db_table
    update, columns = _STATE_UPSERT, _STATE_COLUMNS
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            execute_bulk(
                cursor,
                f"INSERT INTO {table} ({columns}) "
                f"SELECT %s, t.o, t.h, 'delivered', '', t.m, t.m, %s, NULL, %s "
                f"FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS t(o, h, m) "
                f"ON CONFLICT (mapping_id, object_id) DO UPDATE SET {update}",
                [mapping_id, now, now, *_state_arrays(states)],
            )
        else:
            # One statement over a JSON array of the rows (SQLite reads it in C), rather than one execution per
            # row. ("WHERE true": SQLite's grammar needs it between INSERT … SELECT and ON CONFLICT.)
            at = connection.ops.adapt_datetimefield_value(now)
            execute_bulk(
                cursor,
                f"INSERT INTO {table} ({columns}) "
                f"SELECT %s, j.value ->> 0, j.value ->> 1, 'delivered', '', j.value ->> 2, j.value ->> 2, %s, NULL, %s "
                f"FROM json_each(%s) AS j WHERE true "
                f"ON CONFLICT (mapping_id, object_id) DO UPDATE SET {update}",
                [
                    mapping_id,
                    at,
                    at,
                    orjson.dumps([(s.object_id, s.delivered_hash, s.message_id) for s in states]).decode(),
                ],
            )


_STATE_UPDATE_FIELDS: dict[str, list[str]] = {
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
_RUN_CHECKPOINT_FIELDS = ["pk", *RUN_COUNT_FIELDS, "watermark_from", "watermark_to", "heartbeat_at"]

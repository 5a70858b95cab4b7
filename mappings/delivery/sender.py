"""Sending batches to Segment (mappings/segment.py does the HTTP and the retries of one request).

Up to DELIVERY_MAX_IN_FLIGHT batches are in flight while the next one is built: Segment's (or the sandbox's) time
to answer overlaps with our reading and encoding and with each other. Outcomes are recorded oldest first, so
"everything below the first unconfirmed record" stays the watermark rule (see checkpoint.py).

One message per record in flight: a record read again during the run (its row changed after the run started)
replaces its waiting message, or waits until the batch carrying its previous message is settled, and is compared
with that message rather than with the delivered hash read before it was sent (engine.py). Batches retry
independently, so an older message's retry could otherwise land after the newer one while the state records the
newer hash, and the profile would keep the older values for good; this way the last message Segment applies for
a record is the one whose hash is recorded, with the record's latest values.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import connections as db_connections

from ..segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    BatchResult,
    SegmentClient,
    SegmentError,
    SegmentPermanentError,
    SegmentTransientError,
    close_session,
)
from .checkpoint import CheckpointMixin, _Delivered
from .messages import _Pending

# Room kept in every batch for the envelope: '{"batch":[' + '],"sentAt":"2026-01-01T00:00:00.000Z"}'.
BATCH_ENVELOPE_BYTES = 64


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


def _sender_thread_done(barrier: threading.Barrier) -> None:
    # A sender thread's pooled HTTP connections and any database connection opened there (by hooks) end
    # with the run instead of lingering until garbage collection.
    close_session()
    db_connections.close_all()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=10)


def _send_when_written(written: Future, send: Callable[[str, list[bytes]], BatchResult], *args: Any) -> BatchResult:
    written.result()  # raises (and nothing is sent) if the records could not be written down first
    return send(*args)


class _Abort(Exception):
    """A batch failed in a way that makes sending more pointless (Segment down, bad write key)."""


class SendingMixin(CheckpointMixin):
    """The engine's batching and sending: the buffer being filled, the batches in flight and what becomes of them
    (recorded through CheckpointMixin)."""

    client: SegmentClient
    write_key: str
    sender: _Sender
    max_in_flight: int
    buffer: list[_Pending]
    buffered: dict[int, _Pending]
    buffer_bytes: int
    inflight: deque[tuple[list[_Pending], Future]]
    inflight_items: dict[int, _Pending]
    # The ids of the `unconfirmed` list written last, and the write's future (None: no list written yet).
    covered: set[int]
    covered_by: Future | None

    def _bound_to_be_sent(self) -> list[int]:
        """Ids of rows not yet considered that will be sent (engine.py); none here."""
        return []

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

    def _flush(self) -> None:
        # Collect first, so that the checkpoint still sees these items in the buffer (unconfirmed).
        collected = False
        while len(self.inflight) >= self.max_in_flight:
            collected = self._collect_oldest(checkpoint=False)
        while self.inflight_items and any(object_id in self.inflight_items for object_id in self.buffered):
            collected = self._collect_oldest(checkpoint=False)
        items = self.buffer
        written = None
        if items and self.covered_by is not None and all(item.object_id in self.covered for item in items):
            # Already named by the `unconfirmed` list written last (which no write has replaced since): the send
            # waits for that write only, not for the checkpoint of the outcomes just collected.
            written = self.covered_by
            if collected:
                self._checkpoint_collected(items)
        elif items:
            # Before Segment can accept them: should the worker die before their outcome is recorded, the next run
            # knows which records to resend whatever their hash (see `forced`). Written with the outcomes just
            # collected, in one transaction (by the writer thread); the send waits for it. The list also names the
            # rows of this chunk still to be considered that will be sent whatever happens (never delivered), so
            # that the next batches of the chunk need no write of their own before they go.
            unconfirmed = set(self._unconfirmed(items, unwritten=False) or ())
            unconfirmed.update(self._bound_to_be_sent())
            listed = sorted(unconfirmed) or None
            written = self._checkpoint(unconfirmed=listed)
            self.covered, self.covered_by = unconfirmed, written
        elif collected:
            self._checkpoint()
        self.buffer, self.buffer_bytes, self.buffered = [], BATCH_ENVELOPE_BYTES, {}
        if written is not None:
            future = self.sender.submit(
                _send_when_written, written, self.client.send_batch, self.write_key, [i.payload for i in items]
            )
            self.inflight.append((items, future))
            for item in items:
                self.inflight_items[item.object_id] = item

    def _checkpoint_collected(self, items: list[_Pending]) -> None:
        """Write the outcomes just collected; the records they deliver leave the `unconfirmed` list in the same
        write (a kill after it must not resend them), the rest of the list stays (it names `items`, for one)."""
        delivered = {object_id for object_id, state in self.states.items() if state.__class__ is _Delivered}
        if not delivered & self.covered:
            self._checkpoint()
            return
        self.covered = (self.covered - delivered) | set(self._unconfirmed(items, unwritten=False) or ())
        self._checkpoint(unconfirmed=sorted(self.covered) or None)

    def _landed(self, items: list[_Pending]) -> None:
        """A batch is no longer in flight (its outcome is about to be recorded)."""
        self.inflight.popleft()
        for item in items:
            self.inflight_items.pop(item.object_id, None)

    def _collect_oldest(self, *, checkpoint: bool = True) -> bool:
        """Wait for the oldest batch in flight and record its outcome (then checkpoint, unless the caller does)."""
        items, future = self.inflight[0]
        try:
            result = future.result()
        except SegmentError as exc:
            self._landed(items)
            self._failed_batch(items, exc)
        else:
            self._landed(items)
            self._delivered(items, result.attempts)
        if checkpoint:
            self._checkpoint()
        return True

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

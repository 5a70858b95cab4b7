"""The engine's database work on threads of its own: the next chunk is read while this one is considered, and
each checkpoint is written while the next batch is built.

A delivery waits on three things that do not need its thread: the database reading the next chunk, the database
writing a checkpoint, and Segment answering a batch (sender.py). Each gets a thread, with its own database
connection, so that the engine's thread does nothing but build messages. Order and durability stay what they were:
- Writes (checkpoints, and the `unconfirmed` list written before each send) run one at a time in the order they
  were submitted, each in its own transaction, so the watermark only moves forward and never past a state that is
  not written. A send waits until the `unconfirmed` list naming its records is committed.
- After a failed write no later write runs (a later checkpoint could move the watermark past the states the failed
  one held), and the engine raises the error at its next write or at the end.
- A chunk read ahead carries the number of checkpoints committed before its query started, so the engine knows which
  of its own recent outcomes the chunk's delivered hashes already include (engine.py, `_forget_recent`).

Inside a transaction (a caller's `atomic` block, e.g. a test's), another connection would not see its rows: the
jobs then run at once, in the calling thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import connection
from django.db import connections as db_connections

from hubsync.querylog import forget_queries


class Background:
    """Jobs run one at a time, in submission order, on one thread with its own database connection (or at once in
    the caller's thread when `inline`). The first job that fails stops the others: later submissions raise its
    error."""

    def __init__(self, name: str) -> None:
        self.inline = connection.in_atomic_block
        self._pool = None if self.inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.failed: BaseException | None = None
        self.committed = 0  # checkpoints committed (engine.py): set by the checkpoint jobs, read by the reader

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        self.check()
        if self._pool is None:
            done: Future = Future()
            done.set_result(self._run(fn, args))
            return done
        return self._pool.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., Any], args: tuple) -> Any:
        if self.failed is not None:
            raise self.failed
        try:
            return fn(*args)
        except BaseException as exc:
            self.failed = exc
            raise
        finally:
            if self._pool is not None:
                forget_queries()  # this thread's connection (the caller's thread clears its own)

    def check(self) -> None:
        """Raise the error of a failed job, if any."""
        if self.failed is not None:
            raise self.failed

    def wait(self) -> None:
        """Until every job submitted so far has run; raises a failed job's error."""
        if self._pool is not None:
            with contextlib.suppress(BaseException):
                self._pool.submit(lambda: None).result()
        self.check()

    def close(self) -> None:
        """Run what is queued, close the thread's connection and the thread; later jobs run in the caller's thread."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.submit(db_connections.close_all)
            pool.shutdown(wait=True)

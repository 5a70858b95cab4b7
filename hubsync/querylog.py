"""Keep Django's per-connection query log from growing in long-running code."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.backends.utils import CursorWrapper


def forget_queries() -> None:
    """Empty the query log of every open connection, unless someone is capturing it.

    With DEBUG on (the embedded default) Django keeps every statement a connection runs, up to 9,000 of them, and
    the engines' page upserts are statements of hundreds of kilobytes: a sync's memory would grow with its data.
    Clearing per committed page / checkpoint (and around each task) keeps the log to one page's worth while
    leaving DEBUG's other uses alone; wrapping every cursor to log nothing would hide the queries from the debug
    toolbar and from tests. A connection with `force_debug_cursor` set is being captured on purpose
    (`CaptureQueriesContext`, `django_assert_num_queries`), which slices the log by position: left untouched.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.force_debug_cursor:
            conn.queries_log.clear()


def execute_bulk(cursor: CursorWrapper, sql: str, params: Sequence[Any] | None = None) -> None:
    """Execute a page-sized statement (a page's upsert, a batch of delivery states) without Django's debug copy.

    With DEBUG on, Django logs every statement with its parameters written into the text (on SQLite by asking
    SQLite to QUOTE each one): for a page of 100 records that is a string of ~1 MB built and dropped per page,
    in several threads at once, and the allocator's arenas keep what that fragments (a 100k first sync peaked
    ~20 MB higher with DEBUG on). The log still gets the statement, as its head and its size, so that it counts
    and shows in it as before. Django's execute wrappers still run."""
    db = cursor.db
    if not db.queries_logged:
        cursor.execute(sql, params)
        return
    start = time.monotonic()
    try:
        CursorWrapper.execute(cursor, sql, params)
    finally:
        size = f"{len(sql):,} characters, {len(params or ()):,} parameters"
        db.queries_log.append({"sql": f"{sql[:200]} … [{size}, not shown]", "time": f"{time.monotonic() - start:.3f}"})

"""Keep Django's per-connection query log from growing in long-running code."""

from __future__ import annotations

from django.db import connections


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

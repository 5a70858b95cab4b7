"""The prefetch thread: HubSpot's next page is awaited while the current one is written."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from django.db import connections

_DONE = object()


def prefetched(
    pages: Iterator, depth: int = 2, on_idle: Callable[[], None] | None = None, idle_seconds: float = 15
) -> Iterator:
    """Iterate `pages` in a background thread, at most `depth` pages ahead.

    HubSpot's answer for page n+1 is awaited while page n is written to the database: the request time and the
    write time overlap instead of adding up. Memory stays bounded (depth pages). The generator (and so the
    HubSpot client) is only ever used by that one thread; its errors are re-raised here, in order. When the
    consumer stops early (an error, a lost run), the thread is told to stop and is joined. `on_idle` is called
    every `idle_seconds` spent waiting for a page."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in pages:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))
        finally:
            if hasattr(pages, "close"):
                pages.close()
            connections.close_all()  # this thread's own connections (token refresh, estimates)

    thread = threading.Thread(target=produce, name="hubsync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item, exc = box.get(timeout=idle_seconds)
            except queue.Empty:
                if on_idle is not None:
                    on_idle()
                continue
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=60)

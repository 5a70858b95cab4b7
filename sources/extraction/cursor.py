"""A collection's read position (SourceCollection.cursor), typed; and `next_read`, which decides the next read.

The JSON stored in SourceCollection.cursor is a contract with the rows already in databases: `from_json` reads
every shape the engine ever wrote, and `to_json` writes exactly those shapes (keys left out stay left out).

- ``{}``: nothing read yet, or reset by a full sync (`Fresh`).
- ``{"mode": "idle", "modified_since_ms": W}``: between runs; the next run reads what changed since W (`Idle`).
- ``{"mode": "list", "after", "started_ms", "covered", "pending"}``: a full read through the list endpoint
  (`ListRead`).
- ``{"mode": "search", "window_start_ms", "window_end_ms", "last_id", "previous_ms", "ids_pass"}``: a search
  window read in id order (`SearchRead`).
- ``{"mode": "ids", "after", "covered", "pending", "watermark_ms"}``: the ids-only pass of a Full sync with a
  start date (`IdsPass`).
- ``{"mode": "partitioned", "started_ms", "check", "after"?}``: a read of every record split into id ranges read
  concurrently (`Partitioned`); each range's position is a sources.ReadPartition row. ``check``: the ranges run
  the deletion check (a full read; an incremental re-read does not). ``after``: whether the plan proved that
  HubSpot's list takes an id `after` (absent: not decided), so a resumed read need not prove it again.

``covered`` and ``pending`` are the deletion check's progress (sources.extraction.deletions). A cursor without
``covered`` cannot say what was checked, so its read does not check (the order broke, or an older checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Fresh:
    mode: ClassVar[str] = "fresh"

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Idle:
    modified_since_ms: int
    mode: ClassVar[str] = "idle"

    def to_json(self) -> dict[str, Any]:
        return {"mode": "idle", "modified_since_ms": self.modified_since_ms}


@dataclass(frozen=True)
class _Listing:
    """A read through the list endpoint's pages, with the deletion check's progress."""

    after: str | None = None  # HubSpot's opaque paging token; None: the first page
    covered: int | None = None  # the ids up to here were checked; None: this read does not check
    pending: tuple[int, ...] | None = None  # candidates not confirmed yet; None: the key is absent

    def _json(self, mode: str) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": mode, "after": self.after}
        if self.covered is not None:
            out["covered"] = self.covered
        if self.pending is not None:
            out["pending"] = list(self.pending)
        return out


@dataclass(frozen=True)
class ListRead(_Listing):
    started_ms: int = 0  # when the read began: the watermark once it ends
    mode: ClassVar[str] = "list"

    def to_json(self) -> dict[str, Any]:
        return {**self._json("list"), "started_ms": self.started_ms}

    def finished(self) -> Idle:
        return Idle(self.started_ms)


@dataclass(frozen=True)
class IdsPass(_Listing):
    watermark_ms: int = 0  # the search read's watermark, for when the pass ends
    mode: ClassVar[str] = "ids"

    def to_json(self) -> dict[str, Any]:
        return {**self._json("ids"), "watermark_ms": self.watermark_ms}

    def finished(self) -> Idle:
        return Idle(self.watermark_ms)


@dataclass(frozen=True)
class SearchRead:
    window_start_ms: int
    window_end_ms: int
    last_id: int = 0  # keyset paging: the next query asks for ids above this one
    previous_ms: int | None = None  # the watermark this window started from (an incremental read)
    ids_pass: bool = False  # a Full sync of a mirror that holds records: the ids-only pass follows
    mode: ClassVar[str] = "search"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": "search",
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "last_id": self.last_id,
        }
        if self.previous_ms is not None:
            out["previous_ms"] = self.previous_ms
        if self.ids_pass:
            out["ids_pass"] = True
        return out

    def finished(self, watermark: int) -> Idle | IdsPass:
        """The cursor once this read is complete: idle at the watermark, or the ids-only pass (which goes idle at
        that watermark when it ends)."""
        if self.ids_pass:
            return IdsPass(after=None, covered=0, pending=(), watermark_ms=watermark)
        return Idle(watermark)


@dataclass(frozen=True)
class Partitioned:
    started_ms: int  # when the read began: the watermark once its last partition is done
    check: bool = True  # the partitions run the deletion check
    after: bool | None = None  # the list's id `after`: proven honoured, not honoured, or not decided
    mode: ClassVar[str] = "partitioned"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": "partitioned", "started_ms": self.started_ms, "check": self.check}
        if self.after is not None:
            out["after"] = self.after
        return out

    def finished(self) -> Idle:
        return Idle(self.started_ms)


Read = ListRead | SearchRead | IdsPass | Partitioned
Cursor = Fresh | Idle | Read


def _ids(values: Any) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(i) for i in values)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def from_json(data: dict[str, Any] | None) -> Cursor:
    """The cursor of a stored row. A row in no known read mode goes on from its watermark, or starts afresh."""
    data = data or {}
    mode = data.get("mode")
    if mode == "list":
        return ListRead(
            after=data.get("after"),
            covered=_int(data.get("covered")),
            pending=_ids(data.get("pending")),
            started_ms=int(data["started_ms"]),
        )
    if mode == "ids":
        return IdsPass(
            after=data.get("after"),
            covered=_int(data.get("covered")),
            pending=_ids(data.get("pending")),
            watermark_ms=int(data["watermark_ms"]),
        )
    if mode == "partitioned":
        after = data.get("after")
        return Partitioned(
            started_ms=int(data["started_ms"]),
            check=bool(data.get("check", True)),
            after=None if after is None else bool(after),
        )
    if mode == "search":
        return SearchRead(
            window_start_ms=int(data["window_start_ms"]),
            window_end_ms=int(data["window_end_ms"]),
            last_id=int(data.get("last_id") or 0),
            previous_ms=_int(data.get("previous_ms")),
            ids_pass=bool(data.get("ids_pass")),
        )
    watermark = data.get("modified_since_ms")
    return Fresh() if watermark is None else Idle(int(watermark))


# What one account's budget reads per second (sources/ratelimit.py; REFERENCE): list/read/batch pages of 100 under
# 110 requests per 10 s, search pages of 200 under 5 per second.
LIST_RECORDS_PER_S = 1_100
SEARCH_RECORDS_PER_S = 1_000


def reread_is_cheaper(*, window_total: int, collection_total: int) -> bool:
    """Whether an incremental window of `window_total` changed records costs more by search + batch read (each
    changed id found by search, 200 a request under the 5/s search budget, then read by batch read) than a
    partitioned re-read of the whole collection through both budgets (`collection_total` records)."""
    if window_total <= 0 or collection_total <= 0:
        return False
    return window_total / SEARCH_RECORDS_PER_S > collection_total / (LIST_RECORDS_PER_S + SEARCH_RECORDS_PER_S)


def next_read(
    cursor: Cursor,
    *,
    now_ms: int,
    start_ms: int | None,
    overlap_ms: int,
    ids_pass: bool = False,
    partition: bool = False,
    reread: bool = False,
) -> Read:
    """The read a run makes from `cursor`.

    A read in progress (list, search, ids-only pass) goes on where it stopped. Idle: the records modified in
    [watermark - overlap, now] (the overlap covers HubSpot's search-index lag). Fresh: every record through the
    list endpoint, or, with a start date (`start_ms`), a search window [start date, now]; `ids_pass` (a Full sync
    of a mirror that holds records) makes that window go on to the ids-only pass, and the flag rides in the
    cursor so that a run resuming the read, whatever its trigger, does the pass too.

    `partition` (the collection is big enough to gain from it): a fresh read of every record is partitioned
    (with the deletion check). `reread` (an incremental window costs more than a re-read, `reread_is_cheaper`):
    an idle cursor re-reads the collection partitioned instead of reading its window."""
    if isinstance(cursor, ListRead | SearchRead | IdsPass | Partitioned):
        return cursor
    if isinstance(cursor, Idle) and reread:
        # A bulk change: re-reading everything through both budgets is cheaper than the window. Everything is
        # read, so the watermark moves to now; an incremental read makes no deletion check.
        return Partitioned(started_ms=now_ms, check=False)
    if isinstance(cursor, Idle):
        return SearchRead(
            window_start_ms=max(0, cursor.modified_since_ms - overlap_ms),
            window_end_ms=now_ms,
            previous_ms=cursor.modified_since_ms,
        )
    if start_ms is not None:
        return SearchRead(window_start_ms=start_ms, window_end_ms=now_ms, ids_pass=ids_pass)
    if partition:
        return Partitioned(started_ms=now_ms, check=True)
    return ListRead(after=None, covered=0, started_ms=now_ms)

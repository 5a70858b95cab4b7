"""The typed cursor and `next_read`, without a database: which read a run makes from each stored cursor, how a
finished read leaves the cursor, and that the stored JSON reads and writes back unchanged."""

from __future__ import annotations

import pytest

from sources.extraction.cursor import (
    Fresh,
    Idle,
    IdsPass,
    ListRead,
    Partitioned,
    SearchRead,
    from_json,
    next_read,
    reread_is_cheaper,
)

NOW = 1_700_000_000_000
START = 1_600_000_000_000
OVERLAP = 600_000

# (stored cursor, start date in ms or None, ids_pass asked, the read)
NEXT_READ = [
    # Nothing read yet: every record through the list, the deletion check from the first id.
    ({}, None, False, ListRead(after=None, covered=0, started_ms=NOW)),
    (None, None, False, ListRead(after=None, covered=0, started_ms=NOW)),
    ({}, None, True, ListRead(after=None, covered=0, started_ms=NOW)),  # no start date: no ids-only pass
    # A start date: a search window from it; a Full sync of a held mirror goes on to the ids-only pass.
    ({}, START, False, SearchRead(window_start_ms=START, window_end_ms=NOW)),
    ({}, START, True, SearchRead(window_start_ms=START, window_end_ms=NOW, ids_pass=True)),
    # Idle: the window since the watermark, less the overlap for HubSpot's index lag, never below 0.
    (
        {"mode": "idle", "modified_since_ms": 5_000_000},
        None,
        False,
        SearchRead(window_start_ms=5_000_000 - OVERLAP, window_end_ms=NOW, previous_ms=5_000_000),
    ),
    (
        {"mode": "idle", "modified_since_ms": 1000},
        START,
        True,
        SearchRead(window_start_ms=0, window_end_ms=NOW, previous_ms=1000),
    ),
    (
        {"mode": "idle", "modified_since_ms": NOW + 10**6},
        None,
        False,  # in the future: an empty window, kept
        SearchRead(window_start_ms=NOW + 10**6 - OVERLAP, window_end_ms=NOW, previous_ms=NOW + 10**6),
    ),
    # A watermark without a mode (or an unknown mode) goes on from the watermark.
    (
        {"modified_since_ms": 9_000_000},
        None,
        False,
        SearchRead(window_start_ms=9_000_000 - OVERLAP, window_end_ms=NOW, previous_ms=9_000_000),
    ),
    ({"mode": "idle"}, None, False, ListRead(after=None, covered=0, started_ms=NOW)),
    # A read in progress goes on where it stopped, whatever the start date or trigger.
    (
        {"mode": "list", "after": "abc", "started_ms": 7, "covered": 42, "pending": [40]},
        START,
        True,
        ListRead(after="abc", covered=42, pending=(40,), started_ms=7),
    ),
    ({"mode": "list", "after": "abc", "started_ms": 7}, None, False, ListRead(after="abc", started_ms=7)),
    (
        {"mode": "search", "window_start_ms": 1, "window_end_ms": 2, "last_id": 99, "ids_pass": True},
        None,
        False,
        SearchRead(window_start_ms=1, window_end_ms=2, last_id=99, ids_pass=True),
    ),
    (
        {"mode": "ids", "after": None, "covered": 0, "pending": [], "watermark_ms": 3},
        None,
        False,
        IdsPass(after=None, covered=0, pending=(), watermark_ms=3),
    ),
]


@pytest.mark.parametrize(("stored", "start_ms", "ids_pass", "expected"), NEXT_READ)
def test_next_read(stored, start_ms, ids_pass, expected):
    read = next_read(from_json(stored), now_ms=NOW, start_ms=start_ms, overlap_ms=OVERLAP, ids_pass=ids_pass)
    assert read == expected


# (the read, the watermark it ends at (search only), the cursor it leaves)
FINISHED = [
    (ListRead(after="x", covered=10, pending=(3,), started_ms=77), None, {"mode": "idle", "modified_since_ms": 77}),
    (IdsPass(after="y", covered=5, pending=(), watermark_ms=88), None, {"mode": "idle", "modified_since_ms": 88}),
    (SearchRead(window_start_ms=1, window_end_ms=2), 66, {"mode": "idle", "modified_since_ms": 66}),
    (Partitioned(started_ms=55, check=True), None, {"mode": "idle", "modified_since_ms": 55}),
    (Partitioned(started_ms=56, check=False), None, {"mode": "idle", "modified_since_ms": 56}),
    (
        SearchRead(window_start_ms=1, window_end_ms=2, ids_pass=True),
        66,
        {"mode": "ids", "after": None, "covered": 0, "pending": [], "watermark_ms": 66},
    ),
]


@pytest.mark.parametrize(("read", "watermark", "expected"), FINISHED)
def test_a_finished_read(read, watermark, expected):
    done = read.finished() if watermark is None else read.finished(watermark)
    assert done.to_json() == expected


# Every shape the engine writes reads back and writes out unchanged (keys left out stay left out).
STORED = [
    {},
    {"mode": "idle", "modified_since_ms": 123},
    {"mode": "list", "after": None, "started_ms": 1, "covered": 0},
    {"mode": "list", "after": "tok", "started_ms": 1, "covered": 500, "pending": [401, 499]},
    {"mode": "list", "after": "tok", "started_ms": 1, "covered": 500, "pending": []},
    {"mode": "list", "after": "tok", "started_ms": 1},  # the check stopped (order broke), or an older checkpoint
    {"mode": "search", "window_start_ms": 10, "window_end_ms": 20, "last_id": 0},
    {"mode": "search", "window_start_ms": 10, "window_end_ms": 20, "last_id": 31, "previous_ms": 15},
    {"mode": "search", "window_start_ms": 10, "window_end_ms": 20, "last_id": 0, "ids_pass": True},
    {"mode": "ids", "after": None, "covered": 0, "pending": [], "watermark_ms": 20},
    {"mode": "ids", "after": "tok", "covered": 900, "pending": [850], "watermark_ms": 20},
    {"mode": "partitioned", "started_ms": 20, "check": True},
    {"mode": "partitioned", "started_ms": 20, "check": False},
    {"mode": "partitioned", "started_ms": 20, "check": True, "after": True},  # the plan proved the list's `after`
    {"mode": "partitioned", "started_ms": 20, "check": True, "after": False},
]


@pytest.mark.parametrize("stored", STORED)
def test_stored_json_round_trips(stored):
    assert from_json(stored).to_json() == stored


def test_cursors_are_immutable_values():
    cursor = from_json({"mode": "list", "after": "tok", "started_ms": 1, "covered": 5, "pending": [2]})
    assert cursor == ListRead(after="tok", covered=5, pending=(2,), started_ms=1)
    with pytest.raises(AttributeError):
        cursor.after = "other"  # type: ignore[misc]
    assert from_json(None) == Fresh() and from_json({"mode": "idle", "modified_since_ms": "7"}) == Idle(7)


# (stored cursor, start date, partition, reread, the read)
PARTITIONED = [
    # A fresh read of every record of a big collection is partitioned, with the deletion check.
    ({}, None, True, False, Partitioned(started_ms=NOW, check=True)),
    # With a start date it stays a search window (the partitions cover every record, not a window).
    ({}, START, True, False, SearchRead(window_start_ms=START, window_end_ms=NOW)),
    # An idle cursor whose window costs more than a re-read re-reads everything, without the deletion check.
    ({"mode": "idle", "modified_since_ms": 5}, None, False, True, Partitioned(started_ms=NOW, check=False)),
    ({"mode": "idle", "modified_since_ms": 5}, START, True, True, Partitioned(started_ms=NOW, check=False)),
    # A partitioned read in progress goes on (its rows hold each range's position), whatever is asked.
    ({"mode": "partitioned", "started_ms": 9, "check": True}, START, False, True, Partitioned(9, True)),
    ({"mode": "partitioned", "started_ms": 9}, None, False, False, Partitioned(9, True)),  # "check" absent: on
    # An old-style list read in progress keeps working as it does.
    ({"mode": "list", "after": "t", "started_ms": 7}, None, True, True, ListRead(after="t", started_ms=7)),
]


@pytest.mark.parametrize(("stored", "start_ms", "partition", "reread", "expected"), PARTITIONED)
def test_next_read_partitioned(stored, start_ms, partition, reread, expected):
    read = next_read(
        from_json(stored), now_ms=NOW, start_ms=start_ms, overlap_ms=OVERLAP, partition=partition, reread=reread
    )
    assert read == expected


@pytest.mark.parametrize(
    ("window", "total", "cheaper"),
    [
        (0, 100_000, False),
        (1_000, 100_000, False),  # 1 s by search against ~48 s of re-read
        (40_000, 100_000, False),  # 40 s against 47.6 s
        (50_000, 100_000, True),  # 50 s against 47.6 s
        (100_000, 100_000, True),
        (10, 0, False),
    ],
)
def test_reread_is_cheaper_compares_the_two_costs(window, total, cheaper):
    assert reread_is_cheaper(window_total=window, collection_total=total) is cheaper

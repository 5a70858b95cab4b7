"""Planning a partitioned read (sources.extraction.plan), without HubSpot: the counting is a function over a known
id list, so the balance of the ranges can be measured on uneven id spaces."""

from __future__ import annotations

import bisect
import random

import pytest

from sources.extraction.plan import LIST, SEARCH, Range, assign, from_quantiles, split


def counter(ids: list[int]):
    ids = sorted(ids)
    calls = {"n": 0}

    def count(low: int, high: int) -> tuple[int, int | None]:
        calls["n"] += 1
        start, end = bisect.bisect_right(ids, low), bisect.bisect_right(ids, high)
        return end - start, (ids[start] if end > start else None)

    return count, calls


def covers_everything(ranges: list[Range]) -> None:
    assert ranges[0].low == 0 and ranges[-1].high is None
    for before, after in zip(ranges, ranges[1:], strict=False):
        assert before.high == after.low  # contiguous: (low, high] then (high, ...]
        assert before.low < before.high


def actual(ranges: list[Range], ids: list[int]) -> list[int]:
    ids = sorted(ids)
    return [
        bisect.bisect_right(ids, r.high if r.high is not None else 10**19) - bisect.bisect_right(ids, r.low)
        for r in ranges
    ]


def uneven_ids(seed: int = 3) -> list[int]:
    """Ids of 1 to 11 digits with big gaps: a few small old ones, a dense import, sparse later ones, and a second
    dense block at 11 digits."""
    rng = random.Random(seed)
    ids = list(range(1, 60, 3))
    ids += list(range(1_000_001, 1_000_001 + 13 * 9_000, 13))
    ids += sorted(rng.sample(range(10**7, 10**9), 3_000))
    ids += list(range(10_000_000_001, 10_000_000_001 + 101 * 30_000, 101))
    return ids


def test_an_uneven_id_space_still_balances():
    ids = uneven_ids()
    count, calls = counter(ids)
    ranges = split(
        count, first_id=min(ids), last_id=max(ids), total=len(ids), target=4_000, max_parts=16, max_counts=12
    )
    covers_everything(ranges)
    sizes = actual(ranges, ids)
    assert sum(sizes) == len(ids)
    assert calls["n"] <= 12  # the planning requests are capped
    assert 8 <= len(ranges) <= 16
    # Balanced: no range holds more than a quarter of the records (one range per digit length would hold 70%).
    assert max(sizes) <= len(ids) / 4, sizes
    # The estimates are close to what the ranges hold.
    assert sum(r.estimate for r in ranges) == len(ids)


def test_a_dense_id_space_is_cut_evenly():
    ids = list(range(50_000_001, 50_000_001 + 17 * 100_000, 17))
    count, _calls = counter(ids)
    ranges = split(count, first_id=ids[0], last_id=ids[-1], total=len(ids), target=4_000, max_parts=32, max_counts=12)
    covers_everything(ranges)
    sizes = actual(ranges, ids)
    assert len(ranges) == 25 or len(ranges) >= 20
    assert max(sizes) <= 2 * 100_000 / len(ranges), sizes


def test_ids_compare_as_numbers_not_text():
    # As text "9" > "10000000000"; as numbers the 1-digit ids come first and sit in the first range.
    ids = [*range(1, 10), *range(10_000_000_000, 10_000_000_000 + 2_000)]
    count, _ = counter(ids)
    ranges = split(count, first_id=1, last_id=max(ids), total=len(ids), target=500, max_parts=8, max_counts=8)
    covers_everything(ranges)
    assert sum(actual(ranges, ids)) == len(ids)
    assert actual(ranges, ids)[0] >= 9  # the small ids are not lost between ranges


@pytest.mark.parametrize("total", [0, 1])
def test_tiny_or_empty_collections_are_one_range(total):
    count, calls = counter(list(range(1, total + 1)))
    ranges = split(count, first_id=1, last_id=max(total, 1), total=total, target=100, max_parts=8, max_counts=8)
    assert ranges == [Range(0, None, total)]
    assert calls["n"] == 0


def test_quantiles_of_the_mirror_make_a_plan_without_requests():
    ranges = from_quantiles([300, 100, 200], total=400)
    assert [(r.low, r.high) for r in ranges] == [(0, 100), (100, 200), (200, 300), (300, None)]
    assert from_quantiles([], total=5) == [Range(0, None, 5)]


def test_both_budgets_are_used_in_proportion():
    ranges = [Range(i * 100, (i + 1) * 100, 1_000) for i in range(21)]
    vias = assign(ranges, search_carries_all=True)
    # ~1,100 records/s through the list, ~1,000 through search: 11 ranges to the list, 10 to search.
    assert vias.count(LIST) == 11 and vias.count(SEARCH) == 10
    # A schema too wide for a search body would need batch reads (list budget) after every search page.
    assert assign(ranges, search_carries_all=False) == [LIST] * 21


def test_an_even_id_space_is_not_counted_further():
    # Counted twice in a row as its id span predicts (even at two scales): cut by id span, three counts in all
    # (every count is 0.2 s of the search budget, and the list waits for the plan).
    ids = list(range(50_000_001, 50_000_001 + 17 * 100_000, 17))
    count, calls = counter(ids)
    ranges = split(count, first_id=ids[0], last_id=ids[-1], total=len(ids), target=4_000, max_parts=32, max_counts=12)
    assert calls["n"] == 3
    sizes = actual(ranges, ids)
    assert max(sizes) <= 1.2 * min(sizes), sizes


@pytest.mark.parametrize("seed", [3, 5, 11])
def test_counts_go_out_in_rounds_and_still_balance(seed):
    ids = uneven_ids(seed)
    count, calls = counter(ids)
    rounds: list[int] = []

    def count_many(pairs):
        rounds.append(len(pairs))
        return [count(low, high) for low, high in pairs]

    ranges = split(
        count,
        first_id=min(ids),
        last_id=max(ids),
        total=len(ids),
        target=4_000,
        max_parts=16,
        max_counts=12,
        count_many=count_many,
        parallel=5,
    )
    covers_everything(ranges)
    sizes = actual(ranges, ids)
    assert sum(sizes) == len(ids) and sum(r.estimate for r in ranges) == len(ids)
    assert calls["n"] == sum(rounds) <= 12 and max(rounds) <= 5
    assert len(rounds) < calls["n"]  # several counts per round
    assert max(sizes) <= len(ids) / 4, sizes


def test_an_id_space_even_at_one_scale_only_is_counted_on():
    # Two dense blocks placed so that the first cut matches the id span (half the ids above the middle), but
    # each half is one block and a gap: the halves are counted again, and the gaps found.
    ids = [*range(1, 20_001, 2), *range(60_001, 80_001, 2)]
    count, calls = counter(ids)
    ranges = split(count, first_id=1, last_id=max(ids), total=len(ids), target=2_000, max_parts=16, max_counts=12)
    sizes = actual(ranges, ids)
    assert calls["n"] > 3
    assert max(sizes) <= 2.5 * len(ids) / len(ranges), sizes

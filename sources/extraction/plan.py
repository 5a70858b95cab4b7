"""Planning a partitioned read: split a collection's id space into ranges of about equal record counts, and choose
for each range the budget it is read through (the list endpoint or search).

Pure functions: the counting is a callable (one HubSpot search request each, `Partitions.count_range`), so the
splitting is tested without HubSpot. Ids are compared as numbers always.

HubSpot ids are not dense: a portal's ids may run from 1 digit to 11, with big gaps where imports or other object
types took the numbers. A range spanning orders of magnitude is cut at its geometric middle (sqrt(lo * hi)), a
range within one order of magnitude at its arithmetic middle; each cut costs one count, the largest range is cut
first, and the counts are capped (they spend the search budget the read itself wants, and the list waits for the
plan). A range whose count matched its id span twice in a row (its density is even at two scales) is not counted
further. What is still too large when the counts are spent, or even, is cut into equal id spans (a fair guess
inside a range whose density is roughly even). The counts of one round (the largest ranges, each cut in two) go
out together.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

from .cursor import LIST_RECORDS_PER_S, SEARCH_RECORDS_PER_S

LIST = "list"
SEARCH = "search"

# Ranges whose ends differ by more than this factor are cut geometrically.
GEOMETRIC_RATIO = 8
# A count within this share of a range's records of what its id span predicts is "even" evidence; two levels of it
# and the range is cut by id span without more counts.
EVEN_TOLERANCE = 0.05
EVEN_LEVELS = 2


@dataclass(frozen=True)
class Range:
    low: int  # exclusive
    high: int | None  # inclusive; None: no upper end
    estimate: int


# (records with an id in (low, high], the smallest of those ids or None): one search request sorted by id, limit 1.
Count = Callable[[int, int], tuple[int, int | None]]
# The same for several ranges at once (concurrent requests), answers in the order asked.
CountMany = Callable[[list[tuple[int, int]]], list[tuple[int, int | None]]]


def split(
    count: Count,
    *,
    first_id: int,
    last_id: int,
    total: int,
    target: int,
    max_parts: int,
    max_counts: int,
    count_many: CountMany | None = None,
    parallel: int = 1,
    on_cut: Callable[[int, int | None], None] | None = None,
) -> list[Range]:
    """Ranges covering (0, infinity) whose estimates add up to `total`: the records lie in [first_id, last_id]
    (HubSpot's smallest and largest ids), about `target` records per range, at most `max_parts` ranges, at most
    `max_counts` calls of `count` (in rounds of up to `parallel` through `count_many` when given). `on_cut(cut,
    first)` hears of every cut with records above it (and the smallest of their ids) as soon as its count is in
    (reading can start there).

    Each count asks for the upper half of a range, sorted by id: its total, and its smallest id, so every range
    knows where its records start and the next cut falls among them, not in the empty gap below them."""
    if total <= 0 or last_id < first_id:
        return [Range(0, None, max(total, 0))]
    many: CountMany = count_many or (lambda pairs: [count(low, high) for low, high in pairs])
    wanted = max(1, min(max_parts, math.ceil(total / max(target, 1))))
    # (-estimate, low, high, smallest id, levels of even evidence): the largest range first.
    heap: list[tuple[int, int, int, int, int]] = [(-total, first_id - 1, last_id, first_id, 0)]
    final: list[tuple[int, int, int, int, int]] = []
    counts = 0
    while heap and len(heap) + len(final) < wanted and counts < max_counts:
        # One round: the largest ranges, each cut in two, up to `parallel` counts, sent together.
        batch: list[tuple[tuple[int, int, int, int, int], int]] = []
        while (
            heap
            and len(batch) < max(1, min(parallel, max_counts - counts))
            and len(heap) + len(final) + 2 * len(batch) < wanted
        ):
            entry = heapq.heappop(heap)
            size, high, first, even = -entry[0], entry[2], entry[3], entry[4]
            middle = _cut(first - 1, high)
            if size <= target or even >= EVEN_LEVELS or not first - 1 < middle < high:
                final.append((size, entry[1], high, first, even))
                continue
            batch.append((entry, middle))
        if not batch:
            continue
        answers = many([(middle, entry[2]) for entry, middle in batch])
        counts += len(batch)
        for (entry, middle), (upper, upper_first) in zip(batch, answers, strict=True):
            _push_halves(heap, final, entry, middle, upper, upper_first)
            if on_cut is not None and upper > 0:
                on_cut(middle, upper_first)
    ranges = final + [(-n, low, high, first, even) for n, low, high, first, even in heap]
    pieces: list[tuple[int, int, int]] = []
    room = max(0, wanted - sum(1 for r in ranges if r[0] > 0))
    for size, low, high, first, _even in sorted(ranges, key=lambda r: -r[0]):
        # Counts spent (or the range is even): cut what is still too large into equal id spans from its smallest
        # id (the largest first, within max_parts).
        start = max(low, first - 1)
        n = min(room + 1, max(1, round(size / max(target, 1))), max(1, high - start))
        room -= n - 1
        step = (high - start) / n
        bounds = [low] + [start + round(step * i) for i in range(1, n)] + [high]
        share = [size // n + (1 if i < size % n else 0) for i in range(n)]
        pieces += [(share[i], bounds[i], bounds[i + 1]) for i in range(n) if bounds[i] < bounds[i + 1]]
    return _cover(sorted(pieces, key=lambda p: p[1]), target)


def _cut(low: int, high: int) -> int:
    if high > GEOMETRIC_RATIO * max(low, 1):
        return int(math.isqrt(max(low, 1) * high))
    return (low + high) // 2


def _push_halves(
    heap: list[tuple[int, int, int, int, int]],
    final: list[tuple[int, int, int, int, int]],
    entry: tuple[int, int, int, int, int],
    middle: int,
    upper: int,
    upper_first: int | None,
) -> None:
    """The two halves of a counted range: to the heap while they hold records (final when empty), each with one
    more level of even evidence when the count matched what the halves' id spans predict (else none)."""
    size, low, high, first, even = -entry[0], entry[1], entry[2], entry[3], entry[4]
    upper = max(0, min(size, upper))
    lower = size - upper
    span = max(1, high - (first - 1))
    predicted = size * (high - middle) / span
    # Even evidence only from an arithmetic cut (a geometric one leaves nearly the whole span above the cut, which
    # "predicts" nearly every record there whatever the density), and only when the upper half's records start
    # at its bottom (no gap there larger than a few of its own average spacings).
    arithmetic = high <= GEOMETRIC_RATIO * max(first - 1, 1)
    no_gap = upper_first is not None and upper_first - middle <= 4 * (high - middle) / max(upper, 1)
    level = even + 1 if arithmetic and no_gap and abs(upper - predicted) <= EVEN_TOLERANCE * size else 0
    if lower:
        heapq.heappush(heap, (-lower, low, middle, first, level))
    else:
        final.append((0, low, middle, first, 0))
    if upper:
        heapq.heappush(heap, (-upper, middle, high, upper_first if upper_first is not None else middle + 1, level))
    else:
        final.append((0, middle, high, middle + 1, 0))


def _cover(pieces: list[tuple[int, int, int]], target: int) -> list[Range]:
    """The pieces (sorted, contiguous) as ranges from 0 to no upper end, empty and tiny ones joined to their
    neighbour (a range costs at least one request and one claim)."""
    joined: list[list[int]] = []
    for size, low, high in pieces:
        if joined and (size < target // 4 or joined[-1][0] < target // 4):
            joined[-1][0] += size
            joined[-1][2] = high
        else:
            joined.append([size, low, high])
    out = [Range(low, high, size) for size, low, high in joined]
    if not out:
        return [Range(0, None, 0)]
    out[0] = Range(0, out[0].high, out[0].estimate)
    out[-1] = Range(out[-1].low, None, out[-1].estimate)
    return out


def from_quantiles(ids: list[int], *, total: int) -> list[Range]:
    """Ranges cut at the mirror's own id quantiles (a Full sync: one SQL query, no request): `ids` are every
    k-th id of the mirror in ascending order, each range holding about total / (len(ids) + 1) records."""
    bounds = sorted({int(i) for i in ids if int(i) > 0})
    if not bounds:
        return [Range(0, None, total)]
    share = max(1, total // (len(bounds) + 1))
    lows = [0, *bounds]
    highs: list[int | None] = [*bounds, None]
    return [Range(low, high, share) for low, high in zip(lows, highs, strict=True)]


def assign(ranges: list[Range], *, search_carries_all: bool) -> list[str]:
    """The budget each range is read through: the largest ranges first, each to the budget that would finish its
    share soonest (list ~1,100 records/s, search ~1,000 records/s), so both run out together. When the
    properties do not fit in a search body, search pages need batch reads for the rest, which spend the list
    budget: search then adds nothing, and every range goes through the list."""
    if not search_carries_all:
        return [LIST] * len(ranges)
    load = {LIST: 0.0, SEARCH: 0.0}
    rate = {LIST: float(LIST_RECORDS_PER_S), SEARCH: float(SEARCH_RECORDS_PER_S)}
    via = [LIST] * len(ranges)
    for index in sorted(range(len(ranges)), key=lambda i: -ranges[i].estimate):
        size = max(ranges[index].estimate, 1)
        best = min((LIST, SEARCH), key=lambda v: (load[v] + size) / rate[v])
        via[index] = best
        load[best] += size
    return via

"""What a run really asks of HubSpot's budget: the peak number of requests in any rolling window, the 429s met,
the requests in flight.

HubSpot counts an OAuth app's list/read/batch requests per account in a *rolling* 10-second window (110) and its
search requests per second (5). A run's share of that budget is therefore its peak over any such window, not its
average: a run that spends 20 requests in 2 s used 20 of 110, whatever its length.

One `RequestMeter` per run. Every `HubSpotClient` of the run notes its requests in it (several clients in several
threads may share one meter, so everything here is under one lock); the engine copies `snapshot()` onto the
SyncRun at each heartbeat and at the end, after sampling the shared limiter's windows (`account_used`), which
hold the requests of every worker on the account: the peaks then count the run's helpers too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..ratelimit import GENERAL, SEARCH, Budget

# The windows HubSpot counts in (shared/REFERENCE.md): list/read/batch per 10 s, search per second.
WINDOWS_MS = {GENERAL: 10_000, SEARCH: 1_000}


@dataclass(frozen=True)
class MeterReading:
    peak_requests_10s: int  # list/read/batch requests in the busiest rolling 10 s
    peak_search_1s: int  # search requests in the busiest rolling second
    rate_limited: int  # 429 answers met
    in_flight: int  # requests sent and not answered yet, now
    peak_in_flight: int
    budget_10s: int | None  # the account's list/read/batch budget per 10 s (None: no limit configured)
    search_budget_1s: int | None  # and its search budget per second


def per_window(budget: Budget | None, window_ms: int) -> int | None:
    """A budget expressed over `window_ms` (HubSpot may announce another interval); None when unlimited."""
    if budget is None or budget.limit <= 0 or budget.window_ms <= 0:
        return None
    return max(1, budget.limit * window_ms // budget.window_ms)


class RequestMeter:
    """Thread-safe: `started()` / `finished()` around each HTTP request, `rate_limited()` for each 429."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._born = clock()
        self._lock = threading.Lock()
        self._stamps: dict[str, deque[float]] = {kind: deque() for kind in WINDOWS_MS}
        self._peaks: dict[str, int] = dict.fromkeys(WINDOWS_MS, 0)
        self._budgets: dict[str, Budget] = {}
        self._limited = 0
        self._in_flight = 0
        self._peak_in_flight = 0

    def started(self, kind: str = GENERAL) -> None:
        """A request of `kind` leaves now (after the limiter let it go)."""
        window = WINDOWS_MS.get(kind, WINDOWS_MS[GENERAL]) / 1000.0
        key = kind if kind in WINDOWS_MS else GENERAL
        with self._lock:
            now = self._clock()
            stamps = self._stamps[key]
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            stamps.append(now)
            if len(stamps) > self._peaks[key]:
                self._peaks[key] = len(stamps)
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def finished(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def rate_limited(self) -> None:
        with self._lock:
            self._limited += 1

    def age_ms(self) -> int:
        """Milliseconds since the meter (its run) began: the part of a window ending now that is the run's."""
        return int((self._clock() - self._born) * 1000)

    def account_used(self, kind: str, used: int) -> None:
        """The account's requests of `kind` in the window ending now, as the shared limiter counts them: every
        worker's (a run's helpers send from other processes, whose requests never pass this meter). `kind`: one
        of WINDOWS_MS."""
        with self._lock:
            self._peaks[kind] = max(self._peaks[kind], used)

    def budget_seen(self, kind: str, budget: Budget) -> None:
        """The limiter's budget for the account (configured, or stricter as learned from HubSpot's headers)."""
        with self._lock:
            self._budgets[kind] = budget

    def snapshot(self) -> MeterReading:
        with self._lock:
            return MeterReading(
                peak_requests_10s=self._peaks[GENERAL],
                peak_search_1s=self._peaks[SEARCH],
                rate_limited=self._limited,
                in_flight=self._in_flight,
                peak_in_flight=self._peak_in_flight,
                budget_10s=per_window(self._budgets.get(GENERAL), WINDOWS_MS[GENERAL]),
                search_budget_1s=per_window(self._budgets.get(SEARCH), WINDOWS_MS[SEARCH]),
            )

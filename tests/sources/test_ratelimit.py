"""The shared rate limiter, in-process and against real Redis: budgets kept across threads and instances."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from django.test import override_settings

from sources import ratelimit
from sources.ratelimit import (
    GENERAL,
    SEARCH,
    Budget,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    get_rate_limiter,
)

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set")


def max_in_window(stamps: list[float], window: float) -> int:
    """The most acquisitions that fall inside any window of `window` seconds."""
    stamps = sorted(stamps)
    best = 0
    j = 0
    for i in range(len(stamps)):
        while stamps[i] - stamps[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def hammer(limiters: list[RateLimiter], account: str, per_thread: int, kind: str = GENERAL) -> list[float]:
    """Acquire from several threads (one limiter each: separate 'workers') and return when each slot was got."""
    stamps: list[float] = []
    lock = threading.Lock()

    def work(limiter: RateLimiter) -> None:
        for _ in range(per_thread):
            limiter.acquire(account, kind)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return stamps


def redis_limiter(budgets: dict[str, Budget]) -> RedisRateLimiter:
    import redis

    # A client (and pool) of its own: behaves like another worker process.
    return RedisRateLimiter(redis.Redis.from_url(REDIS_URL), budgets)


BUDGETS = {GENERAL: Budget(10, 1000), SEARCH: Budget(3, 500)}


def test_local_limiter_keeps_the_budget_across_threads():
    limiter = LocalRateLimiter(BUDGETS)
    account = uuid.uuid4().hex
    started = time.monotonic()
    stamps = hammer([limiter, limiter, limiter], account, per_thread=10)
    elapsed = time.monotonic() - started
    assert len(stamps) == 30
    assert max_in_window(stamps, 1.0 - 0.02) <= 10
    # 30 slots at 10 per second: the third ten cannot start before 2 s.
    assert elapsed >= 1.9


def test_local_limiter_first_burst_is_not_delayed():
    limiter = LocalRateLimiter(BUDGETS)
    started = time.monotonic()
    for _ in range(10):
        limiter.acquire("burst")
    assert time.monotonic() - started < 0.1


@needs_redis
def test_redis_limiter_shared_by_two_instances_keeps_the_budget():
    first, second = redis_limiter(BUDGETS), redis_limiter(BUDGETS)
    account = uuid.uuid4().hex
    started = time.monotonic()
    stamps = hammer([first, second, first, second], account, per_thread=6)
    elapsed = time.monotonic() - started
    assert len(stamps) == 24
    assert max_in_window(stamps, 1.0 - 0.02) <= 10
    assert elapsed >= 1.9
    first.reset(account)


@needs_redis
def test_redis_limiter_shared_across_processes():
    """Two OS processes (what workers are) share one budget through Redis."""
    import multiprocessing

    account = uuid.uuid4().hex
    # spawn, not fork: the test process has threads (live servers, Playwright) whose locks a fork would copy held.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(account, 8, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    stamps: list[float] = []
    for _ in procs:
        stamps.extend(queue.get(timeout=30))
    for proc in procs:
        proc.join(timeout=10)
    assert len(stamps) == 16
    # time.time() here: monotonic clocks are not comparable across processes.
    assert max_in_window(stamps, 1.0 - 0.02) <= 10


def _child(account: str, count: int, queue) -> None:
    limiter = redis_limiter(BUDGETS)
    out = []
    for _ in range(count):
        limiter.acquire(account)
        out.append(time.time())
    queue.put(out)


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_search_budget_is_separate(backend):
    limiter = LocalRateLimiter(BUDGETS) if backend == "local" else redis_limiter(BUDGETS)
    account = uuid.uuid4().hex
    for _ in range(10):
        limiter.acquire(account, GENERAL)
    # General budget spent, search still free; then search has its own, smaller, budget.
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire(account, SEARCH)
    assert time.monotonic() - started < 0.1
    stamps = hammer([limiter], account, per_thread=6, kind=SEARCH)
    assert max_in_window(stamps, 0.5 - 0.02) <= 3
    limiter.reset(account)


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_accounts_do_not_share_budgets(backend):
    limiter = LocalRateLimiter(BUDGETS) if backend == "local" else redis_limiter(BUDGETS)
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    for _ in range(10):
        limiter.acquire(a)
    started = time.monotonic()
    for _ in range(10):
        limiter.acquire(b)
    assert time.monotonic() - started < 0.1
    with pytest.raises(TimeoutError):
        limiter.acquire(a, timeout=0.05)


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_penalize_pauses_every_instance(backend):
    if backend == "local":
        first = second = LocalRateLimiter(BUDGETS)
    else:
        first, second = redis_limiter(BUDGETS), redis_limiter(BUDGETS)
    account = uuid.uuid4().hex
    first.penalize(account, 0.4)
    started = time.monotonic()
    second.acquire(account)
    assert 0.3 <= time.monotonic() - started < 1.0


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_low_remaining_header_slows_down(backend):
    limiter = LocalRateLimiter(BUDGETS) if backend == "local" else redis_limiter(BUDGETS)
    account = uuid.uuid4().hex
    headers = {
        "X-HubSpot-RateLimit-Max": "10",
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "1000",
    }
    limiter.observe(account, headers)
    started = time.monotonic()
    limiter.acquire(account)
    # One slot frees every 100 ms at 10/s; with 0 left (threshold 2) we wait 3 slots.
    assert time.monotonic() - started >= 0.25


def test_plenty_remaining_does_not_slow_down():
    limiter = LocalRateLimiter(BUDGETS)
    headers = {
        "X-HubSpot-RateLimit-Max": "10",
        "X-HubSpot-RateLimit-Remaining": "8",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "1000",
    }
    limiter.observe("acct", headers)
    started = time.monotonic()
    limiter.acquire("acct")
    assert time.monotonic() - started < 0.05


def test_smaller_announced_budget_is_adopted_larger_is_not():
    limiter = LocalRateLimiter(BUDGETS)
    limiter.observe(
        "acct",
        {
            "X-HubSpot-RateLimit-Max": "4",
            "X-HubSpot-RateLimit-Remaining": "4",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "1000",
        },
    )
    assert limiter.budget("acct") == Budget(4, 1000)
    limiter.observe(
        "acct",
        {
            "X-HubSpot-RateLimit-Max": "500",
            "X-HubSpot-RateLimit-Remaining": "500",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "1000",
        },
    )
    assert limiter.budget("acct") == BUDGETS[GENERAL]
    limiter.observe("acct", {})  # no headers (search): nothing changes
    assert limiter.budget("acct") == BUDGETS[GENERAL]


def test_zero_limit_means_unlimited():
    limiter = LocalRateLimiter({GENERAL: Budget(0, 1000), SEARCH: Budget(0, 1000)})
    started = time.monotonic()
    for _ in range(1000):
        limiter.acquire("acct")
    assert time.monotonic() - started < 0.5


def test_redis_outage_falls_back_to_the_local_window():
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    limiter = RedisRateLimiter(dead, BUDGETS)
    account = uuid.uuid4().hex
    try:
        for _ in range(10):
            limiter.acquire(account)
        with pytest.raises(TimeoutError):
            limiter.acquire(account, timeout=0.05)
    finally:
        ratelimit._redis_down_until = 0.0


def test_get_rate_limiter_follows_settings():
    with override_settings(REDIS_URL="", HUBSPOT_RATE_LIMITER="auto"):
        assert isinstance(get_rate_limiter(), LocalRateLimiter)
        assert get_rate_limiter() is get_rate_limiter()  # one per process: threads share it
    with override_settings(REDIS_URL="redis://127.0.0.1:6379/15", HUBSPOT_RATE_LIMITER="auto"):
        assert isinstance(get_rate_limiter(), RedisRateLimiter)
    with override_settings(REDIS_URL="redis://127.0.0.1:6379/15", HUBSPOT_RATE_LIMITER="local"):
        assert isinstance(get_rate_limiter(), LocalRateLimiter)
    with override_settings(HUBSPOT_RATE_LIMIT=7, HUBSPOT_RATE_LIMIT_INTERVAL_MS=700, REDIS_URL=""):
        assert get_rate_limiter().budget("x") == Budget(7, 700)


def test_configured_budgets_hold_each_slot_a_guard_beyond_the_window(settings):
    """HubSpot counts a request when it arrives, a little after its slot was taken: with the configured budget a
    slot is held HUBSPOT_RATE_LIMIT_GUARD_MS longer, so no window of (window + guard) ever holds more than the
    limit, whatever the arrival jitter up to the guard."""
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 4
    settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 200
    settings.HUBSPOT_RATE_LIMIT_GUARD_MS = 100
    limiter = LocalRateLimiter()  # budgets from the settings
    stamps = hammer([limiter, limiter, limiter], f"guard-{uuid.uuid4().hex}", 4, kind=SEARCH)
    assert len(stamps) == 12
    assert max_in_window(stamps, 0.29) <= 4  # 200 ms window + 100 ms guard (less a little for timer slack)
    # Budgets given explicitly are exact (no guard): 4 per 200 ms.
    exact = LocalRateLimiter({GENERAL: Budget(4, 200), SEARCH: Budget(4, 200)})
    started = time.monotonic()
    for _ in range(8):
        exact.acquire("exact", SEARCH)
    assert time.monotonic() - started < 0.29


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_low_remaining_from_our_own_requests_does_not_slow_down(backend):
    """Several requests in flight fill the budget on purpose: HubSpot's Remaining then runs low because of this
    limiter's own slots, which is no reason to pause (only someone else spending the account's budget is)."""
    limiter = LocalRateLimiter(BUDGETS) if backend == "local" else redis_limiter(BUDGETS)
    account = uuid.uuid4().hex
    for _ in range(9):
        limiter.acquire(account)
    ours = {
        "X-HubSpot-RateLimit-Max": "10",
        "X-HubSpot-RateLimit-Remaining": "1",  # 9 spent: ours
        "X-HubSpot-RateLimit-Interval-Milliseconds": "1000",
    }
    limiter.observe(account, ours)
    started = time.monotonic()
    limiter.acquire(account)  # the 10th slot of the window: free, no pause
    assert time.monotonic() - started < 0.05


def guarded_limiters(backend: str) -> tuple[RateLimiter, RateLimiter]:
    """Two workers' limiters on the configured budgets (with the guard): one shared local limiter, or two Redis
    clients (two processes)."""
    if backend == "local":
        limiter = LocalRateLimiter()
        return limiter, limiter
    import redis

    return RedisRateLimiter(redis.Redis.from_url(REDIS_URL)), RedisRateLimiter(redis.Redis.from_url(REDIS_URL))


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_recurring_edge_429s_widen_the_guard_on_every_worker_up_to_its_cap(settings, backend):
    """One 429 at the window's edge leaves the guard as it is; a second within GUARD_WIDEN_WINDOWS windows widens it for
    every worker (in Redis: other processes), by GUARD_STEP_MS up to GUARD_MAX_MS; slots are then held window +
    guard. Other accounts and budgets keep the configured guard; `reset` forgets it."""
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 2
    settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 100
    settings.HUBSPOT_RATE_LIMIT_GUARD_MS = 10
    first, second = guarded_limiters(backend)
    account = uuid.uuid4().hex
    assert first.guard_ms(account, SEARCH) == 10
    assert first.edge_429(account, SEARCH) == 10
    time.sleep(0.03)  # past the episode (a quarter of the 100-ms window)
    assert second.edge_429(account, SEARCH) == 10 + ratelimit.GUARD_STEP_MS
    for _ in range(20):
        time.sleep(0.03)
        first.edge_429(account, SEARCH)
    assert second.guard_ms(account, SEARCH) == ratelimit.GUARD_MAX_MS
    assert second.guard_ms(account, GENERAL) == 10 and second.guard_ms("other", SEARCH) == 10
    stamps = hammer([second, second], account, 3, kind=SEARCH)
    assert len(stamps) == 6
    # 2 per (100 ms + 250 ms): three windows between the first and the last pair.
    assert max(stamps) - min(stamps) >= 2 * 0.35 - 0.02
    assert max_in_window(stamps, 0.33) <= 2
    second.reset(account)
    assert first.guard_ms(account, SEARCH) == 10


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_edge_429s_of_one_episode_widen_nothing(settings, backend):
    """A stall that delayed several requests at once brings their 429s together: those within GUARD_EPISODE of a
    window of the last one noted are one episode and widen nothing, on any worker; the next episode within
    GUARD_WIDEN_WINDOWS windows of the first does."""
    settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 400  # episode 100 ms, widening span 1.6 s
    settings.HUBSPOT_RATE_LIMIT_GUARD_MS = 10
    first, second = guarded_limiters(backend)
    account = uuid.uuid4().hex
    assert first.edge_429(account, SEARCH) == 10
    assert second.edge_429(account, SEARCH) == 10
    time.sleep(0.05)
    assert first.edge_429(account, SEARCH) == 10  # 50 ms after the first: the same episode
    time.sleep(0.1)
    assert second.edge_429(account, SEARCH) == 10 + ratelimit.GUARD_STEP_MS  # 150 ms after it: the next


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_a_widened_guard_narrows_a_step_per_quiet_span(settings, monkeypatch, backend):
    """Each GUARD_RELAX_S without an edge 429 narrows the guard a step (on the next slot taken), down to the
    configured guard; edge 429s further apart than GUARD_WIDEN_WINDOWS windows never widen it."""
    settings.HUBSPOT_RATE_LIMIT_GUARD_MS = 10
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 25  # four windows: 100 ms
    monkeypatch.setattr(ratelimit, "GUARD_RELAX_S", 0.15)
    first, second = guarded_limiters(backend)
    account = uuid.uuid4().hex
    for _ in range(3):
        first.edge_429(account)
        time.sleep(0.01)  # past the episode (a quarter of the 25-ms window)
    assert second.guard_ms(account) == 10 + 2 * ratelimit.GUARD_STEP_MS
    time.sleep(0.2)
    second.acquire(account)
    assert first.guard_ms(account) == 10 + ratelimit.GUARD_STEP_MS
    second.acquire(account)  # within the quiet span that followed the step: no second step yet
    assert first.guard_ms(account) == 10 + ratelimit.GUARD_STEP_MS
    time.sleep(0.2)
    second.acquire(account)
    time.sleep(0.2)
    second.acquire(account)
    assert first.guard_ms(account) == 10  # never below the configured guard
    first.edge_429(account)
    time.sleep(0.12)
    first.edge_429(account)
    assert second.guard_ms(account) == 10


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_at_edge_only_when_our_own_slots_fill_the_window(backend):
    limiter = LocalRateLimiter(BUDGETS) if backend == "local" else redis_limiter(BUDGETS)
    account = uuid.uuid4().hex
    for _ in range(8):
        limiter.acquire(account)
    assert not limiter.at_edge(account)  # 8 of 10: a 429 now means someone else spends the budget
    limiter.acquire(account)
    assert limiter.at_edge(account)
    assert not limiter.at_edge(account, SEARCH)


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_requests_in_flight_are_counted_across_workers(backend):
    first, second = guarded_limiters(backend)
    account = uuid.uuid4().hex
    a, b, c = "a", "b", "c"
    first.acquire(account, flight=a)
    second.acquire(account, flight=b)
    second.acquire(account, flight=c)
    assert first.in_flight(account) == second.in_flight(account) == 3
    assert first.in_flight("other") == 0
    second.answered(account, b)
    assert first.in_flight(account) == 2
    first.answered(account, a)
    second.answered(account, c)
    assert second.in_flight(account) == 0


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_a_slot_taken_with_a_flight_token_counts_the_request_in_flight(settings, backend):
    """acquire(flight=token) takes the slot and notes the request in flight in one step, seen by every worker; a
    request that got no slot (the wait timed out) is not in flight; an unlimited budget still counts it."""
    settings.HUBSPOT_RATE_LIMIT = 2
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 10_000
    first, second = guarded_limiters(backend)
    account = uuid.uuid4().hex
    first.acquire(account, flight="a")
    second.acquire(account, flight="b")
    assert first.used(account, GENERAL, 10_000) == 2
    assert first.in_flight(account) == second.in_flight(account) == 2
    with pytest.raises(TimeoutError):
        first.acquire(account, flight="c", timeout=0.05)
    assert second.in_flight(account) == 2
    second.answered(account, "a")
    first.answered(account, "b")
    assert first.in_flight(account) == 0
    settings.HUBSPOT_RATE_LIMIT = 0
    first.acquire(account, flight="d")
    assert second.in_flight(account) == 1


@needs_redis
def test_a_slot_and_its_flight_token_are_one_redis_round_trip(settings):
    """The request leaves one round trip after its slot's time, not two (HubSpot compares arrivals, and each round
    trip is a wait for the GIL on a busy worker)."""
    import redis

    settings.HUBSPOT_RATE_LIMIT = 110
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(client)
    account = uuid.uuid4().hex
    limiter.acquire(account)  # the script is loaded
    calls = []
    real = client.execute_command

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    client.execute_command = counted
    limiter.acquire(account, flight="t")
    assert calls == ["EVALSHA"]
    client.execute_command = real
    assert limiter.in_flight(account) == 1


@needs_redis
def test_the_slots_held_are_read_in_one_redis_round_trip(settings, monkeypatch):
    """What the balance and the 429 checks ask of the window (`used`, `held_slots`): Redis' clock and the slots in
    one round trip, and only the window's slots count."""
    import redis

    settings.HUBSPOT_RATE_LIMIT = 110
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RedisRateLimiter(client)
    account = uuid.uuid4().hex
    for _ in range(3):
        limiter.acquire(account)
    trips = []
    real_command, real_pipeline = client.execute_command, redis.client.Pipeline.execute
    monkeypatch.setattr(client, "execute_command", lambda *a, **k: trips.append(a[0]) or real_command(*a, **k))
    monkeypatch.setattr(
        redis.client.Pipeline, "execute", lambda pipe, *a: trips.append("pipeline") or real_pipeline(pipe, *a)
    )
    assert limiter.used(account, GENERAL, 10_000) == 3
    assert trips == ["pipeline"]
    time.sleep(0.06)
    assert limiter.used(account, GENERAL, 50) == 0  # slots older than the window asked about


@needs_redis
def test_a_request_whose_worker_died_stops_counting_in_flight(settings, monkeypatch):
    monkeypatch.setattr(ratelimit, "FLIGHT_FORGET_MS", 100)
    first, second = guarded_limiters("redis")
    account = uuid.uuid4().hex
    first.acquire(account, flight="lost")  # never answered: its worker was killed mid-request
    settings.HUBSPOT_RATE_LIMIT = 0
    first.acquire(account, flight="unlimited")  # the same on an unlimited budget (noted without a slot)
    assert second.in_flight(account) == 2
    time.sleep(0.15)
    assert second.in_flight(account) == 0


@pytest.mark.parametrize("backend", ["local", pytest.param("redis", marks=needs_redis)])
def test_held_slots_tell_every_worker_when_each_frees(settings, backend):
    """Slots held by two workers, soonest to free first, each freeing the window plus the guard after it was
    taken: what the partitioned read balances its budgets by."""
    settings.HUBSPOT_RATE_LIMIT = 5
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 400
    settings.HUBSPOT_RATE_LIMIT_GUARD_MS = 20
    first, second = guarded_limiters(backend)
    account = uuid.uuid4().hex
    assert first.held_slots(account, GENERAL) == ([], 0.42)
    first.acquire(account)
    time.sleep(0.1)
    second.acquire(account)
    second.acquire(account)
    frees, hold = first.held_slots(account, GENERAL)
    assert hold == 0.42 and len(frees) == 3
    assert frees == sorted(frees)
    assert 0.42 - 0.1 - 0.05 <= frees[0] <= 0.42 - 0.1 + 0.005  # taken ~0.1 s ago
    assert 0.42 - 0.05 <= frees[2] <= 0.42 + 0.005
    assert first.held_slots(account, SEARCH) == ([], 1.02)
    time.sleep(0.35)  # the first slot has freed
    frees, _hold = second.held_slots(account, GENERAL)
    assert len(frees) == 2 and frees[-1] <= 0.1
    settings.HUBSPOT_RATE_LIMIT = 0
    assert first.held_slots(account, GENERAL) is None  # unlimited

"""The HubSpot rate limiter: one budget per HubSpot account, shared by every worker on every machine.

HubSpot counts requests per installed account (110 per rolling 10 s for OAuth apps; search separately, 5/s),
so the budget is keyed by hub id, not by process or by source: two sources connected to the same account share
it. With REDIS_URL the windows live in Redis and one Lua script checks and takes a slot atomically (a sorted
set per key, scored by Redis' own clock so machines with skewed clocks still agree); without Redis an
in-process limiter does the same for the threads of one process.

Besides its own count the limiter listens to HubSpot: `observe()` takes the `X-HubSpot-RateLimit-*` headers of
each response (a smaller `Max` than configured is adopted; a low `Remaining` pauses every worker briefly, since
something outside this limiter is spending the budget), and `penalize()` makes every worker on the account wait
after a 429.

HubSpot counts a request when it arrives, a varying few milliseconds after its slot was taken here, so each slot
is held a guard longer than its window. The guard starts small and learns. A 429 met while this limiter's own
slots fill the window (the arrival jitter exceeded the guard; nobody else is spending the budget) costs one slot:
the request goes again as soon as a slot frees, without backing off or pausing anyone. A second such 429 within
GUARD_WIDEN_WINDOWS of the budget's windows (40 s of the list's, 4 s of search's) widens the guard of that account
and budget by GUARD_STEP_MS (up to GUARD_MAX_MS) on every worker; each GUARD_RELAX_S without one narrows it a step
again. A step costs a share of the budget (25 ms of search's 1-s window is 2.5 %, 0.125 requests a second; of the
list's 10 s, 0.25 %), so the guard widens only when 429s come about as often as the step would cost in slots: one
late arrival now and then costs one slot and holds no slot longer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

log = logging.getLogger(__name__)

GENERAL = "general"
SEARCH = "search"
KINDS = (GENERAL, SEARCH)
GUARD_STEP_MS = 25
GUARD_MAX_MS = 250
GUARD_WIDEN_WINDOWS = 4
GUARD_EPISODE = 0.25
GUARD_RELAX_S = 60.0
# A request sent and not answered after this long (its worker died mid-request) no longer counts as in flight.
FLIGHT_FORGET_MS = 120_000


@dataclass(frozen=True)
class Budget:
    limit: int  # requests per window; 0 = unlimited
    window_ms: int


def configured_budgets() -> dict[str, Budget]:
    return {
        GENERAL: Budget(int(settings.HUBSPOT_RATE_LIMIT), int(settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS)),
        SEARCH: Budget(int(settings.HUBSPOT_SEARCH_RATE_LIMIT), int(settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS)),
    }


class RateLimiter:
    """Blocks callers so that each (account, kind) stays inside its sliding-window budget."""

    def __init__(self, budgets: Mapping[str, Budget] | None = None, *, sleep=time.sleep) -> None:
        # None = read the settings at each call, so a long-lived process singleton follows setting changes.
        self._budgets = dict(budgets) if budgets else None
        self._sleep = sleep
        # Budgets announced by HubSpot's headers, per (account, kind); only ever lower than the configured one.
        self._learned: dict[tuple[str, str], Budget] = {}
        self.waited_seconds = 0.0

    @property
    def budgets(self) -> dict[str, Budget]:
        return self._budgets if self._budgets is not None else configured_budgets()

    # --- the public surface -----------------------------------------------------------------------------
    def budget(self, account: str, kind: str = GENERAL) -> Budget:
        return self._learned.get((account, kind), self.budgets[kind])

    def acquire(
        self, account: str, kind: str = GENERAL, *, timeout: float | None = None, flight: str | None = None
    ) -> float:
        """Wait for a slot and take it. Returns the seconds waited. `timeout` bounds the wait (TimeoutError).
        `flight`: a token the request leaves with; the request counts in flight (`in_flight`) from the slot on
        until `answered`, noted in the same step as the slot (with Redis, the same round trip: the request leaves
        sooner after its slot's time, which is what HubSpot's window is compared with)."""
        budget = self.budget(account, kind)
        if budget.limit <= 0:
            if flight is not None:
                self._flight(account, flight, add=True)
            return 0.0
        # A slot is taken here but counted by HubSpot when the request arrives, a few (varying) milliseconds
        # later: with several requests in flight, that jitter alone would put a 6th search into HubSpot's 1-second
        # window now and then. A slot is held a guard longer (budgets given explicitly are exact: no guard).
        guard = self._base_guard() if self._budgets is None else -1
        waited = 0.0
        while True:
            wait_ms = self._try_take(account, kind, budget, guard, flight)
            if wait_ms <= 0:
                self.waited_seconds += waited
                return waited
            wait = wait_ms / 1000.0
            if timeout is not None and waited + wait > timeout:
                raise TimeoutError(f"rate limiter: no slot for {kind} within {timeout}s")
            self._sleep(wait)
            waited += wait

    @staticmethod
    def _base_guard() -> int:
        return max(0, int(settings.HUBSPOT_RATE_LIMIT_GUARD_MS))

    def guard_ms(self, account: str, kind: str = GENERAL) -> int:
        """How long past its window each slot of (account, kind) is held now."""
        return max(self._base_guard(), self._learned_guard(account, kind))

    def at_edge(self, account: str, kind: str = GENERAL) -> bool:
        """Whether this limiter's own slots fill the current window (all but one at least): a 429 then means a
        request arrived at HubSpot sooner after the window's oldest than the guard allowed for, not that someone
        else is spending the account's budget."""
        budget = self.budget(account, kind)
        used = self._used(account, kind, budget)
        return budget.limit > 0 and used is not None and used >= budget.limit - 1

    def edge_429(self, account: str, kind: str = GENERAL) -> int:
        """Note a 429 met at the window's edge: the second within GUARD_WIDEN_WINDOWS windows holds every slot of
        (account, kind) GUARD_STEP_MS longer (up to GUARD_MAX_MS) on every worker. 429s within GUARD_EPISODE of a
        window of the last one noted are one episode (a stall that delayed several requests at once): they widen
        nothing (a step costs search 2.5 % of its budget for a minute). Returns the guard now."""
        window_ms = self.budget(account, kind).window_ms
        within_ms = GUARD_WIDEN_WINDOWS * window_ms
        guard = self._note_edge(account, kind, self._base_guard(), within_ms, int(window_ms * GUARD_EPISODE))
        log.info("HubSpot %s budget of %s: a 429 at the window's edge (guard %s ms)", kind, account, guard)
        return guard

    def observe(self, account: str, headers: Mapping[str, str], kind: str = GENERAL) -> None:
        """Learn from `X-HubSpot-RateLimit-Max / -Remaining / -Interval-Milliseconds` on a response."""
        try:
            max_ = int(headers.get("X-HubSpot-RateLimit-Max", ""))
            interval = int(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", ""))
        except (TypeError, ValueError):
            return  # search responses often carry no headers: nothing to learn
        configured = self.budgets[kind]
        if max_ > 0 and interval > 0 and configured.limit > 0:
            # Adopt a stricter announced budget (same rate over HubSpot's interval), never a looser one.
            if max_ * configured.window_ms < configured.limit * interval:
                self._learned[(account, kind)] = Budget(max_, interval)
            else:
                self._learned.pop((account, kind), None)
        try:
            remaining = int(headers.get("X-HubSpot-RateLimit-Remaining", ""))
        except (TypeError, ValueError):
            return
        threshold = max(2, int(max_ * float(settings.HUBSPOT_RATE_LIMIT_LOW_REMAINING)))
        if (
            max_ > 0
            and interval > 0
            and remaining <= threshold
            and not self._explained(account, kind, max_ - remaining)
        ):
            # Someone else (another app install, another deployment) is spending this account's budget. At the
            # steady rate one slot frees every interval/max ms; pause all workers for as many slots as we are
            # below the threshold, so the window drains instead of hitting 429s.
            pause_ms = int(interval / max_ * (threshold - remaining + 1))
            log.info("HubSpot rate limit low (%s of %s left): pausing %s ms", remaining, max_, pause_ms)
            self.penalize(account, pause_ms / 1000.0, kind)

    def _explained(self, account: str, kind: str, spent: int) -> bool:
        """Whether this limiter's own slots in the current window account for the `spent` requests HubSpot
        counted (give or take 5 % for the windows' different edges): then the budget is being filled on purpose,
        by several requests in flight, and nobody else needs to be made room for."""
        ours = self._used(account, kind, self.budget(account, kind))
        return ours is not None and spent <= ours + max(2, spent // 20)

    def used(self, account: str, kind: str, window_ms: int) -> int | None:
        """Slots taken for (account, kind) in the last `window_ms`, by every worker this limiter shares its
        windows with (None: unknown or unlimited)."""
        if self.budget(account, kind).limit <= 0:
            return None
        return self._used(account, kind, Budget(1, window_ms))

    def held_slots(self, account: str, kind: str) -> tuple[list[float], float] | None:
        """The slots of (account, kind) held now, every worker's: the seconds until each frees (soonest first),
        and the seconds a slot is held (its window and the guard). None: unknown or unlimited."""
        budget = self.budget(account, kind)
        if budget.limit <= 0:
            return None
        hold_ms = budget.window_ms + self.guard_ms(account, kind)
        ages = self._ages(account, kind, Budget(budget.limit, hold_ms))
        if ages is None:
            return None
        return [max(0.0, hold_ms / 1000.0 - age) for age in ages], hold_ms / 1000.0

    def answered(self, account: str, token: str) -> None:
        self._flight(account, token, add=False)

    def in_flight(self, account: str) -> int | None:
        """Requests of the account sent and not answered yet, by every worker this limiter shares its state with
        (None: unknown)."""
        return None

    def _flight(self, account: str, token: str, *, add: bool) -> None:
        pass

    def penalize(self, account: str, seconds: float, kind: str = GENERAL) -> None:
        """Make every caller on this account wait `seconds` (e.g. after a 429)."""
        if seconds > 0:
            self._set_pause(account, kind, int(seconds * 1000))

    def reset(self, account: str) -> None:
        """Forget the account's windows and pauses (tests, and an operator's "start over")."""
        for kind in KINDS:
            self._learned.pop((account, kind), None)
        self._reset(account)

    # --- backend -----------------------------------------------------------------------------------------
    def _try_take(self, account: str, kind: str, budget: Budget, guard: int, flight: str | None = None) -> int:
        """Take a slot and return 0, or return how many ms to wait before trying again. Slots are held `guard` ms
        past the window, or the learned guard when longer; `guard` < 0: exactly the window. `flight`: with the
        slot, the request's in-flight token."""
        raise NotImplementedError

    def _learned_guard(self, account: str, kind: str) -> int:
        """The guard (ms) edge 429s widened for (account, kind); 0: none."""
        return 0

    def _note_edge(self, account: str, kind: str, base: int, within_ms: int, episode_ms: int) -> int:
        raise NotImplementedError

    def _set_pause(self, account: str, kind: str, ms: int) -> None:
        raise NotImplementedError

    def _used(self, account: str, kind: str, budget: Budget) -> int | None:
        """Slots taken in the current window (None: unknown)."""
        ages = self._ages(account, kind, budget)
        return None if ages is None else len(ages)

    def _ages(self, account: str, kind: str, budget: Budget) -> list[float] | None:
        """The ages of the slots taken in the window (None: unknown)."""
        return None

    def _reset(self, account: str) -> None:
        raise NotImplementedError


class LocalRateLimiter(RateLimiter):
    """In-process sliding window (threads of one process share it): the embedded default without Redis."""

    def __init__(self, budgets: Mapping[str, Budget] | None = None, *, sleep=time.sleep) -> None:
        super().__init__(budgets, sleep=sleep)
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._paused_until: dict[tuple[str, str], float] = {}
        self._guards: dict[tuple[str, str], tuple[int, float]] = {}  # (learned guard ms, monotonic of its last news)
        self._flying: dict[str, set[str]] = {}

    def _learned_guard(self, account: str, kind: str) -> int:
        return self._guards.get((account, kind), (0, 0.0))[0]

    def _note_edge(self, account: str, kind: str, base: int, within_ms: int, episode_ms: int) -> int:
        with self._lock:
            now = time.monotonic()
            guard, last = self._guards.get((account, kind), (0, 0.0))
            guard = max(guard, base)
            if last and now - last < episode_ms / 1000.0:
                return guard
            if last and now - last < within_ms / 1000.0:
                guard = min(GUARD_MAX_MS, guard + GUARD_STEP_MS)
            self._guards[(account, kind)] = (guard, now)
            return guard

    def _flight(self, account: str, token: str, *, add: bool) -> None:
        with self._lock:
            tokens = self._flying.setdefault(account, set())
            if add:
                tokens.add(token)
            else:
                tokens.discard(token)

    def in_flight(self, account: str) -> int | None:
        with self._lock:
            return len(self._flying.get(account, ()))

    def _relaxed(self, key: tuple[str, str], base: int, now: float) -> int:
        """The guard of `key` (at least `base`), a step narrower for each GUARD_RELAX_S without an edge 429."""
        guard, last = self._guards.get(key, (0, 0.0))
        if guard > base and now - last > GUARD_RELAX_S:
            guard = max(base, guard - GUARD_STEP_MS)
            self._guards[key] = (guard, now)
        return max(guard, base)

    def _try_take(self, account: str, kind: str, budget: Budget, guard: int, flight: str | None = None) -> int:
        key = (account, kind)
        with self._lock:
            now = time.monotonic()
            window = (budget.window_ms + (self._relaxed(key, guard, now) if guard >= 0 else 0)) / 1000.0
            pause = self._paused_until.get(key, 0.0) - now
            if pause > 0:
                return max(1, int(pause * 1000))
            stamps = self._windows.setdefault(key, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            if len(stamps) < budget.limit:
                stamps.append(now)
                if flight is not None:
                    self._flying.setdefault(account, set()).add(flight)
                return 0
            # Full: the oldest slot (of the last `limit`) frees first.
            oldest = stamps[len(stamps) - budget.limit]
            return max(1, int((oldest + window - now) * 1000) + 1)

    def _ages(self, account: str, kind: str, budget: Budget) -> list[float] | None:
        with self._lock:
            now = time.monotonic()
            edge = now - budget.window_ms / 1000.0
            return [now - stamp for stamp in self._windows.get((account, kind), ()) if stamp > edge]

    def _set_pause(self, account: str, kind: str, ms: int) -> None:
        key = (account, kind)
        with self._lock:
            until = time.monotonic() + ms / 1000.0
            self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    def _reset(self, account: str) -> None:
        with self._lock:
            for kind in KINDS:
                self._windows.pop((account, kind), None)
                self._paused_until.pop((account, kind), None)
                self._guards.pop((account, kind), None)


# KEYS[1] the window (sorted set of slot ids scored by ms), KEYS[2] the pause ("not before", ms), KEYS[3] the
# learned guard (hash: g = ms, t = ms of its last news), KEYS[4] (optional) the account's requests in flight.
# ARGV: limit, window_ms, a unique slot id, the configured guard (ms; < 0: none), the guard's step (ms), ms without
# an edge 429 that narrow it a step, and with KEYS[4] the request's in-flight token and how long a token counts.
# Returns 0 (slot taken) or the ms to wait.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local guard = tonumber(ARGV[4])
if guard >= 0 then
  local learned = tonumber(redis.call('HGET', KEYS[3], 'g') or '0')
  if learned > guard then
    local last = tonumber(redis.call('HGET', KEYS[3], 't') or '0')
    if now - last > tonumber(ARGV[6]) then
      learned = math.max(guard, learned - tonumber(ARGV[5]))
      redis.call('HSET', KEYS[3], 'g', learned, 't', now)
    end
    guard = learned
  end
  window = window + guard
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return paused - now
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  if KEYS[4] then
    redis.call('ZADD', KEYS[4], now, ARGV[7])
    redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[8]))
  end
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now + 1
if wait < 1 then wait = 1 end
return wait
"""

# KEYS[1] the learned guard (hash g, t); ARGV: the configured guard, step, max (ms), the widening span (ms), the
# key's lifetime (ms), the episode (ms). Notes an edge 429 (widening the guard when the last one was within the
# span, nothing when within the episode); returns it.
_EDGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local guard = math.max(tonumber(redis.call('HGET', KEYS[1], 'g') or '0'), tonumber(ARGV[1]))
local last = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if last > 0 and now - last < tonumber(ARGV[6]) then
  return guard
end
if last > 0 and now - last < tonumber(ARGV[4]) then
  guard = math.min(tonumber(ARGV[3]), guard + tonumber(ARGV[2]))
end
redis.call('HSET', KEYS[1], 'g', guard, 't', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return guard
"""

# KEYS[1] the pause key; ARGV[1] ms to pause from now. Only ever extends an existing pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > cur then
  redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000)
end
return untl
"""


class RedisRateLimiter(RateLimiter):
    """Sliding window in Redis shared by all workers on all machines."""

    prefix = "hubsync:ratelimit"

    def __init__(self, client, budgets: Mapping[str, Budget] | None = None, *, sleep=time.sleep) -> None:
        super().__init__(budgets, sleep=sleep)
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._pause = client.register_script(_PAUSE)
        self._edge = client.register_script(_EDGE)

    def _keys(self, account: str, kind: str) -> list[str]:
        base = f"{self.prefix}:{account}:{kind}"
        return [base, f"{base}:pause", f"{base}:guard"]

    def _flight_key(self, account: str) -> str:
        return f"{self.prefix}:{account}:flight"

    def _flight(self, account: str, token: str, *, add: bool) -> None:
        """In flight: a sorted set of the account's requests scored by when they left (by Redis' clock with their
        slot, `_try_take`; here, for an unlimited budget or an answer, this machine's: clocks a few seconds apart
        do not matter against FLIGHT_FORGET_MS, after which a request its worker lost, killed mid-request, stops
        counting)."""
        import redis

        if _redis_down():
            _fallback()._flight(account, token, add=add)
            return
        key = self._flight_key(account)
        try:
            if add:
                pipe = self.redis.pipeline(transaction=False)
                pipe.zadd(key, {token: int(time.time() * 1000)})
                pipe.pexpire(key, FLIGHT_FORGET_MS)
                pipe.execute()
            else:
                self.redis.zrem(key, token)
        except redis.exceptions.ConnectionError:
            _mark_redis_down()
            _fallback()._flight(account, token, add=add)

    def in_flight(self, account: str) -> int | None:
        import redis

        if _redis_down():
            return _fallback().in_flight(account)
        try:
            edge = int(time.time() * 1000) - FLIGHT_FORGET_MS
            return int(self.redis.zcount(self._flight_key(account), edge, "+inf"))
        except redis.exceptions.ConnectionError:
            return None

    def _try_take(self, account: str, kind: str, budget: Budget, guard: int, flight: str | None = None) -> int:
        import redis

        if _redis_down():
            return _fallback()._try_take(account, kind, budget, guard, flight)
        keys = self._keys(account, kind)
        args = [budget.limit, budget.window_ms, uuid.uuid4().hex, guard, GUARD_STEP_MS, int(GUARD_RELAX_S * 1000)]
        if flight is not None:
            # Scored by Redis' clock where `_flight` scores by this machine's: clocks seconds apart do not matter
            # against FLIGHT_FORGET_MS.
            keys.append(self._flight_key(account))
            args += [flight, FLIGHT_FORGET_MS]
        try:
            return int(self._take(keys=keys, args=args))
        except redis.exceptions.ConnectionError:
            # A Redis outage must not stop syncs: fall back to this process's own window (HubSpot's 429s,
            # which the client retries, still protect the account) and try Redis again a little later.
            _mark_redis_down()
            return _fallback()._try_take(account, kind, budget, guard, flight)

    def _learned_guard(self, account: str, kind: str) -> int:
        import redis

        if _redis_down():
            return _fallback()._learned_guard(account, kind)
        try:
            return int(self.redis.hget(self._keys(account, kind)[2], "g") or 0)
        except redis.exceptions.ConnectionError:
            return 0

    def _note_edge(self, account: str, kind: str, base: int, within_ms: int, episode_ms: int) -> int:
        import redis

        if _redis_down():
            return _fallback()._note_edge(account, kind, base, within_ms, episode_ms)
        lifetime = int(GUARD_RELAX_S * GUARD_MAX_MS / GUARD_STEP_MS * 1000) + within_ms
        try:
            return int(
                self._edge(
                    keys=self._keys(account, kind)[2:],
                    args=[base, GUARD_STEP_MS, GUARD_MAX_MS, within_ms, lifetime, episode_ms],
                )
            )
        except redis.exceptions.ConnectionError:
            _mark_redis_down()
            return _fallback()._note_edge(account, kind, base, within_ms, episode_ms)

    def _set_pause(self, account: str, kind: str, ms: int) -> None:
        import redis

        if _redis_down():
            _fallback()._set_pause(account, kind, ms)
            return
        try:
            self._pause(keys=self._keys(account, kind)[1:2], args=[ms])
        except redis.exceptions.ConnectionError:
            _mark_redis_down()
            _fallback()._set_pause(account, kind, ms)

    def _ages(self, account: str, kind: str, budget: Budget) -> list[float] | None:
        import redis

        if _redis_down():
            return _fallback()._ages(account, kind, budget)
        try:
            # Redis' clock and the window's slots in one round trip (the window holds its budget's slots and those
            # of the last guard's ms at most); those older than `budget.window_ms` are left out here.
            pipe = self.redis.pipeline(transaction=True)
            pipe.time()
            pipe.zrange(self._keys(account, kind)[0], 0, -1, withscores=True)
            (seconds, micros), stamps = pipe.execute()
        except redis.exceptions.ConnectionError:
            return None
        now = int(seconds) * 1000 + int(micros) // 1000
        edge = now - budget.window_ms
        return [(now - score) / 1000.0 for _member, score in stamps if score >= edge]

    def _reset(self, account: str) -> None:
        self.redis.delete(*[k for kind in KINDS for k in self._keys(account, kind)], self._flight_key(account))


@lru_cache(maxsize=4)
def _redis_client(url: str):
    import redis

    # One pool per process; short timeouts so a dead Redis fails fast instead of hanging a sync.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


_local_singleton: LocalRateLimiter | None = None
_redis_down_until = 0.0
REDIS_RETRY_AFTER = 30.0


def _redis_down() -> bool:
    return time.monotonic() < _redis_down_until


def _mark_redis_down() -> None:
    global _redis_down_until
    log.warning("rate limiter: Redis unreachable, using the in-process limiter for %ss", REDIS_RETRY_AFTER)
    _redis_down_until = time.monotonic() + REDIS_RETRY_AFTER


_singleton_lock = threading.Lock()


def _fallback() -> LocalRateLimiter:
    global _local_singleton
    with _singleton_lock:
        if _local_singleton is None:
            _local_singleton = LocalRateLimiter()
        return _local_singleton


def get_rate_limiter() -> RateLimiter:
    """The process's limiter: Redis-backed when REDIS_URL is set (HUBSPOT_RATE_LIMITER=auto|redis|local)."""
    mode = (settings.HUBSPOT_RATE_LIMITER or "auto").lower()
    if mode in ("auto", "redis") and settings.REDIS_URL:
        return RedisRateLimiter(_redis_client(settings.REDIS_URL))
    if mode == "redis":
        raise RuntimeError("HUBSPOT_RATE_LIMITER=redis needs REDIS_URL")
    return _fallback()


def account_key(hub_id: int | None) -> str:
    return str(hub_id) if hub_id else "unknown"

"""Extraction at HubSpot's budget (`make bench`): a first sync of 100k contacts (BENCH_BUDGET_CONTACTS overrides)
against the sandbox with its rate limits ON (110 requests per 10 s, 5 searches per second, per portal), served
by one `sandbox_serve` process (its counters live in that process's memory), at 0, 100, 250 and 500 ms of latency
per request (BENCH_BUDGET_LATENCIES overrides, comma-separated).

Prints, per latency: records/s of the first sync; the share of the account's budget it used (records/s against
the ~2,100 records/s the two budgets carry: 1,100 through list pages of 100 under 110/10 s, 1,000 through search
pages of 200 under 5/s), and each budget's requests/s against its limit; 429s met; peak RSS of this process. Then,
in BENCH_BUDGET_ROUNDS rounds (2), one `manage.py sync` process alone and two at once on two accounts (250 ms):
records/s together against one account's figure and against the process alone (medians).
Aim: >= 90 % of the budget (~1,900 records/s) at 250 ms; two accounts twice one account's figure.

Also per latency: mean and peak requests in flight, the writer's busy share, pages per commit (group commits), SQL
statements of the writer's connection per page, the fetchers' queue depth, the records each budget's requests
carried against a full page (part-filled last pages of ranges) and the counting searches (plan, probe, checks).
BENCH_BUDGET_TIMELINE=1 prints the requests of each budget per half-second for the first 6 s (the plan), per 2 s
after (where a budget idles) and per half-second for the last 6 s (the tail); BENCH_BUDGET_RANGES=1 prints every
range as it ended (budget, ids, estimate, records read, and how many records short of whole pages they were);
BENCH_BUDGET_STEPS=1 the pages of the read's last 5 s by range; BENCH_BUDGET_PEERS=0 skips the peer and the two
processes.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta

import psutil
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from bench.test_bench_pipeline import Meter
from hubsync.models import Workspace
from sources.extraction import execute_run
from sources.extraction.partitions import FetcherPool, Partitions
from sources.hubspot import HubSpotClient
from sources.models import ReadPartition, Record, Source, SourceCollection, SyncRun
from sources.ratelimit import GENERAL, SEARCH, get_rate_limiter
from sources.runs import create_run
from tests.fixtures_sandbox import ROOT, HubSpotSandbox, sandbox_env, sandbox_process

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

CONTACTS = int(os.environ.get("BENCH_BUDGET_CONTACTS", "100000"))
LATENCIES = [int(x) for x in os.environ.get("BENCH_BUDGET_LATENCIES", "0,100,250,500").split(",")]
ROUNDS = int(os.environ.get("BENCH_BUDGET_ROUNDS", "2"))
BUDGET_RECORDS_PER_S = 1_100 + 1_000
LIST_PER_S, SEARCH_PER_S = 11.0, 5.0


class Requests:
    """Requests by budget and 429s met, counted at the client's one place of sending (every thread's client)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.general = self.search = self.limited = 0
        self.counting = self.list_records = self.search_records = 0
        self.timeline: list = []
        self.refused: list = []  # (when, budget) of every 429
        self.in_flight = self.peak_in_flight = 0
        self.flight_seconds = 0.0  # requests x seconds in flight: / wall time = mean requests in flight

    def install(self, monkeypatch) -> None:
        send = HubSpotClient._send

        def counted(client, method, url, data, token, kind):
            with self.lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            started = time.perf_counter()
            try:
                response = send(client, method, url, data, token, kind)
            finally:
                with self.lock:
                    self.in_flight -= 1
                    self.flight_seconds += time.perf_counter() - started
            n = _results(response)
            with self.lock:
                self.timeline.append((time.perf_counter(), kind))
                if kind == SEARCH:
                    self.search += 1
                    if b'"limit":1}' in (data or b"") or b'"limit":1,' in (data or b""):
                        self.counting += 1  # a plan's count or a list range's check
                    else:
                        self.search_records += n
                else:
                    self.general += 1
                    self.list_records += n
                if response.status_code == 429:
                    self.limited += 1
                    self.refused.append((time.perf_counter(), kind))
            return response

        monkeypatch.setattr(HubSpotClient, "_send", counted)

    def carried(self) -> str:
        """Records each budget's requests carried, against a full page (the rest: ends of ranges, pages read
        above a split's cut, counts)."""
        pages = max(1, self.search - self.counting)
        return (
            f"list {self.list_records / max(1, self.general):5.1f} records/request of 100, search "
            f"{self.search_records / pages:5.1f} of 200 ({self.counting} counting searches)"
        )

    def reset(self) -> None:
        with self.lock:
            self.counting = self.list_records = self.search_records = 0
            self.general = self.search = self.limited = 0
            self.timeline = []
            self.refused = []
            self.peak_in_flight = 0
            self.flight_seconds = 0.0


def _results(response) -> int:
    """Records in a page, without parsing it a second time (each record object starts with its id)."""
    return response.content.count(b'{"id":') if response.status_code == 200 else 0


class Writer:
    """The writer thread's share of the wall time spent committing, the pages (and groups) it committed, the SQL
    statements of its connection, and the fetchers' queue depth sampled at each take."""

    def __init__(self) -> None:
        self.busy = 0.0
        self.pages = self.commits = self.queries = 0
        self.depth_sum = self.depth_n = 0

    def install(self, monkeypatch) -> None:
        name = "commit_partition_pages" if hasattr(Partitions, "commit_partition_pages") else "commit_partition_page"
        commit = getattr(Partitions, name)
        get = FetcherPool.get

        def timed(engine, *args):
            started = time.perf_counter()
            try:
                return commit(engine, *args)
            finally:
                self.busy += time.perf_counter() - started
                self.commits += 1
                self.pages += len(args[0]) if len(args) == 1 else 1

        def sampled(pool, timeout):
            self.depth_sum += pool.out.qsize()
            self.depth_n += 1
            return get(pool, timeout)

        monkeypatch.setattr(Partitions, name, timed)
        monkeypatch.setattr(FetcherPool, "get", sampled)

    def counting(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)

    def reset(self) -> None:
        self.__init__()

    def figures(self, seconds: float) -> str:
        depth = self.depth_sum / self.depth_n if self.depth_n else 0.0
        return (
            f"writer busy {self.busy / seconds:4.0%}, {self.pages} pages in {self.commits} commits, "
            f"{self.queries / max(1, self.pages):4.1f} SQL/page, queue {depth:3.1f} mean"
        )


def new_source(hub: HubSpotSandbox, hub_id: int, name: str, contacts: int = CONTACTS) -> Source:
    hub.seed(hub_id, contacts=contacts, companies=0, deals=0, tickets=0)
    tokens = hub.token(portal=hub_id)
    source = Source.objects.create(
        workspace=Workspace.objects.create(name=name), name=name, schema_name=name.replace("-", "_"),
        hub_id=hub_id, token=tokens["refresh_token"], access_token=tokens["access_token"],
        access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
    )  # fmt: skip
    SourceCollection.objects.create(source=source, collection="contacts")
    get_rate_limiter().reset(str(hub_id))  # a guard learned by an earlier bench run (kept 10 minutes) is not this one's
    return source


def cpu_seconds(sandbox) -> tuple[float, float]:
    """CPU seconds so far of (this process and its finished children, the sandbox's processes)."""
    own, children = psutil.Process().cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    server = psutil.Process(sandbox.pid)  # gunicorn's arbiter, which serves from its worker process
    served = sum(sum(p.cpu_times()[:2]) for p in [server, *server.children(recursive=True)])
    return own.user + own.system + children.ru_utime + children.ru_stime, served


def sync_process(base: str, source: Source) -> subprocess.Popen:
    env = sandbox_env()
    env.update(
        DEBUG="0",  # as the one-account run (pytest runs Django with DEBUG off)
        ALLOWED_HOSTS="localhost",
        HUBSYNC_BASE_URL=base,
        HUBSPOT_API_BASE="",
        HUBSYNC_PARTITION_HELPERS="0",
        SECRET_KEY=django_settings.SECRET_KEY,
        HUBSYNC_ENCRYPTION_KEYS=",".join(django_settings.HUBSYNC_ENCRYPTION_KEYS),
    )
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "sync", str(source.pk)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def sync_processes(base: str, sources: list[Source]) -> tuple[list[SyncRun], list, list, float, tuple]:
    """One `manage.py sync` process per source, all at once: their runs, (list, search) 429s of each process
    (from its warnings), (clock time, budget) of every 429, the seconds until the last ended, and the CPU seconds
    of the processes and of the HubSpot double meanwhile."""
    started = time.perf_counter()
    cpu = cpu_seconds(base)
    procs = [sync_process(base, s) for s in sources]
    refused = []
    refused_at: list[tuple[str, str]] = []
    for proc in procs:
        _, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, err[-3000:]
        lines = [line for line in err.splitlines() if "-> 429" in line]
        searched = sum(1 for line in lines if "/search" in line)
        refused.append((len(lines) - searched, searched))
        refused_at += [(line[11:23], "search" if "/search" in line else "list") for line in lines]
    seconds = time.perf_counter() - started
    used = tuple(b - a for a, b in zip(cpu, cpu_seconds(base), strict=True))
    assert Record.objects.filter(source__in=sources).count() == len(sources) * CONTACTS
    runs = [SyncRun.objects.get(source=s) for s in sources]
    return runs, refused, refused_at, seconds, used


@pytest.mark.timeout(3600)
def test_bench_extract_at_the_budget(settings, monkeypatch):
    monkeypatch.setenv("DEBUG", "1")  # the sandbox process uses the embedded defaults (same local secrets)
    settings.HUBSPOT_RATE_LIMIT = 110
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 10_000
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 5
    settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 1_000
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSYNC_PARTITION_HELPERS = 0
    requests = Requests()
    requests.install(monkeypatch)
    kept_rows: list = []
    steps: list = []  # (when, budget, range's low bound, records) of every page a range read
    if os.environ.get("BENCH_BUDGET_STEPS"):
        for name, via in (("_list_step", "list"), ("_search_step", "search")):
            real = getattr(Partitions, name)

            def step(self, sc, low, high, pos, names, _real=real, _via=via):
                out = _real(self, sc, low, high, pos, names)
                steps.append((time.perf_counter(), _via, low, len(out[0])))
                return out

            monkeypatch.setattr(Partitions, name, step)
    if os.environ.get("BENCH_BUDGET_RANGES"):
        finish = Partitions.finish_partitioned

        def keeping(self, work):  # the rows go when the read ends
            kept_rows[:] = list(ReadPartition.objects.filter(collection=work.sc))
            return finish(self, work)

        monkeypatch.setattr(Partitions, "finish_partitioned", keeping)
    writer = Writer()
    writer.install(monkeypatch)
    print(
        f"\nextraction at the budget ({connection.vendor}, {CONTACTS:,} contacts, sandbox rate limits on: "
        f"110/10 s + 5 searches/s = ~{BUDGET_RECORDS_PER_S:,} records/s; {settings.HUBSYNC_FETCHERS} fetchers)"
    )
    # 32 sandbox threads: its latency is slept inside a request thread, and 8 threads at 500 ms would cap the
    # sandbox at 16 requests/s, with queueing delays that make the windows disagree (HubSpot has no such cap).
    with sandbox_process(threads=32) as base:
        settings.BASE_URL = base
        hub = HubSpotSandbox(base)
        hub.set_knobs(rate_limits=True, error_rate=0, reset_rate=0, search_lag_seconds=0, fail_next=0)
        one_account = 0.0
        for n, latency in enumerate(LATENCIES):
            hub.set_knobs(latency_ms=latency)
            source = new_source(hub, 5100 + n, f"budget-{latency}")
            requests.reset()
            writer.reset()
            run = create_run(source=source, trigger=SyncRun.Trigger.FIRST)
            cpu = cpu_seconds(base)
            with Meter() as meter, connection.execute_wrapper(writer.counting):
                finished = execute_run(run_id=run.pk)
            sync_cpu, served_cpu = (b - a for a, b in zip(cpu, cpu_seconds(base), strict=True))
            assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED, finished and finished.error
            assert Record.objects.filter(source=source).count() == CONTACTS
            rate = CONTACTS / meter.seconds
            if latency == 250:
                one_account = rate
            limiter, account = get_rate_limiter(), str(source.hub_id)
            list_rate, search_rate = requests.general / meter.seconds, requests.search / meter.seconds
            print(
                f"  latency {latency:>3} ms: {rate:6.0f} records/s = {rate / BUDGET_RECORDS_PER_S:5.1%} of the budget "
                f"| list {list_rate:5.2f}/s of {LIST_PER_S:.0f} ({list_rate / LIST_PER_S:4.0%}), "
                f"search {search_rate:4.2f}/s of {SEARCH_PER_S:.0f} ({search_rate / SEARCH_PER_S:4.0%}) | "
                f"{requests.limited} x 429 (guard {limiter.guard_ms(account, GENERAL)} / "
                f"{limiter.guard_ms(account, SEARCH)} ms) | "
                f"{finished.counts['contacts'].get('partitions', 1)} ranges, in flight "
                f"{requests.flight_seconds / meter.seconds:3.1f} mean / {requests.peak_in_flight} peak | "
                f"{meter.seconds:5.1f} s | peak RSS {meter.peak / 2**20:6.1f} MiB | CPU: sync {sync_cpu:4.1f} s, "
                f"HubSpot double {served_cpu:4.1f} s\n"
                f"                    {writer.figures(meter.seconds)}\n"
                f"                    {requests.carried()}"
            )
            if os.environ.get("BENCH_BUDGET_TIMELINE"):
                t0 = meter.started
                for tenth in range(0, 60, 5):  # the start, by half-seconds
                    got = [k for t, k in requests.timeline if tenth / 10 <= t - t0 < (tenth + 5) / 10]
                    print(f"    {tenth / 10:4.1f}s list {got.count('general'):3d} search {got.count(SEARCH):3d}")
                tail = max(6, int(meter.seconds) - 6)
                for second in range(6, tail, 2):
                    got = [k for t, k in requests.timeline if second <= t - t0 < second + 2]
                    print(f"    {second:3d}s list {got.count('general'):3d} search {got.count(SEARCH):3d}")
                for tenth in range(tail * 10, int(meter.seconds * 10) + 5, 5):  # the end, by half-seconds
                    got = [k for t, k in requests.timeline if tenth / 10 <= t - t0 < (tenth + 5) / 10]
                    print(f"    {tenth / 10:4.1f}s list {got.count('general'):3d} search {got.count(SEARCH):3d}")
                last = max((t for t, _ in requests.timeline), default=t0) - t0
                print(f"    last response at {last:4.1f}s of {meter.seconds:4.1f}s")
                for t, via, low, n in steps:
                    if t - t0 > meter.seconds - 5:
                        print(f"    {t - t0:5.2f}s {via:6s} range from {low:>8d}: {n:3d} records")
                steps.clear()
                for kind in (GENERAL, SEARCH):
                    at = ", ".join(f"{t - t0:.2f}" for t, k in requests.refused if k == kind)
                    print(f"    429s of {kind} at [{at}] s")
            if os.environ.get("BENCH_BUDGET_RANGES"):
                for r in sorted(kept_rows, key=lambda r: r.low):
                    read = int((r.counts or {}).get("read") or 0)
                    size = 200 if r.via == "search" else 100
                    print(
                        f"    range {r.index:3d} {r.via:6s} {r.low:>8d}-{r.high or 0:>8d} est {r.estimate:6d} "
                        f"read {read:6d} short of whole pages {(-read) % size:4d}"
                    )
        if os.environ.get("BENCH_BUDGET_PEERS", "1") == "0":
            return  # the latencies only (a quick measurement while working on the engine)
        # The peer in the same run: the one-request-in-flight list read (what every first sync was before), at
        # 250 ms, on a fifth of the records (its rate does not depend on the size).
        hub.set_knobs(latency_ms=250)
        settings.HUBSYNC_PARTITION_MIN_RECORDS = 10**12
        peer_size = max(1_000, CONTACTS // 5)
        peer = new_source(hub, 5300, "budget-peer", contacts=peer_size)
        run = create_run(source=peer, trigger=SyncRun.Trigger.FIRST)
        with Meter() as meter:
            finished = execute_run(run_id=run.pk)
        assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED
        peer_rate = peer_size / meter.seconds
        versus = f" = partitioned {one_account / peer_rate:.1f} x this" if one_account else ""
        print(f"  peer: one request in flight (list read), 250 ms: {peer_rate:6.0f} records/s{versus}")
        settings.HUBSYNC_PARTITION_MIN_RECORDS = 5_000
        # Two accounts, two worker processes at once: each account has its own budget. Against one account's
        # figure above (this process, warm) and against one `manage.py sync` process alone (the same kind of
        # process as the two), in ROUNDS rounds (alone, then the two): a run's time varies by ~1 % from run to run
        # on this machine, and the two runs' span is the later of two such times.
        hub.set_knobs(latency_ms=250)
        alone_rates, together_rates, summed_rates = [], [], []
        for round_ in range(ROUNDS):
            alone = new_source(hub, 5210 + 3 * round_, f"budget-alone-{round_}")
            (run,), *_ = sync_processes(base, [alone])
            alone_rates.append(CONTACTS / (run.finished_at - run.started_at).total_seconds())
            sources = [new_source(hub, 5211 + 3 * round_ + i, f"budget-two-{round_}-{i}") for i in range(2)]
            runs, refused, refused_at, seconds, (syncs_cpu, served_cpu) = sync_processes(base, sources)
            # The runs' own span (first start to last finish), as one account's figure is timed (its run only): the
            # processes' start-up (Python, Django, ~1-2 s each) is not the engine's.
            span = (max(r.finished_at for r in runs) - min(r.started_at for r in runs)).total_seconds()
            together_rates.append(2 * CONTACTS / span)
            # Each account's own rate (its run's records over its run's time, as one account's figure is taken),
            # summed: the processes start a little apart (Python and Django start-up), which the span counts.
            durations = [(r.finished_at - r.started_at).total_seconds() for r in runs]
            apart = abs((runs[0].started_at - runs[1].started_at).total_seconds())
            summed_rates.append(sum(CONTACTS / d for d in durations))
            print(
                f"  round {round_ + 1}: one process alone {alone_rates[-1]:6.0f} records/s ({run.rate_limited} x 429); "
                f"two processes, two accounts (250 ms): {together_rates[-1]:6.0f} records/s in {span:5.1f} s of runs "
                f"({2 * CONTACTS / seconds:6.0f} records/s over {seconds:5.1f} s with the processes' start-up), "
                f"each account's own rate summed {summed_rates[-1]:6.0f} records/s\n"
                f"                    (runs of {durations[0]:4.1f} s and {durations[1]:4.1f} s, started {apart:3.1f} s "
                f"apart; {' and '.join(f'{r.api_calls} requests, {r.rate_limited} x 429' for r in runs)}; 429s of "
                f"list / search: {', '.join(f'{a} / {b}' for a, b in refused)}; CPU: syncs {syncs_cpu:4.1f} s, "
                f"HubSpot double {served_cpu:4.1f} s)"
            )
            if os.environ.get("BENCH_BUDGET_TIMELINE"):
                first = min(r.started_at for r in runs)
                print(f"    runs started at {timezone.localtime(first):%H:%M:%S.%f}"[:-3] + "; 429s (clock, budget):")
                print("    " + ", ".join(f"{at} {kind}" for at, kind in sorted(refused_at)))
        alone_rate, together, summed = (statistics.median(r) for r in (alone_rates, together_rates, summed_rates))
        versus = f" = {together / one_account:.2f} x one account's figure above (aim: 2)" if one_account else ""
        print(
            f"  two processes, two accounts (250 ms), median of {ROUNDS}: {together:6.0f} records/s{versus}, "
            f"= {together / alone_rate:.2f} x one process alone ({alone_rate:6.0f} records/s); each account's own "
            f"rate summed: {summed:6.0f} records/s"
            + (f" = {summed / one_account:.2f} x one account's figure" if one_account else "")
            + f", {summed / alone_rate:.2f} x one process alone"
        )

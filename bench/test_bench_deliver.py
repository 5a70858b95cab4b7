"""Delivery throughput: 100,000 mirror records → the Segment sandbox served by its own server process; then
hubsync against Segment's official Python client (test_bench_delivery_vs_official_client, below).

Three runs of one identify mapping (email as User ID, ten traits of every HubSpot type):
1. first run: every record is built, hashed, batched and sent;
2. no-change run: nothing past the watermark, so no row is read and no request is made;
3. reconsider run: a mapping edit that changes no payload (traits reordered) makes the engine read, build and
   hash all 100,000 records again and send none.
Prints messages/s, requests, batches and the peak RSS of this process during each run. Run with `make bench`.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psutil
import pytest
import requests
from django.core.management import get_commands
from django.db import connection

from hubsync.models import Workspace
from mappings.delivery import deliver
from mappings.models import Destination, Mapping, ProfileSpace
from mappings.segment import close_session
from models_app.models import DataModel
from sandbox.segment.models import DEFAULT_WRITE_KEY, SegmentMessage, get_default_workspace
from sources.models import Record, Source, SourceCollection
from tests.fixtures_segment import basic_auth

ROOT = Path(__file__).resolve().parent.parent
RECORDS = int(os.environ.get("BENCH_DELIVER_RECORDS", "100000"))
# Properties stored per mirror row. A real HubSpot contact carries ~65 (the default properties plus the portal's
# own), of which the mapping reads ten: BENCH_DELIVER_PROPERTIES=65 measures that; the default 11 keeps the
# historical figure comparable.
PROPERTIES = max(11, int(os.environ.get("BENCH_DELIVER_PROPERTIES", "11")))
# Unmapped filler properties, shaped like HubSpot's (analytics counters, timestamps, enumerations, ids).
FILLER = [f"hs_extra_property_{n:02d}" for n in range(PROPERTIES - 11)]
SCHEMA = {
    "email": {"type": "string", "fieldType": "text"},
    "firstname": {"type": "string", "fieldType": "text"},
    "lastname": {"type": "string", "fieldType": "text"},
    "company": {"type": "string", "fieldType": "text"},
    "city": {"type": "string", "fieldType": "text"},
    "num_employees": {"type": "number", "fieldType": "number"},
    "is_customer": {"type": "bool", "fieldType": "booleancheckbox"},
    "createdate": {"type": "datetime", "fieldType": "date"},
    "interests": {"type": "enumeration", "fieldType": "checkbox"},
    "lifecyclestage": {"type": "enumeration", "fieldType": "radio"},
}
TRAITS = [[name, name] for name in SCHEMA]


def _free_port() -> int:
    for port in range(8800, 8900):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8800-8899")


def _child_env() -> dict[str, str]:
    """The server process must use the test database pytest-django just created."""
    env = {**os.environ, "HUBSYNC_TESTING": "1", "SANDBOX": "1", "DEBUG": "1"}
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        env["HUBSYNC_SQLITE_PATH"] = str(name)
    else:
        url = urlparse(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = urlunparse(url._replace(path=f"/{name}"))
    return env


def _serve(port: int) -> tuple[subprocess.Popen, str]:
    if "sandbox_serve" in get_commands():
        cmd = [sys.executable, "manage.py", "sandbox_serve", "--port", str(port)]
    else:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        cmd = [gunicorn, "hubsync.wsgi", "-b", f"127.0.0.1:{port}", "--threads", "4", "-w", "2"]
        cmd += ["--log-level", "warning"]
    log = open(ROOT / "var" / "bench_deliver_server.log", "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    headers = {"Authorization": basic_auth(DEFAULT_WRITE_KEY)}
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/sandbox/segment/v1/_check", headers=headers, timeout=10).ok:
                return proc, " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.terminate()
    proc.wait(10)
    raise RuntimeError(f"sandbox server did not start: {' '.join(cmd)}")


class PeakRss:
    """Samples this process's RSS every 20 ms while a run lasts."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self.start = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _filler(i: int) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for n, name in enumerate(FILLER):
        kind = n % 4
        if kind == 0:
            values[name] = str((i * 7 + n) % 1000)
        elif kind == 1:
            values[name] = f"2026-01-{1 + n % 28:02d}T12:{n % 60:02d}:00.000Z"
        elif kind == 2:
            values[name] = None if i % 2 else f"value {n} of record {i}"
        else:
            values[name] = f"{i}{n:03d}"
    return values


def _setup() -> Mapping:
    workspace = Workspace.objects.create(name="Bench")
    source = Source.objects.create(workspace=workspace, name="HubSpot", schema_name="bench")
    SourceCollection.objects.create(source=source, collection="contacts", properties=SCHEMA)
    model = DataModel.objects.create(source=source, collection="contacts", name="Contacts", columns=list(SCHEMA))
    destination = Destination.objects.create(workspace=workspace, name="Segment")
    space = ProfileSpace.objects.create(
        destination=destination, name="Bench", write_key=DEFAULT_WRITE_KEY, region="sandbox"
    )
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(1, RECORDS + 1):
        rows.append(
            Record(
                source=source,
                collection="contacts",
                object_id=1000 + i,
                properties={
                    "email": f"contact{i}@example.com",
                    "firstname": "Ada",
                    "lastname": f"Lovelace {i}",
                    "company": "Analytical Engines",
                    "city": "London",
                    "num_employees": str(i % 500),
                    "is_customer": "true" if i % 2 else "false",
                    "createdate": str(int((base + timedelta(minutes=i)).timestamp() * 1000)),
                    "interests": "golf;tennis" if i % 3 else "",
                    "lifecyclestage": "customer",
                    "hs_object_id": str(1000 + i),
                    **_filler(i),
                },
                created_at=base,
                updated_at=base + timedelta(seconds=i),
                content_hash=f"{i:064d}",
                change_seq=i,
            )
        )
        if len(rows) == 5000:
            Record.objects.bulk_create(rows)
            rows = []
    Record.objects.bulk_create(rows)
    return Mapping.objects.create(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=TRAITS,
        enabled=True,
    )


def _report(label: str, run, seconds: float, rss: PeakRss) -> None:
    rate = run.sent / seconds if seconds else 0
    print(
        f"  {label:<34} {seconds:7.2f} s  considered {run.considered:>7,}  sent {run.sent:>7,}  "
        f"{rate:>8,.0f} msg/s  requests {run.requests:>3}  batches {run.batches:>3}  "
        f"peak RSS {rss.peak / 2**20:6.1f} MiB (+{(rss.peak - rss.start) / 2**20:.1f})"
    )


@pytest.mark.bench
def test_bench_delivery_100k(transactional_db, settings):
    get_default_workspace()
    started = time.perf_counter()
    mapping = _setup()
    print(
        f"\nDelivery bench ({connection.vendor}, {RECORDS:,} records of {PROPERTIES} properties; mirror filled in "
        f"{time.perf_counter() - started:.1f} s)"
    )
    port = _free_port()
    proc, server = _serve(port)
    settings.BASE_URL = f"http://127.0.0.1:{port}"
    print(f"  Segment sandbox served by: {server}")
    try:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            first = deliver(mapping_id=mapping.pk)
            t_first = time.perf_counter() - t0
        _report("first run", first, t_first, rss)
        first_rss_growth = rss.peak - rss.start

        with PeakRss() as rss:
            t0 = time.perf_counter()
            again = deliver(mapping_id=mapping.pk)
            t_again = time.perf_counter() - t0
        _report("no-change run", again, t_again, rss)

        mapping.traits = list(reversed(TRAITS))  # same payloads, new configuration hash
        mapping.save()
        with PeakRss() as rss:
            t0 = time.perf_counter()
            reconsider = deliver(mapping_id=mapping.pk)
            t_reconsider = time.perf_counter() - t0
        _report("reconsider run (edit, 0 changed)", reconsider, t_reconsider, rss)
        print(f"    reconsidered {reconsider.considered / t_reconsider:,.0f} records/s")
        print(
            f"  process peak RSS over the whole bench: "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )

        # Memory must not grow with data: the delivery streams chunks and batches.
        assert first_rss_growth < 64 * 2**20
        assert first.status == "succeeded" and first.sent == RECORDS
        assert first.batches == first.requests
        assert SegmentMessage.objects.count() == RECORDS
        assert (again.considered, again.sent, again.requests) == (0, 0, 0)
        assert (reconsider.considered, reconsider.sent, reconsider.unchanged) == (RECORDS, 0, RECORDS)
    finally:
        close_session()
        proc.terminate()
        proc.wait(10)


# --- hubsync's delivery against Segment's official client, on SQLite and on PostgreSQL, in one run -----------
COMPARE_ROUNDS = int(os.environ.get("BENCH_DELIVER_ROUNDS", "3"))


def _spawn(kind: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.deliver_compare", kind],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc


def _ready(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"benchmark process did not start: {line!r}")
    return line.split()[1:]


def _postgres_url() -> str | None:
    """PostgreSQL for the comparison: DATABASE_URL when it is PostgreSQL, else BENCH_POSTGRES_URL."""
    for url in (os.environ.get("DATABASE_URL", ""), os.environ.get("BENCH_POSTGRES_URL", "")):
        if url.startswith(("postgres://", "postgresql://")):
            return url
    return None


def _fresh_postgres(url: str) -> str:
    """A new, empty database next to the one `url` names (dropped first if a previous run left it)."""
    import psycopg

    parts = urlparse(url)
    name = f"{parts.path.lstrip('/') or 'hubsync'}_bench_compare"
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parts._replace(path=f"/{name}"))


def _double_stats(root: str) -> dict:
    return requests.get(f"{root}/stats", timeout=30).json()


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_bench_delivery_vs_official_client():
    """100,000 contacts × 20 traits: hubsync's first delivery (read, build, hash, send, record every state) on
    SQLite and on PostgreSQL, and the official client's identify + flush of the same messages, each in its own
    process, posting to the same local Segment double, in interleaved rounds. Prints messages/s and the ratio."""
    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    double = subprocess.Popen(
        [sys.executable, "-m", "bench.segment_double", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    procs: dict[str, subprocess.Popen] = {}
    try:
        _ready(double)
        base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HUBSYNC_SQLITE_PATH")}
        base_env.update(HUBSYNC_TESTING="1", HUBSYNC_BASE_URL=root, BENCH_SEGMENT_URL=root, SANDBOX="1")
        sqlite_path = ROOT / "var" / "bench_deliver_compare.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        procs["SQLite"] = _spawn("engine", {**base_env, "HUBSYNC_SQLITE_PATH": str(sqlite_path)})
        pg = _postgres_url()
        if pg:
            procs["PostgreSQL"] = _spawn("engine", {**base_env, "DATABASE_URL": _fresh_postgres(pg)})
        procs["official client"] = _spawn("client", base_env)
        print(f"\nDelivery vs segment-analytics-python ({RECORDS:,} contacts, 20 traits, {COMPARE_ROUNDS} rounds)")
        for label, proc in procs.items():
            info = _ready(proc)
            if info:
                print(f"  {label}: mirror filled in {info[1]} s")
        if not pg:
            print("  PostgreSQL skipped: set DATABASE_URL or BENCH_POSTGRES_URL to a PostgreSQL server")
        rates: dict[str, list[float]] = {label: [] for label in procs}
        cpus: dict[str, list[float]] = {label: [] for label in procs}
        labels = list(procs)
        for n in range(COMPARE_ROUNDS):
            order = labels[n % len(labels) :] + labels[: n % len(labels)]  # interleaved, rotated
            for label in order:
                proc = procs[label]
                requests.post(f"{root}/reset", timeout=30)
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("round\n")
                proc.stdin.flush()
                figures = json.loads(proc.stdout.readline())
                stats = _double_stats(root)
                rate = figures["sent"] / figures["seconds"]
                rates[label].append(rate)
                cpus[label].append(figures["cpu"] / figures["sent"] * 1e6)
                print(
                    f"  round {n + 1} {label:<16} {figures['seconds']:6.2f} s  {rate:>8,.0f} msg/s  "
                    f"CPU {figures['cpu']:6.2f} s  requests {stats['requests']:>5}  load {os.getloadavg()[0]:.1f}"
                )
                assert figures["sent"] == RECORDS
                assert stats["messages"] == RECORDS and stats["distinct_message_ids"] == RECORDS, stats
        client = statistics.median(rates["official client"])
        client_cpu = statistics.median(cpus["official client"])
        print(f"  official client: {client:,.0f} msg/s (median), {client_cpu:.0f} µs CPU per message")
        for label in labels[:-1]:
            ours = statistics.median(rates[label])
            print(
                f"  hubsync on {label}: {ours:,.0f} msg/s (median) = {ours / client:.2f}× the official client; "
                f"{statistics.median(cpus[label]):.0f} µs CPU per message in its own process (the database "
                f"server's not counted)"
            )
    finally:
        for proc in procs.values():
            if proc.stdin:
                proc.stdin.close()
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        double.terminate()
        double.wait(10)

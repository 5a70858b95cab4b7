from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.hubsync.celery_worker import database_env, running_worker

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TOKEN = "health-token-for-tests"
OPERATOR = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _fresh_health_report(settings):
    """Each test starts without a cached report (the cache is shared, Redis in CI)."""
    from django.core.cache import cache

    from hubsync import healthz

    settings.HUBSYNC_HEALTH_TOKEN = TOKEN
    cache.delete_many([healthz.REPORT_KEY, healthz.LOCK_KEY])
    healthz._local.clear()
    yield
    cache.delete_many([healthz.REPORT_KEY, healthz.LOCK_KEY])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_all_up_then_worker_down(tmp_path, monkeypatch, settings):
    settings.HEALTH_WORKER_TIMEOUT = 3  # a loaded CI machine may answer slowly
    settings.HEALTH_CACHE_SECONDS = 0  # every request checks again: this test watches a worker go away
    with running_worker(tmp_path) as worker:
        # /healthz in this process asks the worker's broker.
        monkeypatch.setattr("hubsync.celery.app", worker.app)
        response = Client().get("/healthz", **OPERATOR)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert body["status"] == "ok" and body["failing"] == []
        assert body["database"]["ok"] and body["broker"]["ok"] and body["workers"]["ok"]
        assert body["broker"]["transport"] == ("redis" if settings.REDIS_URL else "filesystem")
        assert worker.name in body["workers"]["names"]
        worker.stop()

    settings.HEALTH_WORKER_TIMEOUT = 1  # nothing will answer: don't wait longer than production would
    response = Client().get("/healthz", **OPERATOR)
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["workers"]
    assert body["workers"]["ok"] is False and body["workers"]["names"] == []
    assert "no worker answered" in body["workers"]["error"]


PROBE = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/healthz", HTTP_AUTHORIZATION="Bearer probe-token")
print(response.status_code, json.dumps(response.json()))
"""


def healthz_in_subprocess(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict]:
    import json

    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "HUBSYNC_SQLITE_PATH"}}
    base.update(
        DJANGO_SETTINGS_MODULE="hubsync.settings",
        HUBSYNC_TESTING="1",
        HUBSYNC_VAR_DIR=str(tmp_path / "var"),
        HUBSYNC_HEALTH_TOKEN="probe-token",
        **env,
    )
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status, body = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(status), json.loads(body)


def test_broker_down_is_503_naming_the_broker(tmp_path):
    status, body = healthz_in_subprocess(tmp_path, {"REDIS_URL": f"redis://:s3cret@127.0.0.1:{closed_port()}/0"})
    assert status == 503
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False and "failing" in body["status"]
    assert body["failing"] == ["broker", "workers"]
    assert "s3cret" not in str(body)


@pytest.mark.django_db
def test_database_down_is_503_naming_the_database(tmp_path):
    env = database_env()
    if "DATABASE_URL" in env:
        env["DATABASE_URL"] = f"postgres://nobody:pw-s3cret@127.0.0.1:{closed_port()}/nothing"
    else:
        env["HUBSYNC_SQLITE_PATH"] = str(tmp_path / "missing-dir" / "db.sqlite3")  # cannot be opened
    status, body = healthz_in_subprocess(tmp_path, env)
    assert status == 503
    assert "database" in body["failing"]
    assert body["database"]["ok"] is False and body["database"]["error"]
    assert "pw-s3cret" not in str(body)


# --- the cached state, and what the internet sees -----------------------------------------------------------


@pytest.fixture
def slow_checks(monkeypatch):
    """hubsync.health's checks, counted, with the worker ping taking its full (here short) timeout."""
    import threading
    import time

    calls = []
    lock = threading.Lock()

    def check_all():
        with lock:
            calls.append(1)
        time.sleep(0.4)  # a ping nobody answers waits its whole timeout
        report = {
            "database": {"ok": True},
            "broker": {"ok": True, "transport": "redis"},
            "workers": {"ok": True, "count": 1, "names": ["celery@secret-host-7"]},
            "status": "ok",
            "failing": [],
        }
        return report, True

    monkeypatch.setattr("hubsync.health.check_all", check_all)
    return calls


@pytest.mark.django_db
def test_the_internet_sees_the_overall_state_only(slow_checks, client, owner_client):
    body = client.get("/healthz").json()
    assert body == {
        "status": "ok",
        "failing": [],
        "database": {"ok": True},
        "broker": {"ok": True},
        "workers": {"ok": True},
    }
    # A logged-in member who is not staff is still "the internet".
    assert "secret-host" not in owner_client.get("/healthz").content.decode()
    assert "secret-host" not in client.get("/healthz", HTTP_AUTHORIZATION="Bearer wrong").content.decode()


@pytest.mark.django_db
def test_operators_see_workers_and_broker(slow_checks, client, owner):
    body = client.get("/healthz", **OPERATOR).json()
    assert body["workers"]["names"] == ["celery@secret-host-7"] and body["broker"]["transport"] == "redis"
    assert body["age_seconds"] >= 0
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    staff = Client()
    staff.force_login(owner)
    assert staff.get("/healthz").json()["workers"]["names"] == ["celery@secret-host-7"]


@pytest.mark.django_db
def test_requests_answer_from_a_recent_report_without_pinging_each_time(slow_checks, client, settings):
    import time

    settings.HEALTH_CACHE_SECONDS = 60
    client.get("/healthz")
    started = time.monotonic()
    for _ in range(20):
        assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 0.4 * 2  # twenty answers in less than two pings' time
    assert len(slow_checks) == 1


def test_concurrent_requests_share_one_check(slow_checks, settings):
    """Eight requests at once, nothing cached: one of them checks, the others wait for its answer."""
    from concurrent.futures import ThreadPoolExecutor

    from hubsync import healthz

    settings.HEALTH_CACHE_SECONDS = 60
    with ThreadPoolExecutor(8) as pool:
        entries = list(pool.map(lambda _: healthz.current(), range(8)))
    assert len(slow_checks) == 1
    assert all(entry["ok"] for entry in entries)
    # Once stale, again exactly one refresh; the others answer from the previous report meanwhile.
    settings.HEALTH_CACHE_SECONDS = 0
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: healthz.current(), range(8)))
    assert 2 <= len(slow_checks) <= 3  # a thread that starts after the refresh ended may refresh once more


def test_no_shared_cache_still_answers_from_one_check_per_process(slow_checks, settings, monkeypatch):
    from hubsync import healthz

    def down(*args, **kwargs):
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr(healthz.cache, "get", down)
    settings.HEALTH_CACHE_SECONDS = 60
    assert healthz.current()["ok"] and healthz.current()["ok"]
    assert len(slow_checks) == 1

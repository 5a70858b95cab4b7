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


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_all_up_then_worker_down(tmp_path, monkeypatch, settings):
    settings.HEALTH_WORKER_TIMEOUT = 3  # a loaded CI machine may answer slowly
    with running_worker(tmp_path) as worker:
        # /healthz in this process asks the worker's broker.
        monkeypatch.setattr("hubsync.celery.app", worker.app)
        response = Client().get("/healthz")
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert body["status"] == "ok" and body["failing"] == []
        assert body["database"]["ok"] and body["broker"]["ok"] and body["workers"]["ok"]
        assert body["broker"]["transport"] == ("redis" if settings.REDIS_URL else "filesystem")
        assert worker.name in body["workers"]["names"]
        worker.stop()

    settings.HEALTH_WORKER_TIMEOUT = 1  # nothing will answer: don't wait longer than production would
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["workers"]
    assert body["workers"]["ok"] is False and body["workers"]["names"] == []
    assert "no worker answered" in body["workers"]["error"]


PROBE = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/healthz")
print(response.status_code, json.dumps(response.json()))
"""


def healthz_in_subprocess(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict]:
    import json

    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "HUBSYNC_SQLITE_PATH"}}
    base.update(
        DJANGO_SETTINGS_MODULE="hubsync.settings", HUBSYNC_TESTING="1", HUBSYNC_VAR_DIR=str(tmp_path / "var"), **env
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

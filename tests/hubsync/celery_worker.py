"""A real `celery -A hubsync worker` subprocess for integration tests.

The worker runs the project's own settings (plus a probe dispatcher) against the pytest test database and
the same broker as the test: Redis when REDIS_URL is set, otherwise the filesystem transport in a private
folder. `WorkerHandle.app` is a Celery app in the test process that talks to that broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from celery import Celery
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PROBE_PREFIX = "dispatch probe pid="
# The parent's own configuration must not leak into the worker; the worker gets exactly what we set below.
STRIP = {
    "DATABASE_URL", "REDIS_URL", "HUBSYNC_VAR_DIR", "HUBSYNC_SQLITE_PATH", "DJANGO_SETTINGS_MODULE", "DEBUG",
    "SECRET_KEY", "HUBSYNC_ENCRYPTION_KEYS",
}  # fmt: skip


def probe_dispatcher() -> str:
    """Runs inside the worker (registered by worker_settings): leaves a row the test can look for."""
    from hubsync.models import Workspace

    Workspace.objects.create(name=f"{PROBE_PREFIX}{os.getpid()}")
    return "probed"


def database_env() -> dict[str, str]:
    """Point a subprocess at the database this test uses (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.postgresql":
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return {"DATABASE_URL": f"postgres://{auth}@{host}:{port}/{db['NAME']}"}
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert str(db["NAME"]) not in ("", ":memory:") and "mode=memory" not in str(db["NAME"]), db["NAME"]
    return {"HUBSYNC_SQLITE_PATH": str(db["NAME"])}


@dataclass
class WorkerHandle:
    app: Celery
    name: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def producer_app(var_dir: Path) -> Celery:
    """A Celery app with the project's configuration, on the worker's broker."""
    from hubsync.celery import app as project_app

    app = Celery("hubsync", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.task_queues = project_app.conf.task_queues
    app.conf.task_routes = project_app.conf.task_routes
    if not settings.REDIS_URL:
        broker = var_dir / "broker"
        for sub in ("queue", "processed", "control"):
            (broker / sub).mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "data_folder_in": str(broker / "queue"),
            "data_folder_out": str(broker / "queue"),
            "processed_folder": str(broker / "processed"),
            "control_folder": str(broker / "control"),
        }
    return app


def wait_for_ping(app: Celery, name: str, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if app.control.ping(destination=[name], timeout=1.0):
            return time.monotonic() - started
    raise TimeoutError(f"worker {name} did not answer a ping within {timeout}s")


@contextmanager
def running_worker(tmp_path: Path) -> Iterator[WorkerHandle]:
    var_dir = tmp_path / "worker-var"
    env = {k: v for k, v in os.environ.items() if k not in STRIP}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.hubsync.worker_settings",
        HUBSYNC_VAR_DIR=str(var_dir),
        HUBSYNC_TESTING="1",
        SECRET_KEY=settings.SECRET_KEY,
        HUBSYNC_ENCRYPTION_KEYS=",".join(settings.HUBSYNC_ENCRYPTION_KEYS),
        PYTHONUNBUFFERED="1",
        **database_env(),
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    app = producer_app(var_dir)
    if settings.REDIS_URL:
        # Start on empty queues: messages left in this Redis database by earlier runs (tasks enqueued by tests
        # without a worker) must not run now, against this test's database.
        app.control.purge()
    name = f"probe-{uuid.uuid4().hex[:8]}@localhost"
    log = tmp_path / "worker.log"
    celery = Path(sys.executable).with_name("celery")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(celery), "-A", "hubsync", "worker", "-Q", "extract,deliver,alerts", "-n", name, "--concurrency=1",
             "--loglevel=INFO", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    handle = WorkerHandle(app=app, name=name, proc=proc, log=log)
    try:
        try:
            handle.ready_after = wait_for_ping(app, name)
        except TimeoutError:
            raise AssertionError(f"worker did not start:\n{handle.output()}") from None
        yield handle
    finally:
        handle.stop()
        app.close()

"""The Procfile as `make run` starts it: web + worker + beat on the embedded default, healthy, and gone after
Ctrl-C. (`make run` itself adds only the venv and migrate; its fresh-clone run is checked by hand.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.hubsync.test_settings import SETTINGS_ENV

ROOT = Path(__file__).resolve().parents[2]
# The Makefile's HONCHO: honcho with 30 s for a graceful stop.
HONCHO = "import honcho.manager, honcho.command; honcho.manager.KILL_WAIT = 30; honcho.command.main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HEALTH_TOKEN = "procfile-health-token"


def get_json(url: str) -> tuple[int, dict]:
    # As the monitoring does: with the health token, /healthz also names the broker transport and the workers.
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_procfile_lists_the_three_processes():
    procs = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(procs) == {"web", "worker", "beat"}
    assert "127.0.0.1:${PORT" in procs["web"]
    assert "-Q extract,deliver,alerts" in procs["worker"]
    assert "celery -A hubsync beat" in procs["beat"]


@pytest.mark.integration
def test_web_worker_and_beat_start_healthy_and_stop_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env.update(
        HUBSYNC_VAR_DIR=str(tmp_path / "var"),
        PORT=str(port),
        HUBSYNC_BASE_URL=f"http://127.0.0.1:{port}",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        WORKER_CONCURRENCY="1",
        HUBSYNC_HEALTH_TOKEN=HEALTH_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    log = (tmp_path / "honcho.log").open("w")
    honcho = subprocess.Popen(
        [sys.executable, "-c", HONCHO, "start", "-f", "Procfile", "--env", "/dev/null"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        status, body = 0, {}
        while time.monotonic() < deadline:
            try:
                status, body = get_json(f"http://127.0.0.1:{port}/healthz")
            except (OSError, ValueError):
                status = 0
            if status == 200:
                break
            time.sleep(1)
        output = (tmp_path / "honcho.log").read_text()
        assert status == 200, f"{body}\n{output}"
        assert body["broker"]["transport"] == "filesystem"
        assert body["workers"]["count"] >= 1
        processes = [honcho, *psutil.Process(honcho.pid).children(recursive=True)]
        assert len(processes) >= 4  # honcho + web + worker (+ its pool) + beat

        honcho.send_signal(signal.SIGINT)  # what Ctrl-C sends
        honcho.wait(timeout=45)
        gone, alive = psutil.wait_procs([psutil.Process(p.pid) for p in processes[1:] if psutil.pid_exists(p.pid)], 10)
        assert not alive, alive
        output = (tmp_path / "honcho.log").read_text()
        assert "SIGKILL" not in output  # everything stopped gracefully
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
        log.close()

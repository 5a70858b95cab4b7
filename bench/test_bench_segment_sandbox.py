"""How many messages per second the Segment sandbox accepts, served by its own server process.

100,000 identify messages in full batches of 2,500 (small messages: 2,500 must fit in 500 KB), then realistic
~400-byte messages in batches cut at 475,000 bytes, from 1 and from 4 concurrent senders; then how long the
inbox JSON takes to page and to build profiles over everything received. Run with `make bench`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import requests
from django.core.management import get_commands
from django.db import connection

from sandbox.segment.models import DEFAULT_WRITE_KEY, SegmentMessage, get_default_workspace

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{DEFAULT_WRITE_KEY}:".encode()).decode()}


def _free_port() -> int:
    for port in range(8400, 8500):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8400-8499")


def _child_env() -> dict[str, str]:
    """The server process must use the test database pytest-django just created."""
    env = {**os.environ, "HUBSYNC_TESTING": "1", "SANDBOX": "1"}
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        env["HUBSYNC_SQLITE_PATH"] = str(name)
    else:
        url = urlparse(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = urlunparse(url._replace(path=f"/{name}"))
    return env


def _serve(port: int) -> subprocess.Popen:
    if "sandbox_serve" in get_commands():
        cmd = [sys.executable, "manage.py", "sandbox_serve", "--port", str(port)]
    else:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        cmd = [gunicorn, "hubsync.wsgi", "-b", f"127.0.0.1:{port}", "--threads", "4", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/sandbox/segment/v1/_check", headers=AUTH, timeout=1).ok:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"sandbox server did not start: {' '.join(cmd)}")


def _small_batches(prefix: str, batches: int) -> list[bytes]:
    out = []
    for b in range(batches):
        messages = [
            {
                "type": "identify",
                "userId": f"{b * 2500 + i}",
                "messageId": f"{prefix}-{b}-{i}",
                "traits": {"email": f"u{b * 2500 + i}@example.com", "n": i},
                "timestamp": "2026-11-29T09:00:00.000Z",
            }
            for i in range(2500)
        ]
        body = json.dumps({"batch": messages, "sentAt": "2026-11-29T09:00:01.000Z"}).encode()
        assert len(body) < 500_000
        out.append(body)
    return out


def _realistic_batches(prefix: str, count: int) -> list[bytes]:
    out, current, size = [], [], 0
    for i in range(count):
        message = {
            "type": "identify",
            "userId": str(10_000_000 + i),
            "messageId": f"{prefix}-{i}-{'0' * 40}",
            "traits": {
                "email": f"contact{i}@example.com",
                "firstname": "Ada",
                "lastname": "Lovelace",
                "lifecyclestage": "customer",
                "createdate": "2026-01-01T00:00:00Z",
                "hs_object_id": str(10_000_000 + i),
                "city": "London",
                "company": "Analytical Engines",
            },
            "timestamp": "2026-11-29T09:00:00.000Z",
            "integrations": {"All": False},
            "context": {"library": {"name": "hubsync", "version": "0.1.0"}},
        }
        text = json.dumps(message)
        if size + len(text) > 475_000:
            out.append(('{"batch":[' + ",".join(current) + "]}").encode())
            current, size = [], 0
        current.append(text)
        size += len(text) + 1
    if current:
        out.append(('{"batch":[' + ",".join(current) + "]}").encode())
    return out


def _send_all(url: str, bodies: list[bytes], senders: int) -> float:
    def send(body: bytes) -> None:
        response = requests.post(url, data=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=120)
        assert response.status_code == 200, response.text

    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - started


@pytest.mark.bench
def test_segment_sandbox_ingest_throughput(transactional_db):
    get_default_workspace()
    port = _free_port()
    proc = _serve(port)
    base = f"http://127.0.0.1:{port}/sandbox/segment"
    try:
        server = "sandbox_serve" if "sandbox_serve" in get_commands() else "gunicorn --threads 4"
        print(f"\nSegment sandbox ingest ({connection.vendor}, server: {server})")
        total = 0
        for label, bodies, senders in [
            ("2,500-message batches, 1 sender ", _small_batches("a", 20), 1),
            ("2,500-message batches, 4 senders", _small_batches("b", 20), 4),
            ("~400 B messages (475 KB batches), 4 senders", _realistic_batches("c", 20_000), 4),
        ]:
            count = sum(body.count(b'"type": "identify"') for body in bodies)
            seconds = _send_all(f"{base}/v1/batch", bodies, senders)
            total += count
            print(f"  {label}: {count:,} messages in {seconds:.2f} s = {count / seconds:,.0f} messages/s")
        assert SegmentMessage.objects.count() == total

        started = time.perf_counter()
        page = requests.get(f"{base}/inbox/{DEFAULT_WRITE_KEY}.json", params={"page_size": 50}, timeout=120).json()
        print(f"  inbox page of 50 over {page['counts']['received']:,} messages: {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        profiles = requests.get(
            f"{base}/inbox/{DEFAULT_WRITE_KEY}.json", params={"view": "profiles", "page_size": 50}, timeout=300
        ).json()
        print(f"  profiles view ({profiles['total']:,} profiles): {time.perf_counter() - started:.2f} s")
        assert page["counts"]["received"] == total
    finally:
        proc.terminate()
        proc.wait(timeout=30)

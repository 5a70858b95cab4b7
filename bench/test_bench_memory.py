"""Peak RSS of `manage.py sync` (a first sync of 100k contacts and its delivery) on the embedded default (SQLite),
with DEBUG on and with DEBUG off, in the same run (`make bench`; BENCH_MEMORY_CONTACTS overrides the size).

Each sync runs in a fresh `manage.py sync` process, as a user runs it, so neither figure inherits the other's heap;
both sandboxes are served by `manage.py sandbox_serve` in their own process. Aim: DEBUG on within 10 % of DEBUG off
(Django logs every statement with DEBUG on; the engines must not let that log grow with the data).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from bench.test_bench_pipeline import Meter
from hubsync.models import Workspace
from sandbox.segment.models import SegmentWorkspace
from sources.models import Record, Source, SourceCollection
from tests.fixtures_sandbox import ROOT, HubSpotSandbox, sandbox_env, sandbox_process
from tests.mappings.reconcile_helpers import make_mapping

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

CONTACTS = int(os.environ.get("BENCH_MEMORY_CONTACTS", "100000"))
HUB_ID = 4700


def sync_process(base: str, source: Source, *, debug: bool) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of `manage.py sync SOURCE_ID` in its own process."""
    env = sandbox_env()
    env.pop("REDIS_URL", None)  # the embedded default: no Redis either
    env.update(
        DEBUG="1" if debug else "0",
        SANDBOX="1",
        HUBSYNC_BASE_URL=base,
        HUBSPOT_API_BASE="",
        HUBSPOT_RATE_LIMIT="0",
        HUBSPOT_SEARCH_RATE_LIMIT="0",
        # The secrets this process encrypted the token with (DEBUG off also insists on them being given).
        SECRET_KEY=django_settings.SECRET_KEY,
        HUBSYNC_ENCRYPTION_KEYS=",".join(django_settings.HUBSYNC_ENCRYPTION_KEYS),
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "sync", str(source.pk)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with Meter(proc.pid) as meter:
        _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return meter.peak / 2**20, meter.seconds


@pytest.mark.timeout(3600)
def test_bench_memory_debug_on_and_off(settings, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("measures the embedded default: run without DATABASE_URL")
    monkeypatch.setenv("DEBUG", "1")  # the sandbox process uses the embedded defaults
    print(f"\nmemory benchmark (manage.py sync, {connection.vendor}, {CONTACTS:,} contacts, first sync + delivery)")
    with sandbox_process() as base:
        hub = HubSpotSandbox(base)
        hub.set_knobs(rate_limits=False, latency_ms=0, error_rate=0, reset_rate=0, search_lag_seconds=0)
        hub.seed(HUB_ID, contacts=CONTACTS, companies=0, deals=0, tickets=0)
        peaks = {}
        for debug in (True, False):
            # A source of its own per measurement (same portal): both are first syncs of the whole portal.
            label = "on" if debug else "off"
            space_key = SegmentWorkspace.objects.create(name=f"bench-{label}").write_key
            tokens = hub.token(portal=HUB_ID)
            source = Source.objects.create(
                workspace=Workspace.objects.create(name=f"bench-{label}"), name="bench", schema_name="bench",
                hub_id=HUB_ID, token=tokens["refresh_token"], access_token=tokens["access_token"],
                access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
            )  # fmt: skip
            SourceCollection.objects.create(source=source, collection="contacts")
            make_mapping(source, space_key)
            peak, seconds = sync_process(base, source, debug=debug)
            assert Record.objects.filter(source=source).count() == CONTACTS
            peaks[debug] = peak
            print(f"  DEBUG {label:<3}  peak RSS {peak:7.1f} MiB  ({seconds:6.1f} s)")
        ratio = peaks[True] / peaks[False]
        print(f"  DEBUG on / off = {ratio:.2f} (aim: at most 1.10)")

"""What the HubSpot client adds per page: list pages/s through `HubSpotClient` against the sandbox (1M-contact
portal, 60 properties, limit=100, sandbox limits off), with our limiter off and with the Redis limiter on (a
budget too large to bind, so only its round trip is measured). The client's CPU per page is its own cost
(request building, limiter, JSON decoding); the extraction engine's benchmark builds on top of it.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest
from django.test import override_settings

from sources.hubspot import HubSpotClient
from sources.ratelimit import Budget, LocalRateLimiter, RedisRateLimiter
from tests.fixtures_sandbox import sandbox_process

PORTAL = 2002
DURATION = 6.0


def _measure(client: HubSpotClient, names: list[str]) -> tuple[float, float]:
    me = psutil.Process()
    for _ in range(3):
        client.list_page("contacts", properties=names)
    cpu_before = sum(me.cpu_times()[:2])
    pages = 0
    after = None
    started = time.perf_counter()
    while time.perf_counter() - started < DURATION:
        page = client.list_page("contacts", properties=names, after=after)
        assert len(page["results"]) == 100
        after = page["paging"]["next"]["after"]
        pages += 1
    elapsed = time.perf_counter() - started
    cpu = sum(me.cpu_times()[:2]) - cpu_before
    return pages / elapsed, cpu / pages * 1000


@pytest.mark.bench
@pytest.mark.django_db(transaction=True)
def test_client_list_pages_per_second():
    from sandbox.hubspot.api import issue_tokens
    from sandbox.hubspot.models import Knobs
    from sandbox.hubspot.portals import seed_portal

    portal = seed_portal(hub_id=PORTAL, contacts=1_000_000, companies=0, deals=0, tickets=0, seed=7, name="Bench")
    knobs = Knobs.load()
    knobs.rate_limits = False
    knobs.save()
    token = issue_tokens(portal=portal, scopes=["crm.objects.contacts.read"], client_id="bench", lifetime=3600)

    with sandbox_process() as root, override_settings(HUBSPOT_API_BASE=root + "/sandbox/hubspot"):
        limiters = {"limiter off": LocalRateLimiter({"general": Budget(0, 1), "search": Budget(0, 1)})}
        if os.environ.get("REDIS_URL"):
            import redis

            limiters["Redis limiter"] = RedisRateLimiter(
                redis.Redis.from_url(os.environ["REDIS_URL"]),
                {"general": Budget(10_000_000, 10_000), "search": Budget(10_000_000, 1000)},
            )
        results = {}
        for label, limiter in limiters.items():
            with HubSpotClient(access_token=token["access_token"], hub_id=PORTAL, limiter=limiter) as client:
                names = [p["name"] for p in client.get_properties("contacts")][:60]
                results[label] = _measure(client, names)
            limiter.reset(str(PORTAL))
    for label, (rate, cpu_ms) in results.items():
        print(
            f"\nHubSpotClient list ({label}; 1M-contact portal, 60 properties, limit=100): {rate:.0f} pages/s "
            f"= {rate * 100:.0f} records/s wall-clock, client CPU {cpu_ms:.2f} ms/page; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
    assert all(rate > 10 for rate, _ in results.values())

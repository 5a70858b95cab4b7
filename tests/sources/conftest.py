"""Fixtures for the extraction tests: the HubSpot sandbox reached by our client over real HTTP."""

from __future__ import annotations

import pytest


@pytest.fixture
def sandbox(hubspot_sandbox, settings):
    """The sandbox on live_server, reached by our client through BASE_URL; our limiter off and fast backoff,
    the sandbox's own rate limits off (tests that want 429s turn them on)."""
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    settings.HUBSPOT_RETRY_BASE_SECONDS = 0.02
    settings.HUBSPOT_RETRY_CAP_SECONDS = 0.2
    hubspot_sandbox.set_knobs(rate_limits=False)
    return hubspot_sandbox

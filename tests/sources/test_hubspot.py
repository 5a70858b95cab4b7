"""Pure parts of the HubSpot client: error parsing, redaction, log-safe URLs, backoff, URL splitting."""

from __future__ import annotations

import random

import pytest
import requests
from django.test import override_settings

from sources.hubspot import (
    BadRequest,
    HubSpotClient,
    HubSpotError,
    MissingScopes,
    api_base,
    backoff_delay,
    redact,
    safe_url,
)
from sources.ratelimit import Budget, LocalRateLimiter


def _response(status: int, body: bytes, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    return response


def test_api_base_defaults_to_the_sandbox_on_this_server():
    with override_settings(HUBSPOT_API_BASE="", BASE_URL="http://127.0.0.1:8123"):
        assert api_base() == "http://127.0.0.1:8123/sandbox/hubspot"
    with override_settings(HUBSPOT_API_BASE="https://api.hubapi.com/"):
        assert api_base() == "https://api.hubapi.com"


def test_error_from_hubspot_body():
    body = (
        b'{"status":"error","message":"This app hasn\'t been granted all required scopes",'
        b'"correlationId":"c0ffee","category":"MISSING_SCOPES","errors":[]}'
    )
    error = MissingScopes.from_response(_response(403, body))
    assert (error.status, error.category, error.correlation_id) == (403, "MISSING_SCOPES", "c0ffee")
    assert "granted" in error.message
    assert str(error) == "403 MISSING_SCOPES: This app hasn't been granted all required scopes (correlationId c0ffee)"


def test_error_from_html_gateway_body():
    error = HubSpotError.from_response(
        _response(502, b"<html>502 Bad Gateway</html>", {"X-HubSpot-Correlation-Id": "x1"})
    )
    assert error.status == 502 and error.correlation_id == "x1" and error.body == {}


def test_error_body_secrets_are_redacted():
    body = {"message": "m", "refresh_token": "sbx-hs-rt-secret", "context": {"access_token": ["at"], "ok": ["v"]}}
    error = BadRequest("m", status=400, body=body)
    assert "sbx-hs-rt-secret" not in repr(error.body)
    assert error.body["context"] == {"access_token": "•••", "ok": ["v"]}
    assert redact([{"client_secret": "s"}]) == [{"client_secret": "•••"}]


def test_safe_url_masks_tokens():
    url = "https://api.hubapi.com/oauth/v1/access-tokens/CJT2-secret-token?refresh_token=abc&code=xyz&limit=1"
    masked = safe_url(url)
    assert "CJT2" not in masked and "abc" not in masked and "xyz" not in masked
    assert masked.endswith("limit=1")


def test_backoff_is_full_jitter_and_capped():
    rng_state = random.getstate()
    try:
        delays = [backoff_delay(attempt, base=0.5, cap=4) for attempt in range(1, 10) for _ in range(50)]
    finally:
        random.setstate(rng_state)
    assert min(delays) >= 0 and max(delays) <= 4
    assert max(backoff_delay(1, base=0.5, cap=4) for _ in range(200)) <= 0.5


@override_settings(HUBSPOT_API_BASE="https://api.hubapi.com", HUBSPOT_MAX_URL_LENGTH=300)
def test_long_property_lists_are_split_to_fit_the_url():
    client = HubSpotClient(
        access_token="t", limiter=LocalRateLimiter({"general": Budget(0, 1), "search": Budget(0, 1)})
    )
    props = [f"custom_property_{i:03d}" for i in range(40)]
    in_url, rest = client._split_for_url("/crm/v3/objects/contacts", props, "12345", 100, False)
    assert in_url and rest and in_url + rest == props
    url = client.base + "/crm/v3/objects/contacts?" + client._list_query(in_url, "12345", 100, False)
    assert len(url) <= 300
    # One more property would not have fit.
    longer = client.base + "/crm/v3/objects/contacts?" + client._list_query(in_url + rest[:1], "12345", 100, False)
    assert len(longer) > 300
    assert client._split_for_url("/crm/v3/objects/contacts", props[:3], None, 100, False) == (props[:3], [])


def test_client_needs_a_source_or_a_token():
    with pytest.raises(ValueError):
        HubSpotClient()

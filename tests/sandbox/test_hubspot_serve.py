"""`manage.py sandbox_serve` as its own process (gunicorn): the way benchmarks and pipeline tests run it."""

from __future__ import annotations

import pytest
import requests

from tests.fixtures_sandbox import sandbox_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_sandbox_serve_serves_api_pages_limits_and_faults(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    headers = {"Authorization": f"Bearer {token}"}
    with sandbox_process() as root:
        base = root + "/sandbox/hubspot"
        page = requests.get(f"{base}/crm/v3/objects/contacts", params={"limit": 100}, headers=headers, timeout=10)
        assert page.status_code == 200 and len(page.json()["results"]) == 100
        assert page.headers["X-HubSpot-RateLimit-Remaining"] == "109"
        assert page.json()["paging"]["next"]["link"].startswith(base + "/crm/v3/objects/contacts?")
        assert requests.get(f"{base}/", timeout=10).status_code == 200  # sandbox pages
        # gunicorn's own request-line limit would answer 400 first; the sandbox answers 414 like HubSpot.
        long = requests.get(
            f"{base}/crm/v3/objects/contacts", params={"properties": "x" * 9000}, headers=headers, timeout=10
        )
        assert long.status_code == 414
        # Knobs changed through the JSON endpoint apply at once in the serving process.
        knobs = requests.post(f"{base}/_api/knobs", json={"fail_next": 1, "fail_next_status": "reset"}, timeout=10)
        assert knobs.status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{base}/crm/v3/objects/contacts", headers=headers, timeout=10)
        assert requests.get(f"{base}/crm/v3/objects/contacts", headers=headers, timeout=10).status_code == 200
        # Product URLs are not served here.
        assert requests.get(root + "/healthz", timeout=10).status_code == 404


def test_hubspot_sandbox_process_fixture_applies_knobs_at_once(hubspot_sandbox_process):
    sb = hubspot_sandbox_process
    headers = {"Authorization": f"Bearer {sb.access_token()}"}
    url = sb.base_url + "/crm/v3/objects/contacts"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    sb.set_knobs(rate_limit_max=1)
    assert requests.get(url, headers=headers, timeout=10).status_code == 429
    sb.reset_rate_limits()
    sb.set_knobs(rate_limits=False)
    result = sb.mutate(collection="contacts", create=1)
    created = requests.get(f"{url}/{result.created[0]}", headers=headers, timeout=10)
    assert created.status_code == 200  # record changes are never cached

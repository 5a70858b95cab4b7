"""The sandbox's JSON endpoints against hostile callers: another site's page in the developer's browser (the
endpoints are CSRF-exempt and need no login), and bodies that are not what they expect."""

from __future__ import annotations

import json

import pytest

from sandbox.hubspot.models import Knobs
from sandbox.segment.models import get_default_workspace

pytestmark = pytest.mark.django_db

HS = "/sandbox/hubspot/_api/knobs"


def seg_knobs() -> str:
    return f"/sandbox/segment/inbox/{get_default_workspace().write_key}/knobs.json"


def _post(client, url: str, body: object, **headers: str):
    return client.post(url, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_ORIGIN": "https://evil.example"},
        {"HTTP_ORIGIN": "http://testserver.evil.example"},
        {"HTTP_ORIGIN": "null"},  # sandboxed frames, data: URLs
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
    ],
)
def test_a_foreign_page_cannot_change_the_sandbox(client, headers):
    before = Knobs.load().latency_ms
    response = _post(client, HS, {"latency_ms": 1234}, **headers)
    assert response.status_code == 403 and response.json()["error"] == "cross_origin"
    assert Knobs.load().latency_ms == before
    assert _post(client, seg_knobs(), {"latency_ms": 1234}, **headers).status_code == 403
    assert get_default_workspace().latency_ms == 0
    assert client.post("/sandbox/segment/inbox/x/clear.json", **headers).status_code == 403
    assert _post(client, "/sandbox/segment/v1/batch", {"batch": []}, **headers).status_code == 403


def test_its_own_pages_and_clients_without_origin_still_can(client):
    assert _post(client, HS, {"latency_ms": 7}).status_code == 200  # curl, SDKs, hubsync's workers
    assert _post(client, HS, {"latency_ms": 8}, HTTP_ORIGIN="http://testserver").status_code == 200
    assert Knobs.load().latency_ms == 8
    response = _post(client, seg_knobs(), {"retry_after": 3}, HTTP_ORIGIN="http://testserver")
    assert response.status_code == 200
    assert client.get(HS, HTTP_ORIGIN="https://evil.example").status_code == 200  # reading is harmless


@pytest.mark.parametrize(
    "body",
    [b"[]", b"1", b"null", b'"x"', b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"{nope"],
)
@pytest.mark.parametrize("url", [HS, "seg", "/sandbox/hubspot/_api/portals/1001/mutate", "/sandbox/segment/v1/batch"])
def test_json_bodies_that_are_not_objects_are_a_400(client, body, url):
    url = seg_knobs() if url == "seg" else url
    response = client.post(url, body, content_type="application/json")
    assert response.status_code in (400, 401), response.content[:200]  # the Tracking API wants a key first


@pytest.mark.parametrize("value", [10**30, 60_001, 2**31, "1e309", float("inf")])
def test_latency_is_bounded(client, value):
    response = client.post(HS, json.dumps({"latency_ms": value}), content_type="application/json")
    assert response.status_code == 400
    assert Knobs.load().latency_ms <= 60_000
    assert _post(client, HS, {"search_lag_seconds": 1e300}).status_code == 400


@pytest.mark.parametrize("count", [10**30, float("inf"), 10**8])
def test_mutation_counts_are_bounded(client, count):
    response = client.post(
        "/sandbox/hubspot/_api/portals/1001/mutate",
        json.dumps({"collection": "contacts", "create": count}),
        content_type="application/json",
    )
    assert response.status_code in (400, 404)  # 404: no such portal in this database; never a 500 or a hang

"""The webhook receiver (sources.views.hooks, sources.live.receive): signature, timestamps, replays, size, routing,
deduplication by eventId, and a burst of 10,000 events."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from sources.live import parse_event
from sources.models import LiveCounter, LiveEvent, Source, SourceCollection
from tests.factories import SourceFactory
from tests.sources.live_helpers import PATH, event, post, signed_headers

PORTAL = 7001


@pytest.fixture
def live_source(workspace) -> Source:
    source = SourceFactory(workspace=workspace, hub_id=PORTAL, enabled=True)
    for name in ("contacts", "companies"):
        SourceCollection.objects.create(source=source, collection=name)
    return source


@pytest.fixture
def api() -> Client:
    return Client()


def test_signed_batch_is_stored_and_acknowledged(api, live_source):
    events = [event(PORTAL, 11), event(PORTAL, 12, "object.creation"), event(PORTAL, 13, "company.deletion")]
    response = post(api, events)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "events": 3, "stored": 3, "duplicates": 0, "ignored": 0}
    rows = {e.object_id: e for e in LiveEvent.objects.filter(source=live_source)}
    assert rows[11].kind == "change" and rows[11].collection == "contacts"
    assert rows[12].kind == "creation"
    assert rows[13].kind == "deletion" and rows[13].collection == "companies"  # legacy name: company.deletion
    assert all(r.state == LiveEvent.State.PENDING for r in rows.values())
    counter = LiveCounter.objects.get(source=live_source)
    assert (counter.received, counter.duplicates, counter.applied) == (3, 0, 0)
    assert counter.last_event_at is not None


@pytest.mark.parametrize(
    "tamper",
    ["signature", "secret", "body", "url", "missing"],
)
def test_bad_signature_is_401_and_nothing_is_stored(api, live_source, tamper):
    body = json.dumps([event(PORTAL, 21)]).encode()
    headers = signed_headers(
        body,
        url="http://evil.example/hooks/hubspot/" if tamper == "url" else f"http://testserver{PATH}",
        secret="not-the-secret" if tamper == "secret" else None,
    )
    if tamper == "signature":
        headers["X-HubSpot-Signature-v3"] = headers["X-HubSpot-Signature-v3"][:-4] + "AAA="
    if tamper == "body":
        body = body.replace(b"21", b"22")
    if tamper == "missing":
        del headers["X-HubSpot-Signature-v3"]
    response = api.post(PATH, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert not LiveEvent.objects.exists()


def test_stale_timestamp_is_401(api, live_source):
    old = int(time.time() * 1000) - 5 * 60 * 1000 - 1000
    response = post(api, [event(PORTAL, 31)], timestamp_ms=old)
    assert response.status_code == 401
    assert "5 minutes" in response.json()["message"]
    assert not LiveEvent.objects.exists()


def test_replayed_request_is_refused_and_stored_once(api, live_source):
    body = json.dumps([event(PORTAL, 41)]).encode()
    headers = signed_headers(body, url=f"http://testserver{PATH}")
    first = api.post(PATH, data=body, content_type="application/json", headers=headers)
    again = api.post(PATH, data=body, content_type="application/json", headers=headers)
    assert first.status_code == 200
    assert again.status_code == 409 and again.json()["error"] == "replayed"
    assert LiveEvent.objects.count() == 1


def test_duplicate_event_ids_are_stored_once_and_counted(api, live_source):
    one = event(PORTAL, 51, event_id=990001)
    assert post(api, [one, one]).json()["duplicates"] == 1
    retried = {**one, "attemptNumber": 1}  # HubSpot's retry: a new request, the same eventId
    assert post(api, [retried]).json() == {"status": "ok", "events": 1, "stored": 0, "duplicates": 1, "ignored": 0}
    assert LiveEvent.objects.filter(event_id=990001).count() == 1
    counter = LiveCounter.objects.get(source=live_source)
    assert (counter.received, counter.duplicates) == (3, 2)


def test_events_route_by_portal_to_every_live_source(api, live_source, workspace, other_workspace):
    twin = SourceFactory(workspace=other_workspace, hub_id=PORTAL, enabled=True)  # same HubSpot account
    SourceCollection.objects.create(source=twin, collection="contacts")
    off = SourceFactory(workspace=workspace, hub_id=PORTAL, enabled=True, live_enabled=False)
    SourceCollection.objects.create(source=off, collection="contacts")
    disabled = SourceFactory(workspace=workspace, hub_id=PORTAL, enabled=False)
    SourceCollection.objects.create(source=disabled, collection="contacts")
    response = post(
        api,
        [
            event(PORTAL, 61),
            event(PORTAL, 62, type_id="0-3"),  # deals: no source syncs them
            event(9999, 63),  # an account nobody connected
            event(PORTAL, 64, "object.associationChange"),  # not a record change
        ],
    )
    assert response.status_code == 200
    assert response.json()["ignored"] == 3
    assert set(LiveEvent.objects.values_list("source_id", "object_id")) == {(live_source.pk, 61), (twin.pk, 61)}


def test_body_too_large_is_413(api, live_source, settings):
    settings.HUBSYNC_WEBHOOK_MAX_BYTES = 2000
    events = [event(PORTAL, 70 + i) for i in range(30)]
    response = post(api, events)
    assert response.status_code == 413
    assert not LiveEvent.objects.exists()


@pytest.mark.parametrize("body", [b"not json", b"42", b'"text"'])
def test_signed_garbage_is_400(api, live_source, body):
    response = post(api, body)
    assert response.status_code == 400
    assert not LiveEvent.objects.exists()


def test_get_is_405(api):
    assert api.get(PATH).status_code == 405


def test_behind_a_reverse_proxy_the_public_url_is_signed(api, live_source, settings):
    """HubSpot signs the URL it called (https://sync.example.com/...); the app sees http://127.0.0.1:8000/..."""
    settings.HUBSYNC_PUBLIC_URL = "https://sync.example.com"
    response = post(api, [event(PORTAL, 81)], url="https://sync.example.com/hooks/hubspot/")
    assert response.status_code == 200
    # Percent-escapes HubSpot decodes before signing: a query string with an encoded colon still matches.
    body = json.dumps([event(PORTAL, 82)]).encode()
    headers = signed_headers(body, url="https://sync.example.com/hooks/hubspot/?k=a:b")
    response = api.post(PATH + "?k=a%3Ab", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200, response.content
    assert LiveEvent.objects.count() == 2


def test_x_forwarded_headers_when_trusted(api, live_source, settings):
    settings.USE_X_FORWARDED_HOST = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["*"]
    body = json.dumps([event(PORTAL, 91)]).encode()
    headers = signed_headers(body, url="https://hooks.example.org/hooks/hubspot/")
    headers.update({"X-Forwarded-Host": "hooks.example.org", "X-Forwarded-Proto": "https"})
    response = api.post(PATH, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200, response.content


def test_parse_event_is_liberal():
    now_ms = int(time.time() * 1000)
    from django.utils import timezone

    e = parse_event(
        {
            "eventId": "5",
            "portalId": "7",
            "subscriptionType": "contact.merge",
            "primaryObjectId": "10",
            "mergedObjectIds": [11, "12"],
            "newObjectId": 13,
            "occurredAt": now_ms,
        },
        now=timezone.now(),
    )
    assert e is not None and e.kind == "merge" and e.collection == "contacts"
    assert e.object_id == 13 and set(e.related) == {10, 11, 12}
    assert parse_event({"eventId": 1, "portalId": 2, "subscriptionType": "object.creation"}, now=timezone.now()) is None
    assert parse_event("nope", now=timezone.now()) is None


def test_a_burst_of_10000_events_is_absorbed(api, live_source):
    """HubSpot after an outage: 100 requests of 100 events, every one stored once, a constant number of queries per
    request (no per-event query)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    total = 0
    started = time.perf_counter()
    for batch in range(100):
        events = [event(PORTAL, 100_000 + batch * 100 + i) for i in range(100)]
        with CaptureQueriesContext(connection) as queries:
            response = post(api, events)
        assert response.status_code == 200
        total += response.json()["stored"]
        assert len(queries) <= 12, [q["sql"][:80] for q in queries]
    elapsed = time.perf_counter() - started
    assert total == 10_000
    assert LiveEvent.objects.filter(source=live_source, state=LiveEvent.State.PENDING).count() == 10_000
    assert LiveCounter.objects.get(source=live_source).received == 10_000
    print(f"receiver: 10,000 events in {elapsed:.2f} s = {10_000 / elapsed:,.0f} events/s")


def test_events_are_coalesced_into_one_task_per_window(
    api, live_source, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """The first new event of a (source, collection) schedules the live task a window later; the ones arriving
    meanwhile ride with it; a duplicate schedules nothing."""
    from django.core.cache import cache

    from sources.live.receive import SCHEDULE_KEY
    from sources.tasks import apply_live

    settings.HUBSYNC_LIVE_COALESCE_SECONDS = 2
    keys = [SCHEDULE_KEY.format(source_id=live_source.pk, collection=c) for c in ("contacts", "companies")]
    cache.delete_many(keys)
    sent: list[tuple[dict, float]] = []
    monkeypatch.setattr(apply_live, "apply_async", lambda kwargs, countdown: sent.append((kwargs, countdown)))
    repeated = event(PORTAL, 1)
    with django_capture_on_commit_callbacks(execute=True):
        for object_id in (1, 2, 3):
            assert post(api, [event(PORTAL, object_id)]).status_code == 200
        post(api, [event(PORTAL, 9, type_id="0-2")])
        post(api, [repeated])
    assert sorted((k["collection"], c) for k, c in sent) == [("companies", 2.1), ("contacts", 2.1)]
    assert all(k["source_id"] == live_source.pk for k, _c in sent)

    cache.delete_many(keys)  # the window passed
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        post(api, [{**repeated, "attemptNumber": 1}])  # a retried duplicate: nothing new, nothing to schedule
        post(api, [event(PORTAL, 4)])
    assert [k["collection"] for k, _c in sent] == ["contacts"]

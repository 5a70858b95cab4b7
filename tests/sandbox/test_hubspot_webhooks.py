"""The sandbox HubSpot's webhooks (sandbox.hubspot.webhooks): HubSpot's wire format and signature, batches of at
most 100, every kind of mutation, and the knobs (duplicates, pause/burst, failures and retries with attemptNumber),
checked against a plain HTTP server that records what it is sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.test import Client

from sandbox.hubspot import webhooks
from sandbox.hubspot.models import WebhookEvent
from sandbox.hubspot.mutate import archive_records, merge_records, mutate, purge_records, restore_records
from sandbox.hubspot.portals import get_portal, seed_portal

pytestmark = pytest.mark.django_db

PORTAL = 3401


class Capture:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hubspot/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [e for r in self.requests for e in json.loads(r["body"])]


@pytest.fixture
def capture() -> Iterator[Capture]:
    c = Capture()
    yield c
    c.server.shutdown()


@pytest.fixture
def portal(capture):
    seed_portal(hub_id=PORTAL, contacts=300, companies=5, deals=0, tickets=0)
    portal = get_portal(PORTAL)
    webhooks.configure(portal, {"target_url": capture.url, "retry_base_ms": 0})
    return portal


def test_events_have_hubspots_fields_and_a_valid_v3_signature(portal, capture):
    result = mutate(portal=portal, collection="contacts", create=1, update=1, seed=3)
    webhooks.flush()
    (request,) = capture.requests
    headers, body = request["headers"], request["body"]
    stamp = headers["X-HubSpot-Request-Timestamp"]
    expected = base64.b64encode(
        hmac.new(
            settings.SANDBOX_HUBSPOT_CLIENT_SECRET.encode(),
            b"POST" + capture.url.encode() + body + stamp.encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert headers["X-HubSpot-Signature-v3"] == expected
    assert headers["X-HubSpot-Signature-Version"] == "v3" and headers["Content-Type"] == "application/json"
    events = json.loads(body)
    kinds = {e["subscriptionType"] for e in events}
    assert kinds == {"object.creation", "object.propertyChange"}
    for e in events:
        assert {"eventId", "subscriptionId", "portalId", "appId", "occurredAt", "attemptNumber", "objectId"} <= set(e)
        assert e["portalId"] == PORTAL and e["objectTypeId"] == "0-1" and e["attemptNumber"] == 0
    changes = [e for e in events if e["subscriptionType"] == "object.propertyChange"]
    assert {e["objectId"] for e in changes} == {int(result.updated[0])}
    assert all(isinstance(e["propertyName"], str) and isinstance(e["propertyValue"], str) for e in changes)
    assert len({e["eventId"] for e in events}) == len(events)


def test_batches_hold_at_most_max_batch_events(portal, capture):
    webhooks.configure(portal, {"max_batch": 100})
    mutate(portal=portal, collection="contacts", create=250)
    webhooks.flush()
    assert [len(json.loads(r["body"])) for r in capture.requests] == [100, 100, 50]


def test_every_kind_of_change_is_sent(portal, capture):
    a, b, c, d = [int(i) for i in mutate(portal=portal, collection="contacts", create=4).created]
    archive_records(portal=portal, collection="contacts", ids=[a])
    restore_records(portal=portal, collection="contacts", ids=[a])
    purge_records(portal=portal, collection="contacts", ids=[b])
    new_id = merge_records(portal=portal, collection="contacts", primary_id=c, merged_id=d)
    webhooks.flush()
    by_kind = {}
    for e in capture.events():
        by_kind.setdefault(e["subscriptionType"], []).append(e)
    assert [e["objectId"] for e in by_kind["object.deletion"]] == [a]
    assert [e["objectId"] for e in by_kind["object.restore"]] == [a]
    assert [e["objectId"] for e in by_kind["object.privacyDeletion"]] == [b]
    (merge,) = by_kind["object.merge"]
    assert (merge["primaryObjectId"], merge["mergedObjectIds"], merge["newObjectId"]) == (c, [d], new_id)


def test_failed_deliveries_are_retried_with_attempt_numbers(portal, capture):
    webhooks.configure(portal, {"retry_base_ms": 60_000})
    capture.status = 503
    mutate(portal=portal, collection="companies", create=1)
    webhooks.flush()
    row = WebhookEvent.objects.get()
    assert row.attempt == 1 and row.next_ms - row.body["occurredAt"] >= 59_000  # retried a minute later
    WebhookEvent.objects.update(next_ms=0)
    webhooks.flush()
    WebhookEvent.objects.update(next_ms=0)
    capture.status = 200
    webhooks.flush()
    attempts = [json.loads(r["body"])[0]["attemptNumber"] for r in capture.requests]
    assert attempts == [0, 1, 2]
    assert json.loads(capture.requests[-1]["body"])[0]["objectTypeId"] == "0-2"
    row = WebhookEvent.objects.get()
    assert row.delivered_ms is not None
    # A new signature on every attempt (a new timestamp), never the same request replayed.
    assert len({r["headers"]["X-HubSpot-Signature-v3"] for r in capture.requests}) == len(capture.requests)


def test_duplicates_pause_and_gave_up(portal, capture):
    webhooks.configure(portal, {"duplicate_rate": 1.0, "paused": True, "max_attempts": 1})
    mutate(portal=portal, collection="contacts", create=3)
    webhooks.flush()
    assert capture.requests == []  # paused: an outage
    webhooks.configure(portal, {"paused": False})
    webhooks.flush()
    ids = [e["eventId"] for e in capture.events()]
    assert len(ids) == 6 and len(set(ids)) == 3  # each event twice, same eventId

    capture.status = 500
    mutate(portal=portal, collection="contacts", create=1)
    webhooks.flush()
    assert WebhookEvent.objects.filter(gave_up=True).count() == 1


def test_fail_next_counts_a_received_delivery_as_failed(portal, capture):
    webhooks.configure(portal, {"fail_next": 1})
    mutate(portal=portal, collection="contacts", create=1)
    webhooks.flush()
    webhooks.flush()
    assert len(capture.requests) == 2  # sent, "lost", sent again
    assert [json.loads(r["body"])[0]["attemptNumber"] for r in capture.requests] == [0, 1]


def test_json_api_and_page(portal, capture):
    client = Client()
    url = f"/sandbox/hubspot/_api/portals/{PORTAL}/webhooks"
    got = client.get(url).json()
    assert got["target_url"] == capture.url and got["configured"] is True and got["outbox"]["pending"] == 0
    changed = client.post(url, {"delay_ms": 250, "shuffle": True}, content_type="application/json").json()
    assert changed["delay_ms"] == 250 and changed["shuffle"] is True
    assert client.post(url, {"nope": 1}, content_type="application/json").status_code == 400
    assert client.post(url, {"target_url": "ftp://x"}, content_type="application/json").status_code == 400
    page = client.get(f"/sandbox/hubspot/portals/{PORTAL}/").content.decode()
    assert 'id="webhooks"' in page and capture.url in page
    response = client.post(
        f"/sandbox/hubspot/portals/{PORTAL}/edit",
        {"collection": "contacts", "object_id": "1", "property": "firstname", "value": "Ada"},
    )
    assert response.status_code == 302
    assert WebhookEvent.objects.filter(body__propertyName="firstname", body__propertyValue="Ada").exists()


def test_no_subscription_no_events(settings):
    settings.SANDBOX_WEBHOOKS = False
    seed_portal(hub_id=PORTAL + 1, contacts=10, companies=0, deals=0, tickets=0)
    mutate(portal=get_portal(PORTAL + 1), collection="contacts", update=2)
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_lanes_send_every_event_once(capture):
    """The background sender's lanes (HubSpot's maxConcurrentRequests) claim disjoint batches."""
    seed_portal(hub_id=PORTAL, contacts=10, companies=0, deals=0, tickets=0)
    portal = get_portal(PORTAL)
    webhooks.configure(portal, {"target_url": capture.url, "concurrency": 4, "max_batch": 50, "paused": True})
    mutate(portal=portal, collection="contacts", create=1000)
    webhooks.configure(portal, {"paused": False})
    webhooks.deliver_due(concurrent=True)
    deadline = time.monotonic() + 20
    while WebhookEvent.objects.filter(delivered_ms__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the sender thread (kicked by the commit) may hold the last claims
    ids = [e["eventId"] for e in capture.events()]
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert all(len(json.loads(r["body"])) <= 50 for r in capture.requests)

"""The sandbox's webhooks: every change of a subscribed portal's records becomes events, POSTed like HubSpot does.

What HubSpot does (its Webhooks API and "Validating requests" documentation), and so what this does:

- A JSON array of **up to 100 events** per POST to the target URL. Fields: ``eventId``, ``subscriptionId``,
  ``portalId``, ``appId``, ``occurredAt`` (epoch ms), ``subscriptionType``, ``attemptNumber`` (0 on the first
  try), ``objectId``, ``objectTypeId`` (generic ``object.*`` subscriptions), ``changeFlag``, ``changeSource``;
  ``propertyName`` / ``propertyValue`` for ``object.propertyChange`` (one event per changed property);
  ``primaryObjectId`` / ``mergedObjectIds`` / ``newObjectId`` for ``object.merge``. Types sent here:
  ``object.creation``, ``object.propertyChange``, ``object.deletion`` (archived: the recycle bin),
  ``object.privacyDeletion`` (permanently deleted: GDPR delete, purge), ``object.merge``, ``object.restore``.
- Signed: ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(the app's client secret, "POST" + target URL + body +
  timestamp)), ``X-HubSpot-Request-Timestamp`` (ms); also ``X-HubSpot-Signature-Version: v3``,
  ``X-HubSpot-Timeout-Millis`` and HubSpot's User-Agent. Secret: settings.SANDBOX_HUBSPOT_CLIENT_SECRET (what
  HUBSPOT_CLIENT_SECRET holds in sandbox mode).
- Anything but a 2xx within the timeout is retried later (HubSpot: for about 3 days, with growing delays; here
  `retry_base_ms` doubling, `max_attempts` tries), with ``attemptNumber`` counting up and a new signature.

Events are outbox rows (models.WebhookEvent) written in the mutation's own transaction; a background thread (the
sender) POSTs them after commit, never inside the mutating request. Rows are claimed with a short lease (FOR UPDATE
SKIP LOCKED on PostgreSQL), so several processes may send without sending a batch twice at once. A receiver that
was down gets every event once it is back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import random
import threading
from collections.abc import Iterable
from typing import Any

import requests
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Count, F, Min, Q

from . import data
from .models import Portal, WebhookEvent, WebhookSubscription
from .schema import resolve_type
from .tokens import APP_ID

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
LEASE_MS = 30_000
RETRY_CAP_MS = 10 * 60_000
USER_AGENT = "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio-http-client) - sandbox"
# subscriptionId per subscription type (HubSpot: one per subscription of the app).
SUBSCRIPTION_IDS = {
    "object.creation": 101,
    "object.propertyChange": 102,
    "object.deletion": 103,
    "object.privacyDeletion": 104,
    "object.merge": 105,
    "object.restore": 106,
}
KNOB_FIELDS = (
    "active",
    "target_url",
    "max_batch",
    "delay_ms",
    "duplicate_rate",
    "shuffle",
    "paused",
    "fail_next",
    "retry_base_ms",
    "max_attempts",
    "concurrency",
)


def default_target() -> str:
    return settings.BASE_URL.rstrip("/") + "/hooks/hubspot/"


def subscription(portal_id: int) -> WebhookSubscription | None:
    """The portal's subscription: its row, or (settings.SANDBOX_WEBHOOKS) an unsaved default pointing at this
    server's receiver. None: the portal sends no webhooks."""
    sub = WebhookSubscription.objects.filter(portal_id=portal_id).first()
    if sub is None and settings.SANDBOX_WEBHOOKS:
        sub = WebhookSubscription(portal_id=portal_id, target_url=default_target())
    return sub if sub is not None and sub.active and sub.target_url else None


def configure(portal: Portal, values: dict[str, Any]) -> WebhookSubscription:
    """Create or change a portal's subscription from {knob: value} (the sandbox page and its JSON twin)."""
    sub = WebhookSubscription.objects.filter(portal=portal).first() or WebhookSubscription(
        portal=portal, target_url=default_target()
    )
    unknown = sorted(set(values) - set(KNOB_FIELDS))
    if unknown:
        raise ValueError(f"unknown webhook settings: {', '.join(unknown)}")
    for name, value in values.items():
        field = WebhookSubscription._meta.get_field(name)
        if field.get_internal_type() == "BooleanField":
            value = value in (True, "1", "on", "true", "True", 1)
        elif field.get_internal_type() == "FloatField":
            value = float(value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a share between 0 and 1")
        elif field.get_internal_type() == "PositiveIntegerField":
            value = int(value)
            if value < 0:
                raise ValueError(f"{name} must not be negative")
        else:
            value = str(value).strip()
            if not value.startswith(("http://", "https://")):
                raise ValueError("the target URL must start with http:// or https://")
        setattr(sub, name, value)
    sub.max_batch = max(1, min(100, sub.max_batch))
    sub.concurrency = max(1, min(100, sub.concurrency))
    sub.max_attempts = max(1, sub.max_attempts)
    sub.save()
    if not sub.paused:
        transaction.on_commit(kick)
    return sub


def settings_dict(portal: Portal) -> dict[str, Any]:
    sub = WebhookSubscription.objects.filter(portal=portal).first()
    configured = sub is not None
    sub = sub or WebhookSubscription(portal=portal, target_url=default_target(), active=settings.SANDBOX_WEBHOOKS)
    values = {name: getattr(sub, name) for name in KNOB_FIELDS}
    return {**values, "configured": configured, "outbox": outbox_status(portal.hub_id)}


def outbox_status(portal_id: int) -> dict[str, Any]:
    qs = WebhookEvent.objects.filter(portal_id=portal_id)
    counts = qs.aggregate(
        pending=Count("id", filter=Q(delivered_ms__isnull=True, gave_up=False)),
        delivered=Count("id", filter=Q(delivered_ms__isnull=False)),
        failed=Count("id", filter=Q(gave_up=True)),
        retrying=Count("id", filter=Q(delivered_ms__isnull=True, gave_up=False, attempt__gt=0)),
    )
    last = qs.exclude(last_error="").order_by("-id").values_list("last_error", flat=True).first()
    return {**counts, "last_error": last or ""}


# --- events (called by sandbox.hubspot.mutate inside the mutation's transaction) ---------------------------------


def emit(portal_id: int, collection: str, events: Iterable[dict[str, Any]], *, at_ms: int | None = None) -> int:
    """Queue events of one object type for the portal's subscription (none: nothing happens). Each event gives
    `subscriptionType` and `objectId` and any type-specific fields; the common ones are filled in here."""
    sub = subscription(portal_id)
    if sub is None:
        return 0
    otype = resolve_type(collection)
    if otype is None:
        return 0
    stamp = at_ms if at_ms is not None else data.now_ms()
    rng = random.Random()
    rows = []
    for event in events:
        kind = event["subscriptionType"]
        body = {
            "subscriptionId": SUBSCRIPTION_IDS.get(kind, 100),
            "portalId": portal_id,
            "appId": APP_ID,
            "occurredAt": stamp,
            "objectTypeId": otype.type_id,
            "changeFlag": kind.split(".", 1)[1].upper(),
            "changeSource": "CRM_UI",
            **event,
        }
        body["objectId"] = int(body["objectId"])
        copies = 2 if sub.duplicate_rate and rng.random() < sub.duplicate_rate else 1
        rows.append(WebhookEvent(portal_id=portal_id, body=body, copies=copies, next_ms=stamp + sub.delay_ms))
    WebhookEvent.objects.bulk_create(rows, batch_size=1000)
    transaction.on_commit(kick)
    return len(rows)


def property_changes(object_id: int, values: dict[str, Any]) -> list[dict[str, Any]]:
    """One object.propertyChange per property, as HubSpot sends them (values as strings, cut like HubSpot's)."""
    return [
        {
            "subscriptionType": "object.propertyChange",
            "objectId": object_id,
            "propertyName": name,
            "propertyValue": "" if value is None else str(value)[:1000],
        }
        for name, value in values.items()
    ]


def simple(kind: str, object_ids: Iterable[int]) -> list[dict[str, Any]]:
    return [{"subscriptionType": f"object.{kind}", "objectId": int(i)} for i in object_ids]


# --- delivery --------------------------------------------------------------------------------------------------


def sign(secret: str, uri: str, body: bytes, timestamp: str) -> str:
    message = b"POST" + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _claim(portal_id: int, sub: WebhookSubscription, now: int) -> list[WebhookEvent]:
    with transaction.atomic():
        qs = WebhookEvent.objects.select_for_update(skip_locked=True).filter(
            portal_id=portal_id, delivered_ms__isnull=True, gave_up=False, next_ms__lte=now
        )
        rows = list(qs.order_by("?" if sub.shuffle else "id")[: sub.max_batch])
        if rows:
            WebhookEvent.objects.filter(pk__in=[r.pk for r in rows]).update(next_ms=now + LEASE_MS)
    return rows


def _post(sub: WebhookSubscription, rows: list[WebhookEvent]) -> tuple[bool, str]:
    events = []
    for row in rows:
        event = {"eventId": row.pk, **row.body, "attemptNumber": row.attempt}
        events += [event] * row.copies
    if sub.shuffle:
        random.shuffle(events)
    body = json.dumps(events, separators=(",", ":")).encode()
    timestamp = str(data.now_ms())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-HubSpot-Signature-v3": sign(settings.SANDBOX_HUBSPOT_CLIENT_SECRET, sub.target_url, body, timestamp),
        "X-HubSpot-Signature-Version": "v3",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Timeout-Millis": str(TIMEOUT_SECONDS * 1000),
    }
    try:
        response = requests.post(sub.target_url, data=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}: could not reach {sub.target_url}"
    if 200 <= response.status_code < 300:
        return True, ""
    return False, f"HTTP {response.status_code} from {sub.target_url}"


def _settle(sub: WebhookSubscription, rows: list[WebhookEvent], ok: bool, error: str) -> None:
    now = data.now_ms()
    if ok:
        WebhookEvent.objects.filter(pk__in=[r.pk for r in rows]).update(delivered_ms=now, last_error="")
        return
    for row in rows:
        row.attempt += 1
        row.last_error = error[:300]
        if row.attempt >= sub.max_attempts:
            row.gave_up = True
        row.next_ms = now + min(RETRY_CAP_MS, sub.retry_base_ms * 2 ** (row.attempt - 1))
    WebhookEvent.objects.bulk_update(rows, ["attempt", "last_error", "gave_up", "next_ms"])


def _send_one(pid: int, sub: WebhookSubscription) -> bool:
    """Claim, POST and settle one batch of the portal's due events; False when none is due."""
    rows = _claim(pid, sub, data.now_ms())
    if not rows:
        return False
    ok, error = _post(sub, rows)
    if sub.pk is not None and sub.fail_next:
        # Counted as failed whatever the answer (a timeout after the receiver stored the events).
        taken = WebhookSubscription.objects.filter(pk=sub.pk, fail_next__gt=0).update(fail_next=F("fail_next") - 1)
        sub.fail_next = max(0, sub.fail_next - 1)
        if taken:
            ok, error = False, "failed on purpose (fail_next)"
    _settle(sub, rows, ok, error)
    return True


def deliver_due(*, portal_id: int | None = None, max_batches: int = 1000, concurrent: bool = False) -> int:
    """POST every due event (up to `max_batches` batches per portal); returns the batches sent (failed ones
    included). `concurrent`: up to the subscription's `concurrency` requests in flight at once, each from a thread
    of its own (HubSpot's maxConcurrentRequests); those threads use their own database connections, so only
    committed events are seen (the sender thread; `flush` sends one request at a time in the caller's thread)."""
    now = data.now_ms()
    due = WebhookEvent.objects.filter(delivered_ms__isnull=True, gave_up=False, next_ms__lte=now)
    if portal_id is not None:
        due = due.filter(portal_id=portal_id)
    portals = list(due.values_list("portal_id", flat=True).distinct())
    sent = 0
    for pid in portals:
        sub = subscription(pid)
        if sub is None or sub.paused:
            continue
        # SQLite (the embedded default) has no row locks to keep lanes' claims apart, and one writer at a time.
        if not concurrent or sub.concurrency <= 1 or connection.vendor == "sqlite":
            for _n in range(max_batches):
                if not _send_one(pid, sub):
                    break
                sent += 1
            continue
        sent += _send_concurrently(pid, sub, max_batches)
    return sent


def _send_concurrently(pid: int, sub: WebhookSubscription, max_batches: int) -> int:
    counter = itertools.count()
    results: list[int] = []

    def lane() -> None:
        done = 0
        try:
            while next(counter) < max_batches and _send_one(pid, sub):
                done += 1
        finally:
            results.append(done)
            connections.close_all()  # this lane's own connection

    lanes = [threading.Thread(target=lane, daemon=True) for _ in range(min(sub.concurrency, 100))]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    return sum(results)


# --- the sender thread -------------------------------------------------------------------------------------------

_wake = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None
POLL_SECONDS = 0.5


def kick() -> None:
    """Wake this process's sender (starting it if needed): there are events to send."""
    global _thread
    with _lock:
        _wake.set()
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="sandbox-hubspot-webhooks", daemon=True)
            _thread.start()


def _run() -> None:
    """Send what is due; sleep until the next event is due (at most POLL_SECONDS, or until kicked); stop when the
    outbox holds nothing more to send (the next mutation starts the thread again)."""
    global _thread
    while True:
        _wake.clear()
        try:
            deliver_due(concurrent=True)
            upcoming = _next_sendable_ms()
        except Exception:
            # The database went away (a shutdown, a test's teardown) or broke: stop rather than spin; the outbox
            # keeps what is left, and the next change (or a visit to the portal page) starts a sender again.
            logger.exception("sandbox webhooks: delivery round failed; the sender stops")
            upcoming = None
        finally:
            # The thread's own connection: closed every round, so it never holds the database (a test's flush or
            # drop) between rounds.
            connections.close_all()
        if upcoming is None:
            with _lock:
                if not _wake.is_set():
                    _thread = None
                    return
            continue
        _wake.wait(max(0.0, min(POLL_SECONDS, (upcoming - data.now_ms()) / 1000)))


def _next_sendable_ms() -> int | None:
    """When the next event of a portal that sends (not paused, subscribed) is due; None if there is none."""
    paused = set(WebhookSubscription.objects.filter(paused=True).values_list("portal_id", flat=True))
    pending = (
        WebhookEvent.objects.filter(delivered_ms__isnull=True, gave_up=False)
        .exclude(portal_id__in=paused)
        .aggregate(m=Min("next_ms"))["m"]
    )
    return pending


def flush(timeout: float = 10.0) -> int:
    """Send what is due now, in this thread (`sandbox_mutate`, the JSON API's "flush", tests). Returns batches."""
    deadline = data.now_ms() + int(timeout * 1000)
    sent = 0
    while data.now_ms() < deadline:
        batches = deliver_due(max_batches=100)
        sent += batches
        if not batches:
            break
    return sent

"""Signed webhook requests, as HubSpot sends them, for the receiver's tests and the benchmark."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from django.conf import settings

from sources.live import sign

PATH = "/hooks/hubspot/"
_ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000)


def event(
    portal: int,
    object_id: int,
    kind: str = "object.propertyChange",
    *,
    event_id: int | None = None,
    type_id: str | None = "0-1",
    occurred_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "eventId": event_id if event_id is not None else next(_ids),
        "subscriptionId": 102,
        "portalId": portal,
        "appId": 4242424,
        "occurredAt": occurred_ms if occurred_ms is not None else int(time.time() * 1000),
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "objectTypeId": type_id,
        "changeSource": "CRM_UI",
    }
    if type_id is None or not kind.startswith("object."):
        del body["objectTypeId"]  # legacy subscription types name the object type themselves
    if kind.endswith("propertyChange"):
        body.setdefault("propertyName", "jobtitle")
        body.setdefault("propertyValue", "x")
    body.update(extra)
    return body


def signed_headers(
    body: bytes, *, url: str, secret: str | None = None, timestamp_ms: int | None = None
) -> dict[str, str]:
    stamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign(secret or settings.HUBSPOT_CLIENT_SECRET, "POST", url, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-Version": "v3",
    }


def post(client, events: list[dict] | bytes, *, host: str = "testserver", **kwargs: Any):
    """POST `events` signed for http://<host>/hooks/hubspot/ with Django's test client."""
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    headers = signed_headers(body, url=kwargs.pop("url", f"http://{host}{PATH}"), **kwargs)
    return client.post(
        PATH,
        data=body,
        content_type="application/json",
        headers={k: v for k, v in headers.items() if k != "Content-Type"},
    )

"""HubSpot's webhook wire format: the v3 signature and the events (pure functions, no database).

Facts relied on (HubSpot's "Validating requests" and "Webhooks API" documentation):

- HubSpot POSTs a JSON **array of up to 100 events** to the app's target URL. Every event has ``eventId``,
  ``subscriptionId``, ``portalId``, ``appId``, ``occurredAt`` (epoch ms), ``subscriptionType``, ``attemptNumber``
  (0 on the first try), ``objectId``; property changes add ``propertyName``, ``propertyValue`` (possibly cut) and
  ``changeSource``; merges add ``primaryObjectId``, ``mergedObjectIds`` (array) and ``newObjectId``.
- Subscription types: the generic ``object.creation``, ``object.propertyChange``, ``object.deletion``,
  ``object.privacyDeletion``, ``object.merge``, ``object.restore`` (with ``objectTypeId`` such as ``0-1``) and the
  legacy per-type names (``contact.propertyChange``, ``company.deletion``, ``deal.merge``, ...). Association
  changes carry no record change and are ignored here.
- Events can come late, more than once (retries of a delivery that was not acknowledged with a 2xx within the
  timeout, for about 3 days) and out of order, and ``propertyValue`` is not the whole record: an event only says
  *which* record to read again.
- Signature v3: ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret, UTF-8 of method + URI + raw
  body + timestamp)), with ``X-HubSpot-Request-Timestamp`` (epoch ms). The URI is the full URL HubSpot called
  (scheme, host, path, query); HubSpot's instructions decode a short list of percent-escapes in it before
  signing, so both the decoded and the raw form are accepted. Requests older than 5 minutes are rejected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_AGE_MS = 5 * 60 * 1000

# The percent-escapes HubSpot's v3 instructions decode in the request URI before signing.
URI_DECODES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}

# objectTypeId (generic subscriptions) and legacy subscription prefixes -> our collection names.
OBJECT_TYPE_IDS = {
    "0-1": "contacts",
    "0-2": "companies",
    "0-3": "deals",
    "0-5": "tickets",
    "0-7": "products",
    "0-8": "line_items",
    "0-14": "quotes",
    "0-27": "tasks",
    "0-46": "notes",
    "0-47": "meetings",
    "0-48": "calls",
    "0-49": "emails",
}
LEGACY_PREFIXES = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "ticket": "tickets",
    "product": "products",
    "line_item": "line_items",
}
# subscriptionType suffix -> LiveEvent.Kind value; associationChange and others are not record changes.
KINDS = {
    "creation": "creation",
    "propertyChange": "change",
    "deletion": "deletion",
    "privacyDeletion": "privacy_deletion",
    "merge": "merge",
    "restore": "restore",
}


def sign(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The v3 signature of a request (what HubSpot sends, and what the sandbox signs with)."""
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def decode_uri(uri: str) -> str:
    for escape, char in URI_DECODES.items():
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return uri


class SignatureError(Exception):
    """The request is not HubSpot's (bad or missing signature) or too old; the message says which."""


def verify(
    *, secret: str, method: str, uris: list[str], body: bytes, timestamp: str | None, signature: str | None, now_ms: int
) -> None:
    """Raise SignatureError unless `signature` is HubSpot's v3 signature of the request under one of `uris`
    (the URLs this server may have been called at) and the timestamp is at most 5 minutes old (or ahead)."""
    if not secret:
        raise SignatureError("no HubSpot client secret is configured")
    if not signature or not timestamp:
        raise SignatureError("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    try:
        stamp = int(timestamp)
    except ValueError:
        raise SignatureError("X-HubSpot-Request-Timestamp is not a number") from None
    if abs(now_ms - stamp) > MAX_AGE_MS:
        raise SignatureError("the request timestamp is more than 5 minutes old")
    given = signature.strip().encode()
    ok = False
    for uri in dict.fromkeys(u for raw in uris for u in (decode_uri(raw), raw)):
        # Every candidate is compared (no early exit), each in constant time.
        ok |= hmac.compare_digest(sign(secret, method, uri, body, timestamp).encode(), given)
    if not ok:
        raise SignatureError("the signature does not match")


@dataclass(frozen=True)
class Event:
    """One parsed event: what the receiver stores."""

    event_id: int
    portal_id: int
    collection: str
    object_id: int
    kind: str
    occurred_at: datetime
    attempt: int = 0
    related: tuple[int, ...] = field(default=())


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def collection_of(raw: dict) -> str | None:
    type_id = raw.get("objectTypeId")
    if isinstance(type_id, str) and type_id in OBJECT_TYPE_IDS:
        return OBJECT_TYPE_IDS[type_id]
    prefix = str(raw.get("subscriptionType") or "").split(".", 1)[0]
    return LEGACY_PREFIXES.get(prefix)


def parse_event(raw: object, *, now: datetime) -> Event | None:
    """An event we act on, or None (not an object, a subscription type that changes no record, an object type we
    do not sync, or ids missing). Liberal: ids may come as numbers or numeric strings."""
    if not isinstance(raw, dict):
        return None
    kind = KINDS.get(str(raw.get("subscriptionType") or "").rsplit(".", 1)[-1])
    collection = collection_of(raw)
    event_id, portal_id = _int(raw.get("eventId")), _int(raw.get("portalId"))
    related: list[int] = []
    if kind == "merge":
        for key in ("newObjectId", "primaryObjectId"):
            value = _int(raw.get(key))
            if value is not None:
                related.append(value)
        merged = raw.get("mergedObjectIds")
        for value in merged if isinstance(merged, list) else []:
            number = _int(value)
            if number is not None:
                related.append(number)
    object_id = _int(raw.get("objectId"))
    if object_id is None and related:
        object_id = related[0]
    if kind is None or collection is None or event_id is None or portal_id is None or object_id is None:
        return None
    occurred = _int(raw.get("occurredAt"))
    occurred_at = datetime.fromtimestamp(occurred / 1000, tz=UTC) if occurred else now
    return Event(
        event_id=event_id,
        portal_id=portal_id,
        collection=collection,
        object_id=object_id,
        kind=kind,
        occurred_at=min(occurred_at, now),
        attempt=_int(raw.get("attemptNumber")) or 0,
        related=tuple(dict.fromkeys(i for i in related if i != object_id)),
    )

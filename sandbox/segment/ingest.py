"""Segment's HTTP Tracking API as the sandbox answers it (../shared/REFERENCE.md, "Segment HTTP Tracking API").

What a request goes through, in order, and how it is answered:

1. The body is read (gzip `Content-Encoding` is accepted, like Segment); `Content-Type` must be JSON.
2. The write key comes from `Authorization: Basic base64("<key>:")` (the colon is required, as in any Basic
   credentials) or, without that header, from `writeKey` in the body. When the header's key is known, the
   workspace's fault knobs apply at once (latency, then a random 5xx, then a 429 with `Retry-After`).
3. Limits, all answered with **400** and nothing stored: a body over 32 KB on the single-message endpoints,
   over 500,000 bytes on `/v1/batch`, invalid JSON (or not an object, or `batch` not an array), more than 2,500
   messages in a batch, or any one message in a batch over 32 KB (its compact JSON, UTF-8). The sandbox is
   deliberately strict here: Segment's own documentation says 400 for size and JSON errors; for a batch over
   2,500 messages it documents a 200 that drops the events, which would hide the bug, so we answer 400.
4. An unknown write key is answered with **200** and dropped, exactly like Segment (whose API cannot tell you a
   key is wrong). `GET /sandbox/segment/v1/_check` with Basic auth is the sandbox's way to test a key: 200 / 401.
5. Each message is then accepted or dropped with 200 and a counted discard reason: no `userId`/`anonymousId`
   (`no_user_anon_id`), `group` without `groupId` (`no_group_id`), `track` without `event`, `alias` without
   `previousId`, an unknown `type`, `traits` that are not an object, a `messageId` over 100 characters, and a
   `messageId` already accepted by this workspace in the last 24 hours (`duplicate_message_id`).
6. Accepted messages are bulk-inserted in one transaction with their deduplication claims.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import (
    DEFAULT_WRITE_KEY,
    SegmentDiscard,
    SegmentMessage,
    SegmentSeenMessageId,
    SegmentUnknownKey,
    SegmentWorkspace,
    get_default_workspace,
)

MAX_MESSAGE_BYTES = 32 * 1024  # 32 KB, as every Segment library counts it (32 << 10)
MAX_BATCH_BYTES = 500_000  # 500 KB, the stricter reading: whatever fits here fits Segment too
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_ID_CHARS = 100
DEDUP_WINDOW = timedelta(hours=24)
MESSAGE_TYPES = frozenset({"identify", "group", "track", "page", "screen", "alias"})
SINGLE_ENDPOINTS = MESSAGE_TYPES
SERVER_ERROR_STATUSES = (500, 502, 503, 504)  # never 501/505, which clients must not retry

DISCARD_REASONS = {
    "no_user_anon_id": "Every message needs a userId or an anonymousId.",
    "no_group_id": "A group call needs a groupId.",
    "no_event": "A track call needs an event name.",
    "no_previous_id": "An alias call needs a previousId.",
    "invalid_type": "Unknown message type.",
    "invalid_message": "A batch entry is not a JSON object.",
    "invalid_traits": "traits must be a JSON object.",
    "message_id_too_long": "messageId is longer than 100 characters.",
    "duplicate_message_id": "messageId already received in the last 24 hours.",
}
REJECT_REASONS = {
    "invalid_json": "Invalid JSON.",
    "invalid_request": "The body is not a message object, or batch is not an array.",
    "invalid_content_type": "Content-Type must be application/json.",
    "invalid_encoding": "The body could not be decompressed.",
    "message_too_large": "Exceed payload limit: a message is over 32 KB.",
    "batch_too_large": "Exceed payload limit: the batch is over 500 KB.",
    "too_many_messages": "A batch holds at most 2,500 messages.",
}


@dataclass
class _Reject(Exception):
    reason: str
    detail: str


def json_error(status: int, code: str, message: str, **headers: str) -> JsonResponse:
    # Shaped so that segment-analytics-python (which reads "code" and "message") reports it cleanly.
    response = JsonResponse({"success": False, "code": code, "message": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def basic_auth_write_key(request: HttpRequest) -> str | None:
    """The write key from `Authorization: Basic base64("<key>:")`, or None. Credentials without the colon are
    not Basic credentials at all, so they count as no key (Segment then drops the request silently)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    key, colon, _password = decoded.partition(":")
    if not colon or not key:
        return None
    return key


def find_workspace(write_key: str | None) -> SegmentWorkspace | None:
    if not write_key or not isinstance(write_key, str):
        return None
    workspace = SegmentWorkspace.objects.filter(write_key=write_key).first()
    if workspace is None and write_key == DEFAULT_WRITE_KEY:
        workspace = get_default_workspace()
    return workspace


def _note_unknown_key(write_key: Any) -> None:
    hint = (write_key[:4] + "…") if isinstance(write_key, str) and write_key else "(none)"
    now = timezone.now()
    if not SegmentUnknownKey.objects.filter(key_hint=hint).update(requests=F("requests") + 1, last_seen=now):
        SegmentUnknownKey.objects.get_or_create(key_hint=hint, defaults={"requests": 1, "last_seen": now})


def _fault(workspace: SegmentWorkspace) -> JsonResponse | None:
    if workspace.latency_ms:
        time.sleep(workspace.latency_ms / 1000)
    if workspace.error_rate and random.random() < workspace.error_rate:
        status = random.choice(SERVER_ERROR_STATUSES)
        return json_error(status, "server_error", "Sandbox fault knob: simulated server error.")
    if workspace.rate_limit_rate and random.random() < workspace.rate_limit_rate:
        return json_error(
            429, "too_many_requests", "Sandbox fault knob: rate limit exceeded.", Retry_After=str(workspace.retry_after)
        )
    return None


def _read_body(request: HttpRequest, limit: int) -> bytes:
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise _Reject("batch_too_large", "The request body is over the server's limit.") from exc
    if request.headers.get("Content-Encoding", "").strip().lower() == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # Inflate at most one byte past the limit: enough to know it is too big, never a gzip bomb.
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise _Reject("invalid_encoding", "The gzip body could not be decompressed.") from exc
    return body


def _check_content_type(request: HttpRequest) -> None:
    # Segment requires application/json; text/plain is what browsers' sendBeacon sends, and Segment takes it.
    if request.content_type not in ("application/json", "text/plain"):
        raise _Reject("invalid_content_type", f"Content-Type must be application/json, not {request.content_type!r}.")


def _record_reject(workspace: SegmentWorkspace, reject: _Reject, body: bytes, now: datetime) -> None:
    SegmentDiscard.objects.create(
        workspace=workspace,
        received_at=now,
        reason=reject.reason,
        detail=reject.detail[:300],
        status=400,
        payload=body[:500].decode("utf-8", errors="replace"),
    )


def _id_value(value: Any) -> str:
    """Segment takes string and number ids (numbers become strings); empty strings and anything else count as
    absent."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return ""


def _parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _discard_reason(msg: dict[str, Any], user_id: str, anonymous_id: str) -> str | None:
    kind = msg.get("type")
    if kind not in MESSAGE_TYPES:
        return "invalid_type"
    if not user_id and not anonymous_id:
        return "no_user_anon_id"
    if kind == "group" and not _id_value(msg.get("groupId")):
        return "no_group_id"
    if kind == "track" and not (isinstance(msg.get("event"), str) and msg["event"]):
        return "no_event"
    if kind == "alias" and not _id_value(msg.get("previousId")):
        return "no_previous_id"
    if kind in ("identify", "group") and "traits" in msg and not isinstance(msg["traits"], dict | type(None)):
        return "invalid_traits"
    return None


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def claim_message_ids(workspace_id: int, message_ids: list[str], now: datetime) -> set[str]:
    """Record `message_ids` as seen and return those that were new (or last seen over 24 hours ago). One
    INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING per chunk: atomic, so two concurrent requests with
    the same messageId can never both be accepted. Works on SQLite (>= 3.35) and PostgreSQL alike."""
    if not message_ids:
        return set()
    qn = connection.ops.quote_name
    table = qn(SegmentSeenMessageId._meta.db_table)
    seen_now = connection.ops.adapt_datetimefield_value(now)
    cutoff = connection.ops.adapt_datetimefield_value(now - DEDUP_WINDOW)
    claimed: set[str] = set()
    conflict = (
        f"ON CONFLICT ({qn('workspace_id')}, {qn('message_id')}) DO UPDATE SET {qn('seen_at')} = "
        f"excluded.{qn('seen_at')} WHERE {table}.{qn('seen_at')} < %s RETURNING {qn('message_id')}"
    )
    columns = f"({qn('workspace_id')}, {qn('message_id')}, {qn('seen_at')})"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array parameter instead of 7,500 placeholders: psycopg parses placeholders in Python.
            cursor.execute(
                f"INSERT INTO {table} {columns} SELECT %s, m, %s FROM unnest(%s::varchar[]) AS m {conflict}",
                [workspace_id, seen_now, message_ids, cutoff],
            )
            return {row[0] for row in cursor.fetchall()}
        for chunk in _chunks(message_ids, 1000):
            values = ",".join(["(%s, %s, %s)"] * len(chunk))
            params: list[Any] = []
            for message_id in chunk:
                params += [workspace_id, message_id, seen_now]
            cursor.execute(f"INSERT INTO {table} {columns} VALUES {values} {conflict}", [*params, cutoff])
            claimed.update(row[0] for row in cursor.fetchall())
    return claimed


_COPY_COLUMNS = (
    "workspace_id",
    "received_at",
    "type",
    "user_id",
    "anonymous_id",
    "group_id",
    "message_id",
    "timestamp",
    "size",
    "payload",
)


def insert_messages(rows: list[tuple]) -> None:
    """Bulk insert of value tuples in _COPY_COLUMNS order. On PostgreSQL through COPY: several times faster than
    INSERT for a 2,500-message batch (Django's bulk_create builds and escapes a parameter array per column in
    Python); elsewhere one executemany (bulk_create would cut it into statements of 99 rows on SQLite)."""
    qn = connection.ops.quote_name
    table = qn(SegmentMessage._meta.db_table)
    columns = ", ".join(qn(name) for name in _COPY_COLUMNS)
    if connection.vendor != "postgresql":
        adapt = connection.ops.adapt_datetimefield_value
        received = adapt(rows[0][1]) if rows else None  # one request, one received_at
        placeholders = ", ".join(["%s"] * len(_COPY_COLUMNS))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders})",
                [(r[0], received, *r[2:7], adapt(r[7]), r[8], r[9]) for r in rows],
            )
        return
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _store(workspace: SegmentWorkspace, messages: list[dict[str, Any]], texts: list[str], now: datetime) -> None:
    accepted: list[tuple[dict[str, Any], str, str, str, str]] = []
    discards: list[SegmentDiscard] = []
    seen_in_request: set[str] = set()

    def discard(reason: str, msg: Any, text: str, message_id: str = "") -> None:
        discards.append(
            SegmentDiscard(
                workspace=workspace,
                received_at=now,
                reason=reason,
                detail=DISCARD_REASONS[reason],
                status=200,
                type=str(msg.get("type", ""))[:16] if isinstance(msg, dict) else "",
                message_id=message_id[:255],
                payload=text[:4000],
            )
        )

    for msg, text in zip(messages, texts, strict=True):
        if not isinstance(msg, dict):
            discard("invalid_message", msg, text)
            continue
        user_id, anonymous_id = _id_value(msg.get("userId")), _id_value(msg.get("anonymousId"))
        raw_message_id = msg.get("messageId")
        message_id = _id_value(raw_message_id) if raw_message_id is not None else ""
        reason = _discard_reason(msg, user_id, anonymous_id)
        if reason is None and len(message_id) > MAX_MESSAGE_ID_CHARS:
            reason = "message_id_too_long"
        if reason is None and message_id and message_id in seen_in_request:
            reason = "duplicate_message_id"
        if reason is not None:
            discard(reason, msg, text, message_id)
            continue
        if not message_id:
            # Segment gives every message an id on arrival; so do we (the libraries always send one).
            message_id = f"sbx-{uuid.uuid4()}"
        seen_in_request.add(message_id)
        accepted.append((msg, text, user_id, anonymous_id, message_id))

    with transaction.atomic():
        # Sorted, so concurrent batches sharing ids lock the same rows in the same order (no deadlock).
        claimed = claim_message_ids(workspace.pk, sorted(item[4] for item in accepted), now)
        rows = []
        for msg, text, user_id, anonymous_id, message_id in accepted:
            if message_id not in claimed:
                discard("duplicate_message_id", msg, text, message_id)
                continue
            rows.append(
                (
                    workspace.pk,
                    now,
                    msg["type"],
                    user_id,
                    anonymous_id,
                    _id_value(msg.get("groupId")),
                    message_id,
                    _parse_timestamp(msg.get("timestamp")),
                    len(text) if text.isascii() else len(text.encode("utf-8")),
                    text,
                )
            )
        if rows:
            insert_messages(rows)
        if discards:
            SegmentDiscard.objects.bulk_create(discards, batch_size=500)


def handle_tracking_request(request: HttpRequest, endpoint: str) -> JsonResponse:
    """Answer one POST to /v1/<endpoint> (batch, import, identify, group, track, page, screen, alias)."""
    is_batch = endpoint in ("batch", "import")
    limit = MAX_BATCH_BYTES if is_batch else MAX_MESSAGE_BYTES
    now = timezone.now()
    header_key = basic_auth_write_key(request)
    workspace = find_workspace(header_key) if header_key else None
    if workspace is not None and (fault := _fault(workspace)):
        return fault

    body = b""
    try:
        body = _read_body(request, limit)
        _check_content_type(request)
        if len(body) > limit:
            reason = "batch_too_large" if is_batch else "message_too_large"
            raise _Reject(reason, f"Exceed payload limit: the body is over {limit:,} bytes.")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _Reject("invalid_json", "Invalid JSON.") from exc
        if not isinstance(data, dict):
            raise _Reject("invalid_request", "The body must be a JSON object.")
        if is_batch and not isinstance(data.get("batch"), list):
            raise _Reject("invalid_request", "batch must be an array of messages.")
    except _Reject as reject:
        if workspace is not None:
            _record_reject(workspace, reject, body, now)
        return json_error(400, reject.reason, reject.detail)

    if header_key is None:
        body_key = data.get("writeKey")
        workspace = find_workspace(body_key)
        if workspace is not None and (fault := _fault(workspace)):
            return fault
    if workspace is None:
        _note_unknown_key(header_key or data.get("writeKey"))
        return JsonResponse({"success": True})

    if is_batch:
        messages = data["batch"]
        # A batch's top-level context and integrations apply to every message that has none of its own.
        shared = {k: data[k] for k in ("context", "integrations") if isinstance(data.get(k), dict)}
        if shared:
            for msg in messages:
                if isinstance(msg, dict):
                    for name, value in shared.items():
                        msg.setdefault(name, value)
    else:
        data["type"] = endpoint  # the endpoint decides the type, whatever the body says
        messages = [data]

    try:
        if len(messages) > MAX_BATCH_MESSAGES:
            raise _Reject("too_many_messages", f"The batch holds {len(messages):,} messages; the limit is 2,500.")
        texts = []
        for msg in messages:
            if isinstance(msg, dict):
                msg.pop("writeKey", None)
            text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
            if size > MAX_MESSAGE_BYTES:
                raise _Reject("message_too_large", f"Exceed payload limit: a message is {size:,} bytes (limit 32,768).")
            texts.append(text)
    except _Reject as reject:
        _record_reject(workspace, reject, body, now)
        return json_error(400, reject.reason, reject.detail)

    _store(workspace, messages, texts, now)
    return JsonResponse({"success": True})

"""Reading a sandbox workspace's inbox: messages, discards, counts, and the profiles a Profile Space would build.

Profiles are computed on read from the stored messages (one streamed pass, two for identity links), not kept
up to date on ingest: ingest stays one bulk insert per batch, and the merge is always exactly "all accepted
messages in timestamp order", whatever order they arrived in.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.db.models.functions import Coalesce

from .models import SegmentDiscard, SegmentMessage, SegmentUnknownKey, SegmentWorkspace

MAX_PAGE_SIZE = 5000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def counts(workspace: SegmentWorkspace) -> dict[str, Any]:
    by_type = dict(
        SegmentMessage.objects.filter(workspace=workspace).values_list("type").annotate(n=Count("id")).order_by("type")
    )
    discard_rows = (
        SegmentDiscard.objects.filter(workspace=workspace)
        .values_list("status", "reason")
        .annotate(n=Count("id"))
        .order_by("reason")
    )
    discarded: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for status, reason, n in discard_rows:
        (discarded if status == 200 else rejected)[reason] = n
    return {
        "received": sum(by_type.values()),
        "by_type": by_type,
        "discarded": sum(discarded.values()),
        "discards_by_reason": discarded,
        "rejected_requests": sum(rejected.values()),
        "rejections_by_reason": rejected,
    }


def message_dict(row: SegmentMessage) -> dict[str, Any]:
    payload = json.loads(row.payload)
    return {
        "type": row.type,
        "userId": row.user_id or None,
        "anonymousId": row.anonymous_id or None,
        "groupId": row.group_id or None,
        "messageId": row.message_id,
        "timestamp": _iso(row.timestamp),
        "receivedAt": _iso(row.received_at),
        "traits": payload.get("traits") if isinstance(payload.get("traits"), dict) else None,
        "size": row.size,
        "payload": payload,
    }


def discard_dict(row: SegmentDiscard) -> dict[str, Any]:
    try:
        payload: Any = json.loads(row.payload) if row.status == 200 else row.payload
    except ValueError:
        payload = row.payload  # cut to 4,000 characters when stored
    return {
        "reason": row.reason,
        "detail": row.detail,
        "status": row.status,
        "type": row.type or None,
        "messageId": row.message_id or None,
        "receivedAt": _iso(row.received_at),
        "payload": payload,
    }


def messages_page(workspace: SegmentWorkspace, *, offset: int, limit: int) -> list[SegmentMessage]:
    return list(
        SegmentMessage.objects.filter(workspace=workspace).order_by("-received_at", "-id")[offset : offset + limit]
    )


def discards_page(workspace: SegmentWorkspace, *, offset: int, limit: int) -> list[SegmentDiscard]:
    return list(
        SegmentDiscard.objects.filter(workspace=workspace).order_by("-received_at", "-id")[offset : offset + limit]
    )


def _in_timestamp_order(workspace: SegmentWorkspace):
    # A message without a timestamp happened when it was received, as in Segment.
    return (
        SegmentMessage.objects.filter(workspace=workspace)
        .annotate(at=Coalesce("timestamp", "received_at"))
        .order_by("at", "id")
    )


def build_profiles(workspace: SegmentWorkspace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(user profiles, account profiles), each newest activity first.

    Users are keyed by userId, else by anonymousId; an anonymousId seen together with a userId belongs to that
    user's profile from then on and before (Segment merges the anonymous history into the identified profile).
    identify traits are merged per user and group traits per account, top-level keys last-write-wins in message
    timestamp order. Every message type counts as activity on the profile.
    """
    anon_to_user: dict[str, str] = {}
    linked = _in_timestamp_order(workspace).exclude(user_id="").exclude(anonymous_id="")
    links = linked.values_list("anonymous_id", "user_id")
    for anonymous_id, user_id in links.iterator(chunk_size=2000):
        anon_to_user.setdefault(anonymous_id, user_id)

    users: dict[str, dict[str, Any]] = {}
    accounts: dict[str, dict[str, Any]] = {}
    rows = _in_timestamp_order(workspace).values_list("type", "user_id", "anonymous_id", "group_id", "at", "payload")
    for kind, user_id, anonymous_id, group_id, at, payload in rows.iterator(chunk_size=2000):
        owner = user_id or anon_to_user.get(anonymous_id, "")
        key = f"user:{owner}" if owner else f"anon:{anonymous_id}"
        profile = users.get(key)
        if profile is None:
            profile = users[key] = {
                "userId": owner or None,
                "anonymousIds": [],
                "traits": {},
                "groups": [],
                "messageCount": 0,
                "firstSeen": at,
                "lastSeen": at,
            }
        if anonymous_id and anonymous_id not in profile["anonymousIds"]:
            profile["anonymousIds"].append(anonymous_id)
        profile["messageCount"] += 1
        profile["lastSeen"] = at
        if kind not in ("identify", "group"):
            continue
        traits = json.loads(payload).get("traits")
        if kind == "identify":
            if isinstance(traits, dict):
                profile["traits"].update(traits)
            continue
        member = owner or anonymous_id
        if group_id not in profile["groups"]:
            profile["groups"].append(group_id)
        account = accounts.get(group_id)
        if account is None:
            account = accounts[group_id] = {
                "groupId": group_id,
                "traits": {},
                "members": [],
                "messageCount": 0,
                "firstSeen": at,
                "lastSeen": at,
            }
        if isinstance(traits, dict):
            account["traits"].update(traits)
        if member not in account["members"]:
            account["members"].append(member)
        account["messageCount"] += 1
        account["lastSeen"] = at

    def finish(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items.sort(key=lambda p: p["lastSeen"], reverse=True)
        for item in items:
            item["firstSeen"], item["lastSeen"] = _iso(item["firstSeen"]), _iso(item["lastSeen"])
        return items

    return finish(list(users.values())), finish(list(accounts.values()))


def unknown_keys() -> list[SegmentUnknownKey]:
    return list(SegmentUnknownKey.objects.order_by("-last_seen")[:20])


def clear(workspace: SegmentWorkspace) -> None:
    """Empty the inbox: messages, discards and the deduplication memory (so a test can resend the same ids)."""
    from .models import SegmentSeenMessageId

    SegmentMessage.objects.filter(workspace=workspace).delete()
    SegmentDiscard.objects.filter(workspace=workspace).delete()
    SegmentSeenMessageId.objects.filter(workspace=workspace).delete()

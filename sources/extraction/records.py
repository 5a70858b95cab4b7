"""What HubSpot's record JSON means to the mirror: the canonical properties, their hash, merges, dates."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime

import orjson

# HubSpot's "Merged ... IDs" property: the `;`-separated ids merged into a record. Always read (HubSpot ignores
# a requested property an object type lacks), so that every read of a merged record names the ids it replaced.
MERGED_IDS = "hs_merged_object_ids"


def lastmod_property(collection: str) -> str:
    return "lastmodifieddate" if collection == "contacts" else "hs_lastmodifieddate"


_json_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def properties_json(properties: dict) -> str:
    """The canonical JSON of a record's properties: hashed, and stored as is (serialised once per record).

    The json module's text (sorted keys, compact, non-ASCII as is) defines it; orjson writes the same text for a
    dict of strings (every HubSpot property value is one) about six times faster, so it writes those. Anything
    else (a number, a nested value, a key that is not a string, a lone surrogate orjson refuses) goes through the
    json module, so that a record's hash never depends on which encoder wrote it."""
    if all(v.__class__ is str for v in properties.values()):
        try:
            return orjson.dumps(properties, option=orjson.OPT_SORT_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            pass
    return _json_text(properties)


def content_hash(properties: dict | str, archived: bool) -> str:
    """Hash over properties + archived flag: equal hash = nothing to write, nothing to deliver."""
    text = properties if isinstance(properties, str) else properties_json(properties)
    return hashlib.sha256(f"{text}|{int(archived)}".encode()).hexdigest()


def parse_dt(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def after_token(page: dict) -> str | None:
    return ((page.get("paging") or {}).get("next") or {}).get("after")


def merged_away(records: Iterable[dict]) -> dict[int, int]:
    """{merged-away id: the record's id} from the records' `hs_merged_object_ids` (HubSpot's own id excluded:
    a merge that keeps the primary's id may list it)."""
    out: dict[int, int] = {}
    for r in records:
        value = (r.get("properties") or {}).get(MERGED_IDS)
        if not value:
            continue
        own = int(r["id"])
        for part in str(value).split(";"):
            part = part.strip()
            if part.isdigit() and int(part) != own:
                out[int(part)] = own
    return out

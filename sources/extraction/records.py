"""What HubSpot's record JSON means to the mirror: the canonical properties, their hash, merges, dates."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from hubsync.jsoncodec import json_module_sorted, sorted_json

# HubSpot's "Merged ... IDs" property: the `;`-separated ids merged into a record. Always read (HubSpot ignores
# a requested property an object type lacks), so that every read of a merged record names the ids it replaced.
MERGED_IDS = "hs_merged_object_ids"


def lastmod_property(collection: str) -> str:
    return "lastmodifieddate" if collection == "contacts" else "hs_lastmodifieddate"


def properties_json(properties: dict) -> str:
    """The canonical JSON of a record's properties: hashed, and stored as is (serialised once per record):
    hubsync.jsoncodec's sorted JSON, through orjson for a dict of strings (every HubSpot property value is one),
    through the json module for anything else (a number could be a float orjson writes its own way)."""
    if all(v.__class__ is str for v in properties.values()):
        return sorted_json(properties).decode("utf-8", "surrogatepass")
    return json_module_sorted(properties).decode("utf-8", "surrogatepass")


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

"""Record history: what each sync changed in the mirror, kept so the record debugger can answer "why does this
profile have this trait" (which change brought the value, when, in which run) and rebuild the exact message
delivered last (rolling the record back change by change until its payload hash matches).

The extraction engine calls `changes_for_page` once per page with the rows it is about to rewrite: one extra
SELECT of the *changed* rows' old properties (unchanged rows cost nothing) and one bulk INSERT, so a page still
costs a constant number of queries. New records are not written here (the mirror row is their first version;
writing 1M "created" rows on a first sync would double its cost); archiving and restoring are.

Retention: HUBSYNC_RECORD_HISTORY_DAYS (default 90; 0 turns history off). `prune` runs after every sync and
deletes what is older, by primary key range (ids grow with time), so it needs no index of its own. Values
longer than VALUE_CHARS are cut (marked `truncated`): a 64 KB rich-text property must not be stored twice per
change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import RecordChange

VALUE_CHARS = 500
ELLIPSIS = "…"


def enabled() -> bool:
    return getattr(settings, "HUBSYNC_RECORD_HISTORY_DAYS", 90) > 0


def _cap(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return value[:VALUE_CHARS] + ELLIPSIS, True
    return value, False


def diff_properties(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, list[Any]], bool]:
    """{name: [old, new]} for every property whose value differs (None = absent), sorted by name, and whether
    any value had to be cut to VALUE_CHARS. (The hot loop of the history: plain dict lookups, no set algebra.)"""
    names = [name for name, value in new.items() if old.get(name) != value]
    names += [name for name in old if name not in new]
    changes: dict[str, list[Any]] = {}
    cut = False
    for name in sorted(names):
        before, cut_before = _cap(old.get(name))
        after, cut_after = _cap(new.get(name))
        changes[name] = [before, after]
        cut = cut or cut_before or cut_after
    return changes, cut


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def changes_for_page(
    *,
    source_id: int,
    collection: str,
    run_id: int | None,
    old: dict[int, tuple[dict[str, Any], bool, datetime | None]],
    new: Iterable[tuple[int, int, dict[str, Any], bool, datetime | None]],
) -> list[tuple]:
    """The history rows for one page, as tuples for `write`. `old`: {object_id: (properties, archived,
    updated_at)} as the mirror held them before the page; `new`: (object_id, change_seq, properties, archived,
    updated_at) for every row the page rewrites. Records not in `old` are new: no row. A rewrite that changes
    nothing visible: no row."""
    now = timezone.now()
    rows: list[tuple] = []
    for object_id, change_seq, props, archived, updated_at in new:
        before = old.get(object_id)
        if before is None:
            continue
        old_props, old_archived, old_updated = before
        changes, cut = diff_properties(old_props or {}, props or {})
        flipped = archived if bool(old_archived) != bool(archived) else None
        if not changes and flipped is None:
            continue
        rows.append(
            (source_id, collection, object_id, change_seq, run_id, changes, flipped, cut, old_updated, updated_at, now)
        )
    return rows


_COLUMNS = (
    "source_id, collection, object_id, change_seq, run_id, changes, archived, truncated, previous_updated_at, "
    "updated_at, seen_at"
)


def write(rows: list[tuple]) -> None:
    """One INSERT for the page's history (raw SQL like the engine's upsert: the ORM's bulk_create costs more to
    prepare a page of model instances than the database spends writing them)."""
    if not rows:
        return
    ops = connection.ops
    json_slot = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    row_sql = f"(%s, %s, %s, %s, %s, {json_slot}, %s, %s, %s, %s, %s)"
    params: list[Any] = []
    for source_id, collection, object_id, seq, run_id, changes, flipped, cut, before, after, seen in rows:
        params += [
            source_id,
            collection,
            object_id,
            seq,
            run_id,
            _dumps(changes),
            flipped,
            cut,
            ops.adapt_datetimefield_value(before),
            ops.adapt_datetimefield_value(after),
            ops.adapt_datetimefield_value(seen),
        ]
    table = RecordChange._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({_COLUMNS}) VALUES {', '.join([row_sql] * len(rows))}", params)


def prune(*, now: datetime | None = None) -> int:
    """Delete history older than the retention period (every source: the setting is global). Ids grow with
    time, so "older than" is "below the first id seen since the cutoff": a primary-key range delete."""
    days = getattr(settings, "HUBSYNC_RECORD_HISTORY_DAYS", 90)
    if days <= 0:
        return RecordChange.objects.all().delete()[0] if RecordChange.objects.exists() else 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    first_kept = RecordChange.objects.filter(seen_at__gte=cutoff).order_by("pk").values_list("pk", flat=True).first()
    old = RecordChange.objects.all() if first_kept is None else RecordChange.objects.filter(pk__lt=first_kept)
    return old.delete()[0]

"""Reading records: generated data with the stored changes (RecordChange) laid over it.

List order is id order. Generated ids are monotonic in the index, and created records get ids above every
generated id, so a list page is "generated records from index s (minus archived, with edits applied), then
created records".

A purged change row (permanently deleted record) is a tombstone: every reader here treats its id as one that
does not exist, live or archived.
"""

from __future__ import annotations

import fnmatch
import heapq
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q

from .data import (
    CREATED_ID_BASE,
    TypeData,
    first_index_with_id_at_least,
    id_for_index,
    index_for_id,
    iso,
    lower_bound,
    now_ms,
    parse_time_ms,
)
from .models import RecordChange

ALWAYS = ("createdate", "hs_object_id")  # HubSpot adds these (and the last-modified property) to every response
# HubSpot's "Merged ... IDs" (`;`-separated ids merged into the record). The sandbox serves it on contacts and
# companies when it is asked for by name, and leaves it out of the property list (see the README).
MERGED_IDS = "hs_merged_object_ids"
MERGEABLE = ("contacts", "companies")


class SearchError(Exception):
    def __init__(self, message: str, status: int = 400, category: str = "VALIDATION_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.category = category


def wanted_properties(td: TypeData, requested: list[str] | None) -> tuple[str, ...]:
    names = requested if requested else list(td.otype.default_props)
    out: list[str] = []
    seen: set[str] = set()
    for name in (*names, *ALWAYS, td.otype.modified_prop):
        known = name in td.props or (name == MERGED_IDS and td.otype.name in MERGEABLE)
        if known and name not in seen:
            seen.add(name)
            out.append(name)
    return tuple(out)


# --- materialising ---------------------------------------------------------------------------------------
def generated_record(td: TypeData, i: int, wanted: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": str(id_for_index(i)),
        "properties": td.projected_properties(i, wanted),
        "createdAt": iso(td.created_ms(i)),
        "updatedAt": iso(td.modified_ms(i)),
        "archived": False,
    }


def change_full_properties(td: TypeData, ch: RecordChange) -> dict[str, Any]:
    if ch.index is not None:
        props = td.full_properties(ch.index)
    else:
        props = dict.fromkeys(td.props)
        props["hs_object_id"] = str(ch.object_id)
        props["createdate"] = iso(ch.created_ms)
    for name, value in (ch.properties or {}).items():
        if name in td.props or name == MERGED_IDS:
            props[name] = value
    props[td.otype.modified_prop] = iso(ch.updated_ms)
    return props


def change_record(td: TypeData, ch: RecordChange, wanted: tuple[str, ...], full: dict | None = None) -> dict:
    full = full if full is not None else change_full_properties(td, ch)
    rec = {
        "id": str(ch.object_id),
        "properties": {name: full.get(name) for name in wanted},
        "createdAt": iso(ch.created_ms),
        "updatedAt": iso(ch.updated_ms),
        "archived": ch.archived,
    }
    if ch.archived:
        rec["archivedAt"] = iso(ch.archived_ms or ch.updated_ms)
    return rec


def _changes(td: TypeData):
    return RecordChange.objects.filter(portal_id=td.hub_id, object_type=td.otype.name)


_OVERLAY_SQL = None


def overlay_rows(td: TypeData, start: int, end: int) -> dict[int, RecordChange]:
    """Change rows overriding generated indexes [start, end). Raw SQL: this runs for every list page, and on a
    page without changes (the usual case) the ORM's overhead would be most of the cost."""
    global _OVERLAY_SQL
    if _OVERLAY_SQL is None:
        table = connection.ops.quote_name(RecordChange._meta.db_table)
        index = connection.ops.quote_name("index")
        _OVERLAY_SQL = (
            f"SELECT id FROM {table} WHERE portal_id = %s AND object_type = %s AND {index} >= %s AND {index} < %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(_OVERLAY_SQL, [td.hub_id, td.otype.name, start, end])
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return {}
    return {ch.index: ch for ch in RecordChange.objects.filter(pk__in=ids)}


def valid_change(td: TypeData, ch: RecordChange) -> bool:
    """A change row counts if it is a created record or overrides an index inside the current size."""
    return ch.index is None or ch.index < td.size


def exists(td: TypeData, object_id: int) -> bool:
    """Whether a record with this id exists (live or archived; a purged or merged-away one does not)."""
    ch = _changes(td).filter(object_id=object_id).first()
    if ch is not None and valid_change(td, ch):
        return not ch.purged
    i = index_for_id(object_id)
    return i is not None and i < td.size


# --- list ----------------------------------------------------------------------------------------------------
def list_page(
    td: TypeData, *, after: int, limit: int, wanted: tuple[str, ...], archived: bool
) -> tuple[list, int | None]:
    """One page in id order starting at id `after`: (records as UTF-8 JSON, next after id or None)."""
    if archived:
        rows = list(
            _changes(td).filter(archived=True, purged=False, object_id__gte=after).order_by("object_id")[: limit + 1]
        )
        rows = [ch for ch in rows if valid_change(td, ch)]
        nxt = rows[limit].object_id if len(rows) > limit else None
        return [dumps(change_record(td, ch, wanted)) for ch in rows[:limit]], nxt

    out: list[dict] = []
    n = td.size
    i = first_index_with_id_at_least(after) if after > 1 else 0
    i = min(i, n)
    while i < n and len(out) <= limit:
        end = min(n, i + (limit + 1 - len(out)) + 16)
        overlay = overlay_rows(td, i, end)
        for j in range(i, end):
            ch = overlay.get(j)
            if ch is None:
                out.append(j)
            elif not ch.archived and not ch.purged:
                out.append(ch)
            if len(out) > limit:
                break
        i = end
    if len(out) <= limit:
        start = max(after, CREATED_ID_BASE)
        created = (
            _changes(td)
            .filter(index__isnull=True, archived=False, purged=False, object_id__gte=start)
            .order_by("object_id")
        )
        out.extend(created[: limit + 1 - len(out)])
    nxt = None
    if len(out) > limit:
        last = out[limit]
        nxt = id_for_index(last) if isinstance(last, int) else last.object_id
        out = out[:limit]
    return [td.record_json(x, wanted) if isinstance(x, int) else dumps(change_record(td, x, wanted)) for x in out], nxt


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# --- single and batch read ------------------------------------------------------------------------------------
def read_many(td: TypeData, ids: list[int], wanted: tuple[str, ...], archived: bool) -> dict[int, dict]:
    """Records by id (only archived ones when archived=True); missing and purged ids are absent from the result.

    An id merged into another record answers with that record, under its own (new) id, as HubSpot does: the
    result maps the id asked for to the record it resolves to."""
    changes = {ch.object_id: ch for ch in _changes(td).filter(object_id__in=ids)} if ids else {}
    found: dict[int, dict] = {}
    for oid in ids:
        ch = changes.get(oid)
        if ch is not None and valid_change(td, ch):
            if ch.merged_into is not None:
                ch = merge_target(td, ch)
            if ch is not None and ch.archived == archived and not ch.purged:
                found[oid] = change_record(td, ch, wanted)
            continue
        if archived:
            continue
        i = index_for_id(oid)
        if i is not None and i < td.size:
            found[oid] = generated_record(td, i, wanted)
    return found


def merge_target(td: TypeData, ch: RecordChange) -> RecordChange | None:
    """The record a merged-away row resolves to (following merges of merged records), or None if it is gone."""
    for _hop in range(100):
        if ch.merged_into is None:
            return ch
        nxt = _changes(td).filter(object_id=ch.merged_into).first()
        if nxt is None:
            return None
        ch = nxt
    return None


def find_by_email(td: TypeData, email: str) -> int | None:
    """The id of the contact (live or archived, not purged) whose e-mail is `email`, case-insensitively."""
    wanted = (email or "").strip().lower()
    if not wanted or td.otype.name != "contacts":
        return None
    # A created record, or one whose e-mail was edited: the change row holds it.
    for ch in _changes(td).filter(properties__email__iexact=wanted).order_by("object_id"):
        if valid_change(td, ch) and not ch.purged and str((ch.properties or {}).get("email") or "").lower() == wanted:
            return ch.object_id
    # A generated record: its e-mail ends in its id.
    match = _EMAIL_ID.search(wanted)
    i = index_for_id(int(match.group(1))) if match and len(match.group(1)) < 19 else None
    if i is None or i >= td.size or str(td.full_properties(i).get("email") or "").lower() != wanted:
        return None
    ch = _changes(td).filter(object_id=id_for_index(i)).first()
    if ch is not None and (ch.purged or "email" in (ch.properties or {})):
        return None  # purged, or its e-mail was changed since (the first loop saw the new one)
    return id_for_index(i)


# --- search -----------------------------------------------------------------------------------------------------
@dataclass
class _KeyRow:
    """The columns of a change row that sorting needs (the row itself is loaded only if it lands on the page)."""

    pk: int
    object_id: int
    created_ms: int
    updated_ms: int


@dataclass
class Filter:
    prop: str
    op: str
    value: Any = None
    high: Any = None
    values: list | None = None


OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}
RANGE_OPS = {"EQ", "LT", "LTE", "GT", "GTE", "BETWEEN"}
_TOKEN_SPLIT = re.compile(r"[\s,;:/()\[\]\"'<>!?]+")


class Matcher:
    """Evaluates one filter against a full property dict, with HubSpot's type-aware comparison."""

    def __init__(self, td: TypeData, f: Filter) -> None:
        self.f = f
        info = td.props[f.prop]
        self.kind = info.type
        self.multi = info.field_type == "checkbox"

    def conv(self, raw: Any) -> Any:
        if raw is None or raw == "":
            return None
        if self.kind in ("number",):
            try:
                return float(raw)
            except (TypeError, ValueError):
                return None
        if self.kind in ("date", "datetime"):
            return parse_time_ms(raw)
        return str(raw).lower()

    def __call__(self, props: dict[str, Any]) -> bool:
        f = self.f
        raw = props.get(f.prop)
        has = raw is not None and raw != ""
        op = f.op
        if op == "HAS_PROPERTY":
            return has
        if op == "NOT_HAS_PROPERTY":
            return not has
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            hit = has and self._contains(str(raw), str(f.value or ""))
            return hit if op == "CONTAINS_TOKEN" else not hit
        if self.multi and op in ("EQ", "NEQ", "IN", "NOT_IN"):
            have = {v.lower() for v in str(raw).split(";")} if has else set()
            wanted = {str(v).lower() for v in (f.values or [])} if op in ("IN", "NOT_IN") else {str(f.value).lower()}
            hit = bool(have & wanted)
            return hit if op in ("EQ", "IN") else not hit
        value = self.conv(raw)
        if op in ("IN", "NOT_IN"):
            options = {self.conv(v) for v in (f.values or [])}
            hit = value is not None and value in options
            return hit if op == "IN" else not hit
        if op == "NEQ":
            return value != self.conv(f.value)
        if value is None:
            return False
        if op == "EQ":
            return value == self.conv(f.value)
        target = self.conv(f.value)
        if target is None:
            return False
        try:
            if op == "LT":
                return value < target
            if op == "LTE":
                return value <= target
            if op == "GT":
                return value > target
            if op == "GTE":
                return value >= target
            if op == "BETWEEN":
                high = self.conv(f.high)
                return high is not None and target <= value <= high
        except TypeError:
            return False
        return False

    @staticmethod
    def _contains(text: str, pattern: str) -> bool:
        pattern = pattern.lower().strip()
        if not pattern:
            return False
        text = text.lower()
        if fnmatch.fnmatchcase(text, pattern):
            return True
        return any(fnmatch.fnmatchcase(tok, pattern) for tok in _TOKEN_SPLIT.split(text) if tok)


@dataclass
class Group:
    lo: int  # generated index range [lo, hi) implied by filters on indexed properties
    hi: int
    residual: list[Matcher]
    all_filters: list[Matcher]


def _index_range(td: TypeData, f: Filter) -> tuple[int, int] | None:
    """The generated index range matching a filter on an indexed property, or None if not indexable."""
    n = td.size
    if f.op not in RANGE_OPS:
        return None
    if f.prop == "hs_object_id":

        def key(v):
            try:
                return int(float(v))
            except (TypeError, ValueError):
                return None

        fn = id_for_index
    elif f.prop == "createdate":
        key = parse_time_ms
        fn = td.created_ms
    elif f.prop == td.otype.modified_prop:
        key = parse_time_ms
        fn = td.modified_ms
    else:
        return None
    lo_v = key(f.value)
    if lo_v is None:
        return (0, 0)
    if f.op == "EQ":
        return lower_bound(fn, n, lo_v), lower_bound(fn, n, lo_v + 1)
    if f.op == "GT":
        return lower_bound(fn, n, lo_v + 1), n
    if f.op == "GTE":
        return lower_bound(fn, n, lo_v), n
    if f.op == "LT":
        return 0, lower_bound(fn, n, lo_v)
    if f.op == "LTE":
        return 0, lower_bound(fn, n, lo_v + 1)
    hi_v = key(f.high)
    if hi_v is None:
        return (0, 0)
    return lower_bound(fn, n, lo_v), lower_bound(fn, n, hi_v + 1)


_EMAIL_ID = re.compile(r"(\d+)@")


def _email_range(td: TypeData, f: Filter) -> tuple[int, int] | None:
    """Generated contact e-mails end in their record id ("anna.smith1234@..."), so an e-mail lookup is a
    single index, not a scan of the portal."""
    if f.prop != "email" or f.op != "EQ" or td.otype.name != "contacts":
        return None
    match = _EMAIL_ID.search(str(f.value or ""))
    i = index_for_id(int(match.group(1))) if match and len(match.group(1)) < 19 else None
    if i is None or i >= td.size:
        return (0, 0)
    return (i, i + 1)


def _range_q(td: TypeData, f: Filter) -> Q:
    """The SQL condition on change-row columns equivalent to a filter on an indexed property (Q() if none)."""
    columns = {"hs_object_id": "object_id", "createdate": "created_ms", td.otype.modified_prop: "updated_ms"}
    column = columns.get(f.prop)
    if column is None or f.op not in RANGE_OPS:
        return Q()

    def conv(v: Any) -> int | None:
        if column == "object_id":
            try:
                return int(float(v))
            except (TypeError, ValueError):
                return None
        return parse_time_ms(v)

    low = conv(f.value)
    if low is None:
        return Q(pk__in=[])
    if f.op == "BETWEEN":
        high = conv(f.high)
        return Q(pk__in=[]) if high is None else Q(**{f"{column}__gte": low, f"{column}__lte": high})
    lookup = {"EQ": "exact", "GT": "gt", "GTE": "gte", "LT": "lt", "LTE": "lte"}[f.op]
    return Q(**{f"{column}__{lookup}": low})


def parse_search(td: TypeData, body: dict) -> tuple[list[list[Filter]], tuple[str, bool] | None]:
    groups_raw = body.get("filterGroups") or []
    if not isinstance(groups_raw, list):
        raise SearchError("filterGroups must be a list")
    if len(groups_raw) > 5:
        raise SearchError(f"Too many filter groups ({len(groups_raw)}). The maximum number of filter groups is 5.")
    groups: list[list[Filter]] = []
    total = 0
    for g in groups_raw:
        filters_raw = (g or {}).get("filters") or []
        if len(filters_raw) > 6:
            raise SearchError(f"Too many filters in a group ({len(filters_raw)}). The maximum is 6 per group.")
        filters = []
        for fr in filters_raw:
            prop = fr.get("propertyName")
            op = fr.get("operator")
            if not prop or op not in OPERATORS:
                raise SearchError(f"Invalid filter: propertyName and a valid operator are required (got {op!r}).")
            if prop not in td.props:
                raise SearchError(f'Property "{prop}" does not exist on object type {td.otype.type_id}.')
            if op in ("IN", "NOT_IN") and not isinstance(fr.get("values"), list):
                raise SearchError(f"Operator {op} requires 'values'.")
            if op == "BETWEEN" and fr.get("highValue") is None:
                raise SearchError("Operator BETWEEN requires 'highValue'.")
            if op not in ("IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY") and fr.get("value") is None:
                raise SearchError(f"Operator {op} requires 'value'.")
            filters.append(Filter(prop, op, fr.get("value"), fr.get("highValue"), fr.get("values")))
        total += len(filters)
        groups.append(filters)
    if total > 18:
        raise SearchError(f"Too many filters ({total}). The maximum number of filters is 18.")
    sorts = body.get("sorts") or []
    if len(sorts) > 1:
        raise SearchError("Only one sort is allowed.")
    sort = None
    if sorts:
        s = sorts[0]
        if isinstance(s, str):  # HubSpot also accepts "sorts": ["-createdate"]
            s = {"propertyName": s.lstrip("-"), "direction": "DESCENDING" if s.startswith("-") else "ASCENDING"}
        name = s.get("propertyName")
        if name not in td.props:
            raise SearchError(f'Property "{name}" does not exist on object type {td.otype.type_id}.')
        direction = (s.get("direction") or "ASCENDING").upper()
        if direction not in ("ASCENDING", "DESCENDING"):
            raise SearchError("direction must be ASCENDING or DESCENDING")
        sort = (name, direction == "DESCENDING")
    return groups, sort


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def search(td: TypeData, body: dict, *, lag_seconds: float) -> dict:
    """HubSpot CRM search over generated + changed records. Raises SearchError for invalid requests."""
    groups_f, sort = parse_search(td, body)
    try:
        limit = int(body.get("limit", 10) if body.get("limit") is not None else 10)
        after = int(body.get("after") or 0)
    except (TypeError, ValueError) as exc:
        raise SearchError("limit and after must be integers") from exc
    if limit < 0 or limit > 200:
        raise SearchError(f"limit must be between 0 and 200 (got {limit}).")
    if after < 0:
        raise SearchError("after must be a non-negative integer")
    if after + limit > 10_000:
        raise SearchError(
            f"The maximum number of results a search can page through is 10000 (after={after}, limit={limit})."
        )
    wanted = wanted_properties(td, body.get("properties") or None)
    query = str(body.get("query") or "").strip().lower()

    n = td.size
    groups: list[Group] = []
    for filters in groups_f or [[]]:
        lo, hi = 0, n
        residual: list[Matcher] = []
        matchers = [Matcher(td, f) for f in filters]
        for f, m in zip(filters, matchers, strict=True):
            rng = _index_range(td, f)
            if rng is None:
                rng = _email_range(td, f)
                residual.append(m)  # the e-mail range only narrows; the filter itself still decides
            if rng is not None:
                lo, hi = max(lo, rng[0]), min(hi, rng[1])
        groups.append(Group(lo, max(lo, hi), residual, matchers))

    def query_ok(props: dict) -> bool:
        if not query:
            return True
        return any(query in str(props.get(p) or "").lower() for p in td.otype.default_props)

    def matches(props: dict) -> bool:
        return query_ok(props) and any(all(m(props) for m in g.all_filters) for g in groups)

    ranges = _merge_ranges([(g.lo, g.hi) for g in groups])
    needs_scan = bool(query) or any(g.residual for g in groups if g.hi > g.lo)
    sort_prop, desc = sort if sort else ("hs_object_id", False)
    index_sorted = sort_prop in ("hs_object_id", "createdate", td.otype.modified_prop)

    # Changed records: every change row hides its generated index (wherever the change moved it); the visible
    # ones (not archived, not changed within the index lag) are matched on their columns in SQL for the indexed
    # properties, and as full records only when other filters or a sort on another property need them.
    overridden = set(_changes(td).filter(index__isnull=False, index__lt=td.size).values_list("index", flat=True))
    visible = _changes(td).filter(archived=False, purged=False).filter(Q(index__isnull=True) | Q(index__lt=td.size))
    if lag_seconds > 0:
        visible = visible.filter(updated_ms__lte=now_ms() - int(lag_seconds * 1000))
    group_qs = []
    for filters in groups_f:
        group_q = Q()
        for f in filters:
            group_q &= _range_q(td, f)
        group_qs.append(group_q)
    # A group without indexed filters can match any row, so only narrow when every group has a condition
    # (an empty Q would be dropped by | instead of meaning "everything").
    if group_qs and all(group_qs):
        narrowing = group_qs[0]
        for group_q in group_qs[1:]:
            narrowing |= group_q
        visible = visible.filter(narrowing)
    materialize = needs_scan or not index_sorted
    visible_changes: list[tuple[Any, dict | None]] = []
    change_total = None
    if materialize:
        for ch in visible:
            props = change_full_properties(td, ch)
            if matches(props):
                visible_changes.append((ch, props))
    else:
        # SQL did all the filtering: count, and fetch only the first after+limit keys in sort order.
        column = {"hs_object_id": "object_id", "createdate": "created_ms"}.get(sort_prop, "updated_ms")
        order = (f"-{column}", "-object_id") if desc else (column, "object_id")
        change_total = visible.count()
        for pk, oid, created, updated in visible.order_by(*order).values_list(
            "pk", "object_id", "created_ms", "updated_ms"
        )[: after + limit]:
            visible_changes.append((_KeyRow(pk, oid, created, updated), None))

    # Properties computed per record; every other generated value comes from the record's template row, so a
    # filter on those is decided once per template row instead of once per record (1M records scan in ~0.5 s).
    per_record = {"hs_object_id", "createdate", td.otype.modified_prop, "email"}
    row_tables: list[list[bool]] | None = None
    if not query and all(m.f.prop not in per_record for g in groups for m in g.residual):
        row_tables = [[all(m(tpl) for m in g.residual) for tpl in td.templates] for g in groups]

    def gen_ok(i: int) -> bool:
        if i in overridden:
            return False
        if not needs_scan:
            return True
        if row_tables is not None:
            r = td.row(i)
            return any(g.lo <= i < g.hi and table[r] for g, table in zip(groups, row_tables, strict=True))
        props = td.full_properties(i)
        return query_ok(props) and any(g.lo <= i < g.hi and all(m(props) for m in g.residual) for g in groups)

    def gen_key_fn(i: int):
        if sort_prop == "hs_object_id":
            return (id_for_index(i), id_for_index(i))
        if sort_prop == "createdate":
            return (td.created_ms(i), id_for_index(i))
        return (td.modified_ms(i), id_for_index(i))

    def value_key(props: dict, oid: int):
        info = td.props[sort_prop]
        raw = props.get(sort_prop)
        if raw is None or raw == "":
            v: Any = None
        elif info.type == "number":
            try:
                v = float(raw)
            except ValueError:
                v = None
        elif info.type in ("date", "datetime"):
            v = parse_time_ms(raw)
        else:
            v = str(raw).lower()
        # Empty values sort last in either direction.
        filler = v if v is not None else 0
        return (v is None, filler, oid) if not desc else (v is not None, filler, oid)

    if index_sorted:
        # Index order is sort order: count, then stream lazily (only after + limit items are ever built).
        if needs_scan:
            total_gen = sum(1 for lo, hi in ranges for i in range(lo, hi) if gen_ok(i))
        else:
            total_gen = sum(hi - lo for lo, hi in ranges) - sum(
                1 for i in overridden if any(lo <= i < hi for lo, hi in ranges)
            )

        def gen_stream() -> Iterator[tuple]:
            seq = ranges if not desc else list(reversed(ranges))
            for lo, hi in seq:
                it = range(lo, hi) if not desc else range(hi - 1, lo - 1, -1)
                for i in it:
                    if gen_ok(i):
                        yield (gen_key_fn(i), i, None)
    else:
        candidates = [i for lo, hi in ranges for i in range(lo, hi) if gen_ok(i)]
        total_gen = len(candidates)
        items = []
        by_row = sort_prop not in per_record
        for i in candidates:
            props = td.templates[td.row(i)] if by_row else td.full_properties(i)
            items.append((value_key(props, id_for_index(i)), i, None))
        items.sort(key=lambda t: t[0], reverse=desc)

        def gen_stream() -> Iterator[tuple]:
            yield from items

    def change_key(ch: RecordChange, props: dict):
        if not index_sorted:
            return value_key(props, ch.object_id)
        if sort_prop == "hs_object_id":
            return (ch.object_id, ch.object_id)
        if sort_prop == "createdate":
            return (ch.created_ms, ch.object_id)
        return (ch.updated_ms, ch.object_id)

    change_items = sorted(
        ((change_key(ch, p), -1, (ch, p)) for ch, p in visible_changes), key=lambda t: t[0], reverse=desc
    )
    total = total_gen + (change_total if change_total is not None else len(change_items))
    merged = heapq.merge(gen_stream(), change_items, key=lambda t: t[0], reverse=desc)
    page: list[tuple] = []
    for pos, item in enumerate(merged):
        if pos < after:
            continue
        if len(page) >= limit:
            break
        page.append(item)
    results = []
    lazy = [payload[0].pk for _k, _i, payload in page if payload is not None and payload[1] is None]
    loaded = RecordChange.objects.in_bulk(lazy) if lazy else {}
    for _key, i, payload in page:
        if payload is None:
            results.append(generated_record(td, i, wanted))
        else:
            ch, props = payload
            if props is None:
                ch = loaded[ch.pk]
            results.append(change_record(td, ch, wanted, props))
    out: dict[str, Any] = {"total": total, "results": results}
    if after + len(results) < total and limit > 0:
        out["paging"] = {"next": {"after": str(after + len(results))}}
    return out

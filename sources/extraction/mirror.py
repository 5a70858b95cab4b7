"""Writes to the mirror: page upserts, archived rows, deletions, merges, the property schema.

Every page is one transaction: upsert of the changed rows (unchanged content hash = not rewritten), a block
of change_seq numbers from the source's ChangeCounter row (so pages commit in sequence order), the cursor,
and the run's heartbeat. The heartbeat update is also the fence: it only matches while this worker still owns
the run, so a worker that was presumed dead and replaced rolls its page back and stops.
A page costs a constant number of queries whatever its size; memory holds one page at a time.

**Merged records.** HubSpot merges two contacts (or companies) into a record with a new id (or the primary's
id); the ids merged away answer reads with the merged record, under its id, and appear in no list. Every
read asks for ``hs_merged_object_ids``: a record that names mirror ids there replaced them, so those rows
leave the mirror in the page's transaction, and a MergedRecord row keeps what they were merged into (counted
as "merged"). A full read's check (sources.extraction.deletions) finds the same through its batch reads: an id
answered under another id was merged away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.adapt import Transformer

from hubsync import hooks
from hubsync.querylog import execute_bulk, forget_queries

from .. import history
from ..models import ChangeCounter, MergedRecord, Record, RecordChange, SourceCollection
from .base import EngineBase
from .cursor import Cursor
from .records import content_hash, lastmod_property, merged_away, parse_dt, properties_json

ZERO = timedelta(0)
logger = logging.getLogger(__name__)

SCHEMA_KEYS = ("label", "type", "fieldType", "groupName", "hidden", "calculated", "hubspotDefined")
SCHEMA_CHANGES_KEPT = 50
RECORD_UPDATE_FIELDS = [
    "properties",
    "created_at",
    "updated_at",
    "archived",
    "archived_update",
    "content_hash",
    "change_seq",
    "synced_at",
]


@dataclass
class PageCommit:
    """One page of a (group) commit: its records, its deletion check's outcome, where it counts (None: the
    collection's counts), and what saves its read position inside the transaction."""

    sc: SourceCollection
    results: list[dict]
    gone: Gone | None = None
    counts: dict | None = None
    checkpoint: Callable[[], None] | None = None

    def ids(self) -> set[int]:
        ids = {int(r["id"]) for r in self.results}
        if self.gone:
            ids.update(self.gone.archived, self.gone.deleted, self.gone.merged)
        return ids


@dataclass
class _Prepared:
    page: PageCommit
    rows: dict[int, tuple]
    parsed: dict[int, dict]
    merged: dict[int, int]
    write: list[int]
    previous: dict[int, tuple]
    new: int


@dataclass
class Gone:
    """Mirror rows HubSpot no longer lists, sorted out by batch reads (a full read's deletion check,
    sources.extraction.deletions): archived in HubSpot (with archivedAt), or deleted for good."""

    archived: dict[int, datetime | None] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    merged: dict[int, int] = field(default_factory=dict)  # merged-away id -> the merged record's id
    note: str = ""  # why the check stopped, for the run's counts

    def __bool__(self) -> bool:
        return bool(self.archived or self.deleted or self.merged or self.note)


class _PgLiteral:
    """SQL literals for the page upsert on PostgreSQL that read back as the values psycopg's dumpers would send,
    at about half their cost per page (ids, flags and sequence numbers are written as Python writes integers and
    booleans). Text is quoted by doubling its quotes where the server reads backslashes as plain
    characters (standard_conforming_strings, PostgreSQL's default since 9.1); otherwise, and for a NUL (which
    PostgreSQL text cannot hold: psycopg raises), psycopg quotes it. Aware UTC datetimes are written in ISO form
    as timestamptz; any other datetime goes to psycopg."""

    def __init__(self, raw: Any) -> None:
        self._literal = Transformer(raw).as_literal
        self._encoding = raw.info.encoding
        self._plain = raw.info.parameter_status("standard_conforming_strings") == "on"

    def _psycopg(self, value: Any) -> str:
        return self._literal(value).decode(self._encoding)

    def text(self, value: str) -> str:
        if self._plain and "\x00" not in value:
            return "'" + value.replace("'", "''") + "'"
        return self._psycopg(value)

    def when(self, value: datetime | None) -> str:
        if value is None:
            return "NULL"
        if value.tzinfo is UTC or value.utcoffset() == ZERO:
            return f"'{value.isoformat()}'::timestamptz"  # ends in +00:00
        return self._psycopg(value)


class MirrorWrites(EngineBase):
    """The mirror's writes: commit_page and commit_gone are a transaction each (with the heartbeat as fence); the
    others run inside the caller's."""

    def allocate(self, n: int) -> int:
        """Reserve n change_seq numbers; returns the highest. Must run inside the page's transaction: the
        counter row stays locked until commit, so sequence order is commit order."""
        ChangeCounter.objects.filter(source_id=self.source.pk).update(value=F("value") + n)
        return ChangeCounter.objects.filter(source_id=self.source.pk).values_list("value", flat=True).get()

    def upsert(self, collection: str, values: list[tuple], archived_update: AbstractSet[int] = frozenset()) -> set[int]:
        """One INSERT ... ON CONFLICT DO UPDATE for the page (PostgreSQL and SQLite alike). Returns the ids written.

        Raw SQL because the ORM's bulk_create spends more time preparing 100 x 10 values than the database
        spends writing them, and it would serialise the properties a second time (we already hold the JSON
        we hashed). values: (object_id, properties_json, created_at, updated_at, archived, hash, change_seq);
        `archived_update`: the ids whose row gets Record.archived_update (every other row is written without it).

        A row is never overwritten by an older read: the update applies only when the new HubSpot updatedAt is
        not before the stored one (either unknown: it applies). A scheduled page read before a change and a live
        read after it (sources.live) can commit in either order; the newer version stays."""
        table = Record._meta.db_table
        columns = (
            "source_id, collection, object_id, properties, created_at, updated_at, archived, archived_update, "
            "content_hash, change_seq, synced_at"
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in RECORD_UPDATE_FIELDS)
        head = f"INSERT INTO {table} ({columns}) VALUES "
        tail = (
            f" ON CONFLICT (source_id, collection, object_id) DO UPDATE SET {updates} "
            f"WHERE {table}.updated_at IS NULL OR excluded.updated_at IS NULL "
            f"OR excluded.updated_at >= {table}.updated_at RETURNING object_id"
        )
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                execute_bulk(cur, head + self._pg_rows(collection, values, archived_update) + tail)
            else:
                rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(values))
                execute_bulk(cur, head + rows + tail, self._params(collection, values, archived_update))
            return {int(row[0]) for row in cur.fetchall()}

    def _params(self, collection: str, values: list[tuple], archived_update: AbstractSet[int]) -> list:
        ops = connection.ops
        now = ops.adapt_datetimefield_value(timezone.now())
        params: list = []
        for object_id, text, created, updated, archived, digest, seq in values:
            params += [
                self.source.pk,
                collection,
                object_id,
                text,
                ops.adapt_datetimefield_value(created),
                ops.adapt_datetimefield_value(updated),
                archived,
                object_id in archived_update,
                digest,
                seq,
                now,
            ]
        return params

    def _pg_rows(self, collection: str, values: list[tuple], archived_update: AbstractSet[int]) -> str:
        """The page's rows as SQL literals: a statement of 1,100 placeholders is parsed again on every execute
        (psycopg caches statements of up to 50), which cost the writer more CPU than anything else (3x the
        literals' quoting, measured), written by `_PgLiteral`."""
        raw = connection.connection
        literal = _PgLiteral(raw)
        head = f"({int(self.source.pk)}, {literal.text(collection)}, "
        tail = f", {literal.when(timezone.now())})"
        return ", ".join(
            f"{head}{int(object_id)}, {literal.text(text)}::jsonb, {literal.when(created)}, {literal.when(updated)}, "
            f"{'true' if archived else 'false'}, {'true' if object_id in archived_update else 'false'}, "
            f"{literal.text(digest)}, {int(seq)}{tail}"
            for object_id, text, created, updated, archived, digest, seq in values
        )

    def commit_page(
        self,
        sc: SourceCollection,
        results: Iterable[dict],
        new_cursor: Cursor | None,
        gone: Gone | None = None,
        *,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        """One page, one transaction: the rows, merges, the deletion check's outcome, and the read position with
        the fence: the collection's cursor and the run's heartbeat, or `checkpoint` (a range of a partitioned
        read saves its own row and fences itself). `new_cursor` None leaves the collection's cursor alone (a
        range of a partitioned read; the live updates of sources.live, outside the scheduled read's order)."""
        stored = new_cursor.to_json() if new_cursor is not None else None

        def fence() -> None:
            if checkpoint is not None:
                checkpoint()
                return
            if stored is not None:
                SourceCollection.objects.filter(pk=sc.pk).update(cursor=stored)
                sc.cursor = stored
            self.heartbeat()

        self.commit_pages([PageCommit(sc, list(results), gone)], fence=fence)

    def commit_pages(self, pages: list[PageCommit], *, fence: Callable[[], None]) -> None:
        """Several pages in ONE transaction (a group commit: one change_seq block, one fence): each page's rows,
        merges and deletion-check outcome, then its own `checkpoint` (a range's row with its position), then
        `fence`. No two pages may hold the same id (each page's known rows are read before the transaction)."""
        prepared = [self._prepare_page(page) for page in pages]
        total = sum(len(p.write) for p in prepared)
        with transaction.atomic():
            seq = self.allocate(total) - total if total else 0
            for page in prepared:
                with self._counting_into(page.page):
                    seq = self._write_page(page, seq)
                    if page.page.checkpoint is not None:
                        page.page.checkpoint()
                forget_queries()  # a group holds tens of pages; with DEBUG on each upsert is logged as ~1 MB of SQL
            fence()
        for page in prepared:
            self.inserted += page.new
            if page.write:
                self.changed_collections.add(page.page.sc.collection)
                self.unnotified += len(page.write)
                self.notify(collection=page.page.sc.collection)
        self.maybe_analyze()
        forget_queries()
        for page in prepared:
            after_page(self, page.page.sc)
        sc = pages[-1].sc
        self.say(f"{sc.collection}: {self.done} read" + (f" of ~{self.total}" if self.total else ""), force=False)

    @contextmanager
    def _counting_into(self, page: PageCommit) -> Iterator[None]:
        """The page's writes count into `page.counts` (a range's own) when it has them."""
        if page.counts is None:
            yield
            return
        collection = page.sc.collection
        own = self.counts[collection]
        self.counts[collection] = page.counts
        try:
            yield
        finally:
            self.counts[collection] = own

    def _prepare_page(self, page: PageCommit) -> _Prepared:
        """Before the transaction: the page's rows, which of them are new or changed (one query), the old
        versions of the changed ones for the history; counted."""
        sc, results = page.sc, page.results
        merged = merged_away(results)
        if merged:
            merged = {old: new for old, new in merged.items() if old not in {int(r["id"]) for r in results}}
        rows, parsed = _page_rows(results)
        existing: dict[int, str] = {}
        if rows:
            existing = dict(
                Record.objects.filter(
                    source=self.source, collection=sc.collection, object_id__in=list(rows)
                ).values_list("object_id", "content_hash")
            )
        new = updated = 0
        write: list[int] = []
        for object_id, row in rows.items():
            known = existing.get(object_id)
            if known is None:
                new += 1
                write.append(object_id)
            elif known != row[4]:
                updated += 1
                write.append(object_id)
        with self._counting_into(page):
            c = self.counts[sc.collection]
            c["read"] += len(rows)
            c["new"] += new
            c["updated"] += updated
            c["unchanged"] += len(rows) - new - updated
        self.done += len(rows)
        previous: dict[int, tuple] = {}
        if updated and history.enabled():
            # The old versions of the changed rows only (one query; unchanged and new rows cost nothing).
            previous = {
                object_id: (props, archived, updated_at)
                for object_id, props, archived, updated_at in Record.objects.filter(
                    source=self.source,
                    collection=sc.collection,
                    object_id__in=[object_id for object_id in write if object_id in existing],
                ).values_list("object_id", "properties", "archived", "updated_at")
            }
        return _Prepared(page, rows, parsed, merged, write, previous, new)

    def _write_page(self, p: _Prepared, seq: int) -> int:
        """Inside the transaction: the page's upsert numbered from `seq` + 1, its history, merges and deletion
        check. Returns the last change_seq used."""
        sc = p.page.sc
        if p.write:
            values = []
            for object_id in sorted(p.write):
                seq += 1
                values.append((object_id, *p.rows[object_id], seq))
            written = self.upsert(sc.collection, values)
            if p.previous:
                # values: (object_id, json, created, updated, archived, hash, seq); a row the upsert kept
                # (its stored version is newer) changed nothing.
                history.write(
                    history.changes_for_page(
                        source_id=self.source.pk,
                        collection=sc.collection,
                        run_id=self.run_row.pk,
                        old=p.previous,
                        new=[
                            (v[0], v[6], p.parsed[v[0]], v[4], v[3])
                            for v in values
                            if v[0] in p.previous and v[0] in written
                        ],
                    )
                )
        if p.merged:
            # Ids the page's records replaced (HubSpot merges): same transaction as the merged records.
            self.remove_merged(sc, p.merged)
        if p.page.gone:
            # Ids outside this page's rows (the deletion check): same transaction, same fence.
            self.apply_gone(sc, p.page.gone)
        return seq

    def write_final(self, sc: SourceCollection, records: list[dict]) -> int:
        """Write archived records with their final values (new hash, new change_seq, a history row), HubSpot's
        archivedAt as their updated_at, and Record.archived_update when those values differ from the last live
        ones. Rows newly archived count as archived, archived rows whose values were old count as updated. Inside
        the caller's transaction. Returns the rows changed."""
        if not records:
            return 0
        old = {
            object_id: (props, archived, updated, digest, flagged)
            for object_id, props, archived, updated, digest, flagged in Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, object_id__in=[int(r["id"]) for r in records]
            ).values_list("object_id", "properties", "archived", "updated_at", "content_hash", "archived_update")
        }
        lastmod = lastmod_property(sc.collection)
        new: dict[int, tuple] = {}
        updates: set[int] = set()  # values the mirror never had live (archiving alone moves the last-modified date)
        for r in records:
            object_id = int(r["id"])
            if object_id not in old:
                continue
            props = {k: v for k, v in (r.get("properties") or {}).items() if v is not None}
            text = properties_json(props)
            digest = content_hash(text, True)
            if digest == old[object_id][3]:
                continue
            at = parse_dt(r.get("archivedAt") or r.get("updatedAt")) or old[object_id][2]
            created = parse_dt(r.get("createdAt"))
            new[object_id] = (props, text, created, at, digest)
            if _without(props, lastmod) != _without(old[object_id][0], lastmod) or old[object_id][4]:
                updates.add(object_id)
        if not new:
            return 0
        created_at = dict(
            Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, object_id__in=list(new)
            ).values_list("object_id", "created_at")
        )
        top = self.allocate(len(new))
        seq = top - len(new)
        values, changes = [], []
        for object_id in sorted(new):
            props, text, created, at, digest = new[object_id]
            seq += 1
            values.append((object_id, text, created or created_at.get(object_id), at, True, digest, seq))
            changes.append((object_id, seq, props, True, at))
        self.upsert(sc.collection, values, archived_update=updates)
        if history.enabled():
            # An archive alone moves the last-modified date: its history entry is the archive, no property change.
            before = {
                oid: (
                    old[oid][0]
                    if oid in updates or lastmod not in new[oid][0]
                    else {**old[oid][0], lastmod: new[oid][0][lastmod]},
                    old[oid][1],
                    old[oid][2],
                )
                for oid in new
            }
            history.write(
                history.changes_for_page(
                    source_id=self.source.pk,
                    collection=sc.collection,
                    run_id=self.run_row.pk,
                    old=before,
                    new=changes,
                )
            )
        counts = self.counts[sc.collection]
        newly = sum(1 for oid in new if not old[oid][1])
        counts["archived"] += newly
        # Archived rows that held old values: updated, unless this run archived them a moment ago (counted then).
        counts["updated"] += sum(1 for oid in new if old[oid][1] and (sc.collection, oid) not in self.archived_now)
        self.changed_collections.add(sc.collection)
        return len(new)

    def mark_archived(self, sc: SourceCollection, archived_at: dict[int, datetime | None]) -> int:
        """Mark the mirror's live rows of these ids archived (new hash, new change_seq, a history row), with
        HubSpot's archivedAt as their updated_at. Inside the caller's transaction. Returns the rows changed."""
        if not archived_at:
            return 0
        rows = list(
            Record.objects.filter(
                source=self.source, collection=sc.collection, object_id__in=list(archived_at), archived=False
            ).values_list("object_id", "properties", "created_at", "updated_at")
        )
        if not rows:
            return 0
        top = self.allocate(len(rows))
        seq = top - len(rows)
        values = []
        changes = []
        for object_id, props, created, updated in sorted(rows, key=lambda r: r[0]):
            seq += 1
            text = properties_json(props)
            values.append(
                (object_id, text, created, archived_at.get(object_id) or updated, True, content_hash(text, True), seq)
            )
            changes.append((object_id, seq, props, True, archived_at.get(object_id) or updated))
        self.upsert(sc.collection, values)
        if history.enabled():
            history.write(
                history.changes_for_page(
                    source_id=self.source.pk,
                    collection=sc.collection,
                    run_id=self.run_row.pk,
                    old={oid: (props, False, updated) for oid, props, _created, updated in rows},
                    new=changes,
                )
            )
        # Counted here; the archived scan reads their final values.
        self.archived_now.update((sc.collection, oid) for oid, *_rest in rows)
        self.counts[sc.collection]["archived"] += len(rows)
        self.changed_collections.add(sc.collection)
        return len(rows)

    def delete_records(self, sc: SourceCollection, ids: list[int]) -> int:
        """Remove records HubSpot deleted for good, and what hubsync kept of them: the mirror rows, their history,
        and (through hubsync.hooks.records_deleted) what higher apps keep. Inside the caller's transaction; the
        row counters follow by trigger (hubsync.counters)."""
        if not ids:
            return 0
        slots = ", ".join(["%s"] * len(ids))
        where = f"source_id = %s AND collection = %s AND object_id IN ({slots})"
        params: list[Any] = [self.source.pk, sc.collection, *ids]
        with connection.cursor() as cur:
            # Raw DELETEs: nothing refers to these rows, and the ORM would first SELECT what it deletes.
            cur.execute(f"DELETE FROM {Record._meta.db_table} WHERE {where}", params)
            deleted = max(cur.rowcount, 0)
            cur.execute(f"DELETE FROM {RecordChange._meta.db_table} WHERE {where}", params)
        # What higher apps keep of these records goes in this same transaction (mappings: delivery payloads).
        hooks.records_deleted.send(source_id=self.source.pk, collection=sc.collection, object_ids=ids, removed=deleted)
        self.counts[sc.collection]["deleted"] += deleted
        return deleted

    def remove_merged(self, sc: SourceCollection, merged: dict[int, int]) -> int:
        """Take ids HubSpot merged into another record out of the mirror, and record each merge (MergedRecord).

        The merged record is a record of its own (a new id, or the primary's), read and delivered like any other;
        the merged-away ids will never be listed again, so their rows would otherwise stay live for good. Unlike a
        deletion, their history and the last payloads kept on their delivery states stay (nothing asked to erase
        them; the record debugger shows them with the merge). Inside the caller's transaction."""
        if not merged:
            return 0
        held = list(
            Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, object_id__in=list(merged)
            ).values_list("object_id", flat=True)
        )
        if not held:
            return 0
        now = timezone.now()
        for object_id in held:
            MergedRecord.objects.update_or_create(
                source_id=self.source.pk,
                collection=sc.collection,
                object_id=object_id,
                defaults={"merged_into": merged[object_id], "merged_at": now, "run_id": self.run_row.pk},
            )
        slots = ", ".join(["%s"] * len(held))
        with connection.cursor() as cur:
            cur.execute(
                f"DELETE FROM {Record._meta.db_table} WHERE source_id = %s AND collection = %s "
                f"AND object_id IN ({slots})",
                [self.source.pk, sc.collection, *held],
            )
        hooks.records_merged.send(source_id=self.source.pk, collection=sc.collection, object_ids=held)
        counts = self.counts[sc.collection]
        counts["merged"] = counts.get("merged", 0) + len(held)
        logger.info(
            "sync run %s: %s: %s records merged into others in HubSpot removed from the mirror",
            self.run_row.pk,
            sc.collection,
            len(held),
        )
        return len(held)

    def apply_gone(self, sc: SourceCollection, gone: Gone) -> None:
        """A deletion check's outcome, inside the caller's (page) transaction."""
        if gone.note:
            self.add_note(sc, gone.note)
        self.mark_archived(sc, gone.archived)
        self.remove_merged(sc, gone.merged)
        if gone.deleted:
            n = self.delete_records(sc, gone.deleted)
            logger.debug(
                "sync run %s: %s: %s records deleted in HubSpot removed from the mirror",
                self.run_row.pk,
                sc.collection,
                n,
            )

    def commit_gone(self, sc: SourceCollection, gone: Gone) -> None:
        with transaction.atomic():
            self.apply_gone(sc, gone)
            self.heartbeat()
        forget_queries()


def _page_rows(results: list[dict]) -> tuple[dict[int, tuple], dict[int, dict]]:
    """A page's records as mirror rows {id: (properties_json, created_at, updated_at, archived, hash)}, and their
    properties as dicts (for the record history). Null properties are left out: HubSpot sends an empty property
    as null or not at all, and both must hash alike."""
    rows: dict[int, tuple] = {}
    parsed: dict[int, dict] = {}
    for r in results:
        props = {k: v for k, v in (r.get("properties") or {}).items() if v is not None}
        archived = bool(r.get("archived", False))
        text = properties_json(props)
        parsed[int(r["id"])] = props
        rows[int(r["id"])] = (
            text,
            parse_dt(r.get("createdAt")),
            parse_dt(r.get("updatedAt")),
            archived,
            content_hash(text, archived),
        )
    return rows, parsed


def after_page(engine: MirrorWrites, sc: SourceCollection) -> None:
    """Called after every committed page. Does nothing; tests replace it to stop a run at a chosen page."""


def normalize_schema(raw: list[dict]) -> dict[str, dict]:
    """HubSpot's property list (`raw`, as the properties endpoint returns it) as SourceCollection.properties
    keeps it: {name: the keys we use, options reduced to label and value}."""
    schema: dict[str, dict] = {}
    for prop in raw:
        if not prop.get("name"):
            continue
        entry = {k: prop.get(k) for k in SCHEMA_KEYS if k in prop}
        if prop.get("options"):
            entry["options"] = [{"label": o.get("label"), "value": o.get("value")} for o in prop["options"]]
        schema[prop["name"]] = entry
    return schema


def store_schema(sc: SourceCollection, raw: list[dict]) -> dict[str, dict]:
    """Save HubSpot's property list (`raw`, as the properties endpoint returns it) on the collection, log what
    changed in `schema_changes`, and run the drift check on it. One place for every reader of the schema (the
    engine's discovery, the model builder's live preview): a change first seen by the preview must flag and pause
    mappings exactly as if a sync had seen it, or the next sync would find nothing changed."""
    schema = normalize_schema(raw)
    old = sc.properties or {}
    fields = ["properties", "schema_discovered_at", "last_error"]
    if old:
        added = sorted(set(schema) - set(old))
        removed = sorted(set(old) - set(schema))
        changed = sorted(
            name
            for name in set(schema) & set(old)
            if any(schema[name].get(k) != old[name].get(k) for k in ("type", "fieldType", "label", "options"))
        )
        if added or removed or changed:
            entry = {"at": timezone.now().isoformat(), "added": added, "removed": removed, "changed": changed}
            sc.schema_changes = [*(sc.schema_changes or []), entry][-SCHEMA_CHANGES_KEPT:]
            fields.append("schema_changes")
    sc.properties = schema
    sc.schema_discovered_at = timezone.now()
    sc.last_error = ""
    sc.save(update_fields=fields)
    if old:
        _check_drift(sc, old, schema)
    return schema


def _check_drift(sc: SourceCollection, old: dict, new: dict) -> None:
    """Schema drift (hubsync.hooks.schema_discovered; mappings flags, and by the workspace's setting pauses, the
    mappings that use a property HubSpot deleted, renamed or retyped), before this run's pages reach any
    delivery."""
    try:
        hooks.schema_discovered.send(source_collection=sc, old=old, new=new)
    except Exception:  # the mirror must keep syncing; the change stays listed in schema_changes
        logger.exception("schema drift check failed for %s", sc)


def _without(props: dict, name: str) -> dict:
    return {k: v for k, v in (props or {}).items() if k != name}

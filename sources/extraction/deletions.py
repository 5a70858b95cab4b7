"""The check for records deleted in HubSpot: covered id ranges, candidates, confirmations by batch read.

**Permanently deleted records** (HubSpot's "permanently delete", a GDPR delete, an archived record purged from the
recycle bin after 90 days) vanish from the list, the archived list, search and reads: nothing announces them. A
**full read** (the list read, and so the first sync and a "Full sync" of a source without a start date) looks for
them, page by page, without ever holding a set of ids: the list returns records in ascending id order (in
practice; ``after`` is documented as opaque, so the order is *checked*, never trusted), so after a page whose ids
end at M, every id in (previous page's M, M] that the mirror holds as live but the page did not return is a
**candidate**; the last page's range runs to the end of the mirror. Candidates are only confirmed, never trusted,
100 at a time (collected across pages, so scattered deletions do not cost a confirmation per page): a batch read
with archived=false and one with archived=true (ids only). Found live: nothing happens. Found archived: the row is
marked archived (the archived scan then reads its final values). Answered under another id: merged away (a batch
read asking for ``hs_merged_object_ids`` says into which record). Reported missing by both reads: the record is
gone for good, and so is everything hubsync holds of it (it was personal data the user deleted in HubSpot): its
mirror row, its history (RecordChange), and the `last_payload` of its DeliveryState rows (their ids and hashes
stay). The deletions count as "deleted" in the run's counts. The cursor carries the check's progress with each
page (``covered``: the id range checked; ``pending``: the fewer than 100 candidates not confirmed yet), so a
resumed read loses nothing. The archived list of a full run is checked the same way against the mirror's archived
rows (archived records purged after 90 days). A page that is not in ascending order (or comes below the covered
id) stops the check for the rest of that read (the candidates found so far are still confirmed), and the run's
counts carry a note saying so; incremental runs never delete. Cost: one indexed range query per page (in the
prefetch thread, overlapping HubSpot's answer), plus two batch reads per 100 candidates when there are any.

A "Full sync" of a source **with a start date** reads its window through search, which cannot tell a deleted
record from one outside the window; so after the search read it makes an **ids-only pass**: the same list pages
with ``hs_object_id`` only, through the same check (same order check, candidates, confirmations, cursor with
``covered``/``pending``). The ids it returns are neither read nor written (the search read wrote the window's
records; the others are not mirrored): only mirror rows HubSpot no longer lists are candidates. Cost:
ceil(N / 100) requests, N = *all* of HubSpot's live records of the collection (not only the window's), plus the
confirmations; counted as ``listed`` in the run's counts. A broken order ends the pass at once. The archived list
is then checked as for a full read. The first sync (empty mirror), incremental and scheduled syncs make no pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime

from django.db import connection

from ..models import Record, SourceCollection
from .cursor import IdsPass, ListRead
from .mirror import Gone, MirrorWrites
from .records import MERGED_IDS, merged_away, parse_dt

logger = logging.getLogger(__name__)

BATCH_READ_LIMIT = 100

ORDER_NOTE = (
    "HubSpot's list did not come in id order, so the check for records deleted in HubSpot stopped at that page "
    "(no record was removed on a guess); the next full sync checks again."
)


def _ints(values: Iterable) -> set[int]:
    return {int(v) for v in values if str(v).isdigit()}


def ascending(ids: list[int], covered: int) -> bool:
    """Whether a page's ids are strictly ascending and all above the id range covered so far."""
    previous = covered
    for object_id in ids:
        if object_id <= previous:
            return False
        previous = object_id
    return True


def ready_chunks(pending: list[int], *, everything: bool = False) -> Iterator[list[int]]:
    """Take the candidates to confirm off `pending`, BATCH_READ_LIMIT at a time: the full chunks only (the rest
    waits for more, so scattered deletions cost two batch reads per 100, not per page), or with `everything` (the
    end of a read) the rest too. Taken off before each chunk is yielded, so `pending` is what is left."""
    while len(pending) >= BATCH_READ_LIMIT or (everything and pending):
        chunk = pending[:BATCH_READ_LIMIT]
        del pending[:BATCH_READ_LIMIT]
        yield chunk


class Deletions(MirrorWrites):
    """The check's queries and confirmations; the list read (reads.Reads.list_pages) and the archived scan drive
    it page by page, and the mirror applies what it finds (mirror.MirrorWrites.apply_gone)."""

    def confirm_pending(
        self, sc: SourceCollection, chunk: list[int], pending: list[int], before: ListRead | IdsPass
    ) -> tuple[list, ListRead | IdsPass, Gone]:
        """Confirm `chunk` (just taken off `pending`), as an item of list_pages committed on its own with `before`,
        the cursor before the current page: a crash re-reads that page and finds its range's candidates again,
        while the earlier ranges' unconfirmed ones stay in the cursor."""
        gone = self.confirm_gone(sc, chunk, mirror_archived=False)
        return [], replace(before, pending=tuple(i for i in pending if i <= (before.covered or 0))), gone

    def candidate_batches(
        self, sc: SourceCollection, *, archived: bool, low: int, high: int | None, exclude: list[int]
    ) -> Iterator[list[int]]:
        """The deletion check's candidates for one id range: the mirror's rows with this `archived` flag and an id
        in (low, high] (high None: no upper end) that are not in `exclude` (what HubSpot returned for the range),
        in ascending batches of at most BATCH_READ_LIMIT (keyset on the unique index: bounded memory whatever the
        number; one query when there are none, the usual case)."""
        after = low
        while True:
            if connection.vendor == "postgresql":
                batch = self._candidates_pg(sc, archived=archived, after=after, high=high, exclude=exclude)
            else:
                qs = Record.objects.filter(
                    source_id=self.source.pk, collection=sc.collection, archived=archived, object_id__gt=after
                )
                if high is not None:
                    qs = qs.filter(object_id__lte=high)
                if exclude:
                    qs = qs.exclude(object_id__in=exclude)
                batch = list(qs.order_by("object_id").values_list("object_id", flat=True)[:BATCH_READ_LIMIT])
            if batch:
                yield batch
            if len(batch) < BATCH_READ_LIMIT:
                return
            after = batch[-1]

    def _candidates_pg(
        self, sc: SourceCollection, *, archived: bool, after: int, high: int | None, exclude: list[int]
    ) -> list[int]:
        """`candidate_batches`' query on PostgreSQL as one short statement with the page's ids as one array (it runs
        for every page of a checking read: the ORM spent more time building it than PostgreSQL running it, and a
        statement of over 50 parameters is parsed again on every execute)."""
        sql = (
            f"SELECT object_id FROM {Record._meta.db_table} WHERE source_id = %s AND collection = %s "
            "AND archived = %s AND object_id > %s AND object_id <= %s AND NOT (object_id = ANY(%s)) "
            "ORDER BY object_id LIMIT %s"
        )
        top = high if high is not None else 2**63 - 1
        with connection.cursor() as cur:
            cur.execute(sql, [self.source.pk, sc.collection, archived, after, top, list(exclude), BATCH_READ_LIMIT])
            return [int(row[0]) for row in cur.fetchall()]

    def confirm_gone(self, sc: SourceCollection, ids: list[int], *, mirror_archived: bool) -> Gone:
        """Ask HubSpot about candidate ids (a batch read live, one archived): archived ones (unless the mirror
        has them archived already), those *both* reads report missing, which are deleted for good, and those
        answered under another id, which HubSpot merged into that record. Ids found live under their own id are
        left alone (the list skipped them for a reason of its own; the next read sees them)."""
        keys = [str(i) for i in ids]
        live, live_missing = self.hubspot.batch_read_found(sc.collection, keys, ["hs_object_id"], archived=False)
        held, held_missing = self.hubspot.batch_read_found(sc.collection, keys, ["hs_object_id"], archived=True)
        found_live: set[int] = set()
        archived_at: dict[int, datetime | None] = {}
        # Each record's own `archived` flag decides, whichever read returned it.
        for records, default in ((live, False), (held, True)):
            for r in records:
                if r.get("archived", default):
                    archived_at[int(r["id"])] = parse_dt(r.get("archivedAt") or r.get("updatedAt"))
                else:
                    found_live.add(int(r["id"]))
        missing = _ints(live_missing) & _ints(held_missing)
        answered = found_live | set(archived_at)
        merged = self.merged_into(sc, [i for i in ids if i not in answered and i not in missing])
        gone = Gone(merged=merged)
        if not mirror_archived:
            gone.archived = {i: at for i, at in archived_at.items() if i not in found_live}
        # Deleted only when both reads *reported* the id missing: an id a read said nothing about stays.
        gone.deleted = [i for i in ids if i in missing and i not in answered and i not in gone.merged]
        left = set(ids) & found_live
        if left:
            logger.info(
                "sync run %s: %s: %s ids missing from the list were found live; left alone",
                self.run_row.pk,
                sc.collection,
                len(left),
            )
        return gone

    def merged_into(self, sc: SourceCollection, ids: list[int]) -> dict[int, int]:
        """{id: the record it was merged into} for ids a live batch read answered, but not under their own id:
        HubSpot answers a read of a merged-away id with the merged record. A batch read asking for
        `hs_merged_object_ids` names them (one request per 100 such ids; none in the usual case); an id no
        merged record names is read alone, and merged into whatever record answers for it."""
        if not ids:
            return {}
        asked = set(ids)
        merged: dict[int, int] = {}
        for archived in (False, True):  # the merged record may have been archived since
            rest = [str(i) for i in ids if i not in merged]
            if rest:
                records = self.hubspot.batch_read(sc.collection, rest, ["hs_object_id", MERGED_IDS], archived=archived)
                merged.update({old: new for old, new in merged_away(records).items() if old in asked})
        for object_id in ids:
            if object_id in merged:
                continue
            record = self.hubspot.read_record(sc.collection, str(object_id), ["hs_object_id"])
            answer = str((record or {}).get("id") or "")
            if answer.isdigit() and int(answer) != object_id:
                merged[object_id] = int(answer)
        return merged

"""Changing a portal's data: create, update, archive and purge records, bulk imports, custom properties.

Used by `sandbox_mutate`, the sandbox page, the GDPR delete endpoint and the test fixtures. Every change is a
RecordChange row (the only record storage there is), so list, read and search see it at once (search after the
index lag).

Purging is HubSpot's permanent deletion: "permanently delete" in the UI, a GDPR delete
(`POST /crm/v3/objects/{type}/gdpr-delete`), or an archived record leaving the recycle bin after 90 days. The
record disappears from every endpoint (lists, archived lists, search, read, batch read: a 404 like an id that
never existed); its id is never given to another record. The change row stays as a tombstone with its
properties emptied (see models.RecordChange).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F, Max, Q

from . import data, records, state, webhooks
from .models import CustomProperty, Portal, RecordChange
from .schema import OBJECT_TYPES, ObjectType, resolve_type

BATCH = 1000
PROPERTY_TYPES = {
    # type: default fieldType
    "string": "text",
    "number": "number",
    "bool": "booleancheckbox",
    "enumeration": "select",
    "date": "date",
    "datetime": "date",
    "phone_number": "phonenumber",
}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


class MutationError(ValueError):
    pass


@dataclass
class MutationResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    timestamp_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "archived": self.archived,
            "purged": self.purged,
            "timestamp": data.iso(self.timestamp_ms) if self.timestamp_ms else None,
        }


def _otype(collection: str) -> ObjectType:
    otype = resolve_type(collection)
    if otype is None:
        raise MutationError(f"unknown collection {collection!r}; choose one of {', '.join(OBJECT_TYPES)}")
    return otype


def _edit_values(td: data.TypeData, rng: random.Random, stamp: int) -> dict[str, Any]:
    """A handful of realistic property edits (strings, numbers, enumerations, a custom property)."""
    edits: dict[str, Any] = {}
    candidates = [
        p
        for p in td.otype.props
        if p.name in td.props
        and p.gen not in ("id", "createdate", "modified")
        and p.name != "email"
        and not p.calculated
    ]
    owners = [o["id"] for o in data.owners_for(td.hub_id, td.seed) if not o["archived"]]
    for p in rng.sample(candidates, min(3, len(candidates))):
        # A value another record has (so it is realistic), or a freshly generated one if that one is empty.
        value = td.templates[rng.randrange(len(td.templates))].get(p.name)
        if value is None:
            company = f"{rng.choice(data.COMPANY_WORDS)} {rng.choice(data.COMPANY_SUFFIX)}"
            ctx = data.GenContext(
                rng, rng.choice(data.FIRST), rng.choice(data.LAST), company, rng.choice(data.CITIES), owners, stamp
            )
            value = data.gen_value(p.name, p, ctx)
        edits[p.name] = value
    # Always touch one obviously changing field so tests can see the edit.
    marker = {"contacts": "jobtitle", "companies": "description", "deals": "hs_next_step", "tickets": "subject"}
    name = marker[td.otype.name]
    if name in td.props:
        edits[name] = f"Edited {data.iso(stamp)} #{rng.randrange(1, 10**6)}"
    return edits


def mutate(
    *,
    portal: Portal,
    collection: str,
    create: int = 0,
    update: int = 0,
    archive: int = 0,
    purge: int = 0,
    purge_archived: int = 0,
    same_timestamp: bool = False,
    seed: int | None = None,
    at_ms: int | None = None,
) -> MutationResult:
    """Create, update, archive and purge records. `purge` permanently deletes that many live records (a GDPR
    delete), `purge_archived` that many archived ones (HubSpot empties its recycle bin after 90 days); both pick
    among the records that existed before this call, distinct from the updated and archived ones.
    `same_timestamp` gives every change of this call one timestamp (a bulk import); otherwise timestamps are
    1 ms apart, ending now."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    rng = random.Random(seed)
    if min(create, update, archive, purge, purge_archived) < 0:
        raise MutationError("counts must not be negative")
    total = create + update + archive
    now = at_ms if at_ms is not None else data.now_ms()
    stamps = iter([now] * total if same_timestamp else range(now - total + 1, now + 1))
    result = MutationResult(timestamp_ms=now)
    qs = RecordChange.objects.filter(portal=portal, object_type=otype.name)
    with transaction.atomic():
        # Updates, archives and purges pick among the records that existed before this call.
        picked = _pick_visible(td, qs, rng, update + archive + purge) if update or archive or purge else []
        doomed = [oid for oid, _i in picked[update + archive :]]
        picked = picked[: update + archive]
        if len(doomed) < purge:
            raise MutationError(f"only {len(picked) + len(doomed)} live {otype.name} to update/archive/purge")
        if purge_archived:
            archived_ids = list(
                qs.filter(archived=True, purged=False)
                .filter(Q(index__isnull=True) | Q(index__lt=td.size))
                .values_list("object_id", flat=True)
            )
            if len(archived_ids) < purge_archived:
                raise MutationError(f"only {len(archived_ids)} archived {otype.name} to purge")
            doomed += rng.sample(sorted(archived_ids), purge_archived)
        if create:
            top = qs.filter(index__isnull=True).aggregate(m=Max("object_id"))["m"] or data.CREATED_ID_BASE
            rows = []
            for k in range(create):
                stamp = next(stamps)
                oid = top + 1 + k
                # New records are sparse, like records created by a form or an import: the default properties
                # and a few others, copied from a template row (which also keeps the stored JSON small).
                tpl = td.templates[rng.randrange(len(td.templates))]
                names = [n for n in otype.default_props if n in tpl] + rng.sample(sorted(tpl), min(6, len(tpl)))
                props = {name: tpl[name] for name in names if tpl.get(name) is not None}
                if otype.name == "contacts":
                    props["email"] = f"new.contact{oid}@{data.EMAIL_DOMAINS[oid % len(data.EMAIL_DOMAINS)]}"
                props.update(_edit_values(td, rng, stamp))
                rows.append(
                    RecordChange(
                        portal=portal,
                        object_type=otype.name,
                        object_id=oid,
                        index=None,
                        properties=props,
                        created_ms=stamp,
                        updated_ms=stamp,
                    )
                )
                result.created.append(str(oid))
            for start in range(0, len(rows), BATCH):
                RecordChange.objects.bulk_create(rows[start : start + BATCH])
            webhooks.emit(
                portal.hub_id,
                otype.name,
                [e for ch in rows for e in webhooks.simple("creation", [ch.object_id])],
                at_ms=now,
            )
        if update or archive:
            if len(picked) < update + archive:
                raise MutationError(f"only {len(picked)} live {otype.name} to update/archive")
            existing = {ch.object_id: ch for ch in qs.filter(object_id__in=[oid for oid, _ in picked])}
            new_rows, changed = [], []
            events: list[dict[str, Any]] = []
            for n, (oid, i) in enumerate(picked):
                stamp = next(stamps)
                ch = existing.get(oid) or RecordChange(
                    portal=portal,
                    object_type=otype.name,
                    object_id=oid,
                    index=i,
                    properties={},
                    created_ms=td.created_ms(i) if i is not None else stamp,
                    updated_ms=stamp,
                )
                if ch.pk and ch.updated_ms is not None and not same_timestamp:
                    # HubSpot's last-modified date of a record only moves forward: a record changed again within
                    # this call's spread of timestamps gets one after its previous change.
                    stamp = max(stamp, ch.updated_ms + 1)
                ch.updated_ms = stamp
                if n < update:
                    edits = _edit_values(td, rng, stamp)
                    ch.properties = {**(ch.properties or {}), **edits}
                    result.updated.append(str(oid))
                    events += webhooks.property_changes(oid, edits)
                else:
                    ch.archived = True
                    ch.archived_ms = stamp
                    result.archived.append(str(oid))
                    events += webhooks.simple("deletion", [oid])
                (changed if ch.pk else new_rows).append(ch)
            for start in range(0, len(new_rows), BATCH):
                RecordChange.objects.bulk_create(new_rows[start : start + BATCH])
            if changed:
                RecordChange.objects.bulk_update(
                    changed, ["properties", "updated_ms", "archived", "archived_ms"], batch_size=BATCH
                )
            webhooks.emit(portal.hub_id, otype.name, events, at_ms=now)
        if doomed:
            result.purged = [
                str(oid) for oid in purge_records(portal=portal, collection=otype.name, ids=doomed, at_ms=now)
            ]
    return result


def purge_records(*, portal: Portal, collection: str, ids: list[int], at_ms: int | None = None) -> list[int]:
    """Permanently delete records by id (live or archived); returns the ids that existed and are now gone.

    What a GDPR delete does in HubSpot: the record leaves every endpoint for good. The tombstone row keeps no
    property values (see the module docstring)."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    stamp = at_ms if at_ms is not None else data.now_ms()
    qs = RecordChange.objects.filter(portal=portal, object_type=otype.name)
    gone: list[int] = []
    with transaction.atomic():
        existing = {ch.object_id: ch for ch in qs.select_for_update().filter(object_id__in=list(ids))}
        new_rows, changed = [], []
        for oid in dict.fromkeys(int(i) for i in ids):
            ch = existing.get(oid)
            if ch is None:
                i = data.index_for_id(oid)
                if i is None or i >= td.size:
                    continue  # no such record
                ch = RecordChange(
                    portal=portal,
                    object_type=otype.name,
                    object_id=oid,
                    index=i,
                    created_ms=td.created_ms(i),
                    updated_ms=stamp,
                )
                new_rows.append(ch)
            elif ch.purged or (ch.index is not None and ch.index >= td.size):
                continue  # gone already
            else:
                changed.append(ch)
            ch.properties = {}
            ch.purged = True
            ch.purged_ms = stamp
            ch.updated_ms = stamp
            gone.append(oid)
        for start in range(0, len(new_rows), BATCH):
            RecordChange.objects.bulk_create(new_rows[start : start + BATCH])
        if changed:
            RecordChange.objects.bulk_update(
                changed, ["properties", "purged", "purged_ms", "updated_ms"], batch_size=BATCH
            )
        webhooks.emit(portal.hub_id, otype.name, webhooks.simple("privacyDeletion", gone), at_ms=stamp)
    return gone


def _live_change(td: data.TypeData, qs, oid: int, stamp: int) -> RecordChange:
    """The change row of live record `oid` (a new, unsaved one for an untouched generated record)."""
    ch = qs.select_for_update().filter(object_id=oid).first()
    if ch is not None:
        if ch.purged or ch.archived or not records.valid_change(td, ch):
            raise MutationError(f"{td.otype.singular} {oid} is not live (archived, merged or deleted)")
        return ch
    i = data.index_for_id(oid)
    if i is None or i >= td.size or oid >= data.CREATED_ID_BASE:
        raise MutationError(f"no {td.otype.singular} with id {oid}")
    return RecordChange(
        portal_id=td.hub_id,
        object_type=td.otype.name,
        object_id=oid,
        index=i,
        properties={},
        created_ms=td.created_ms(i),
        updated_ms=stamp,
    )


def archive_records(*, portal: Portal, collection: str, ids: list[int], at_ms: int | None = None) -> list[int]:
    """Archive given live records (HubSpot's "delete": the recycle bin, restorable for 90 days)."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    stamp = at_ms if at_ms is not None else data.now_ms()
    qs = RecordChange.objects.filter(portal=portal, object_type=otype.name)
    done: list[int] = []
    with transaction.atomic():
        for oid in dict.fromkeys(int(i) for i in ids):
            ch = _live_change(td, qs, oid, stamp)
            ch.archived = True
            ch.archived_ms = stamp
            ch.updated_ms = stamp
            ch.save()
            done.append(oid)
        webhooks.emit(portal.hub_id, otype.name, webhooks.simple("deletion", done), at_ms=stamp)
    return done


def restore_records(*, portal: Portal, collection: str, ids: list[int], at_ms: int | None = None) -> list[int]:
    """Restore archived records (HubSpot's recycle bin, within 90 days): live again, with their values, and a
    new modified date. Returns the ids restored (not archived, merged or purged ones are skipped)."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    stamp = at_ms if at_ms is not None else data.now_ms()
    done: list[int] = []
    with transaction.atomic():
        rows = RecordChange.objects.select_for_update().filter(
            portal=portal, object_type=otype.name, object_id__in=[int(i) for i in ids], archived=True, purged=False
        )
        for ch in rows:
            if not records.valid_change(td, ch):
                continue
            ch.archived = False
            ch.archived_ms = None
            ch.updated_ms = stamp
            ch.save(update_fields=["archived", "archived_ms", "updated_ms"])
            done.append(ch.object_id)
        webhooks.emit(portal.hub_id, otype.name, webhooks.simple("restore", done), at_ms=stamp)
    return sorted(done)


def merge_records(
    *, portal: Portal, collection: str, primary_id: int, merged_id: int, keep_id: bool = False, at_ms: int | None = None
) -> int:
    """HubSpot's merge of two live records; returns the id of the merged record.

    Contacts and companies merge into a record with a **new id** (HubSpot's behaviour since its 2024 change;
    `keep_id` gives the older behaviour: the primary's id is kept). The merged record has the primary's values,
    the other record's values where the primary has none, and `hs_merged_object_ids` (`;`-separated) naming
    the ids merged into it (earlier merges included). The ids merged away appear in no list, archived list or
    search; a read of one answers with the merged record under its id (records.read_many)."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    stamp = at_ms if at_ms is not None else data.now_ms()
    if int(primary_id) == int(merged_id):
        raise MutationError("a record cannot be merged with itself")
    qs = RecordChange.objects.filter(portal=portal, object_type=otype.name)
    with transaction.atomic():
        primary = _live_change(td, qs, int(primary_id), stamp)
        other = _live_change(td, qs, int(merged_id), stamp)
        values = {}
        computed = ("hs_object_id", "createdate", otype.modified_prop, records.MERGED_IDS)
        full_other = records.change_full_properties(td, other)
        full_primary = records.change_full_properties(td, primary)
        for name in td.props:
            if name in computed:
                continue
            mine = full_primary.get(name)
            values[name] = mine if mine not in (None, "") else full_other.get(name)
        earlier = [
            x for full in (full_primary, full_other) for x in (full.get(records.MERGED_IDS) or "").split(";") if x
        ]
        if keep_id:
            winner = primary
            merged_ids = [*earlier, str(other.object_id)]
        else:
            top = qs.filter(index__isnull=True).aggregate(m=Max("object_id"))["m"] or data.CREATED_ID_BASE
            winner = RecordChange(
                portal=portal,
                object_type=otype.name,
                object_id=top + 1,
                index=None,
                created_ms=min(primary.created_ms, other.created_ms),
                updated_ms=stamp,
            )
            merged_ids = [*earlier, str(primary.object_id), str(other.object_id)]
        values[records.MERGED_IDS] = ";".join(dict.fromkeys(merged_ids))
        winner.properties = values
        winner.updated_ms = stamp
        winner.save()
        for ch in (primary, other):
            if ch is winner:
                continue
            ch.properties = {}
            ch.purged = True
            ch.purged_ms = stamp
            ch.merged_into = winner.object_id
            ch.updated_ms = stamp
            ch.save()
        webhooks.emit(
            portal.hub_id,
            otype.name,
            [
                {
                    "subscriptionType": "object.merge",
                    "objectId": winner.object_id,
                    "primaryObjectId": primary.object_id,
                    "mergedObjectIds": [other.object_id],
                    "newObjectId": winner.object_id,
                    "numberOfPropertiesMoved": len(values),
                }
            ],
            at_ms=stamp,
        )
    return winner.object_id


def _pick_visible(td: data.TypeData, qs, rng: random.Random, count: int) -> list[tuple[int, int | None]]:
    """`count` distinct live (not archived) records: (object id, generated index or None)."""
    if count <= 0:
        return []
    archived = set(qs.filter(Q(archived=True) | Q(purged=True)).values_list("object_id", flat=True))
    created = list(qs.filter(index__isnull=True, archived=False, purged=False).values_list("object_id", flat=True))
    live_total = td.size + len(created) - len(archived)
    if live_total <= 0:
        return []
    picked: dict[int, int | None] = {}
    attempts = 0
    while len(picked) < min(count, live_total) and attempts < count * 50 + 1000:
        attempts += 1
        k = rng.randrange(td.size + len(created))
        if k < td.size:
            oid, idx = data.id_for_index(k), k
        else:
            oid, idx = created[k - td.size], None
        if oid in archived or oid in picked:
            continue
        picked[oid] = idx
    return list(picked.items())


def set_properties(
    *, portal: Portal, collection: str, object_id: int, properties: dict[str, Any], at_ms: int | None = None
) -> RecordChange:
    """Edit given properties of one record (bumps its modified date)."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    stamp = at_ms if at_ms is not None else data.now_ms()
    with transaction.atomic():
        ch = (
            RecordChange.objects.select_for_update()
            .filter(portal=portal, object_type=otype.name, object_id=object_id)
            .first()
        )
        if ch is not None and ch.purged:
            raise MutationError(f"no {otype.singular} with id {object_id} (it was permanently deleted)")
        if ch is None:
            i = data.index_for_id(object_id)
            if i is None or i >= td.size:
                raise MutationError(f"no {otype.singular} with id {object_id}")
            ch = RecordChange(
                portal=portal,
                object_type=otype.name,
                object_id=object_id,
                index=i,
                properties={},
                created_ms=td.created_ms(i),
                updated_ms=stamp,
            )
        ch.properties = {**(ch.properties or {}), **properties}
        ch.updated_ms = stamp
        ch.save()
        webhooks.emit(portal.hub_id, otype.name, webhooks.property_changes(object_id, properties), at_ms=stamp)
    return ch


def add_property(
    *,
    portal: Portal,
    collection: str,
    name: str,
    label: str = "",
    type: str = "string",
    field_type: str = "",
    options: list[dict] | None = None,
    description: str = "",
) -> CustomProperty:
    otype = _otype(collection)
    if not NAME_RE.match(name):
        raise MutationError("property names are lowercase letters, digits and underscores, starting with a letter")
    if type not in PROPERTY_TYPES:
        raise MutationError(f"type must be one of {', '.join(PROPERTY_TYPES)}")
    td = data.type_data(portal, otype)
    if name in td.props:
        raise MutationError(f"property {name} already exists on {otype.name}")
    now = data.now_ms()
    with transaction.atomic():
        CustomProperty.objects.filter(portal=portal, object_type=otype.name, name=name).delete()
        prop = CustomProperty.objects.create(
            portal=portal,
            object_type=otype.name,
            name=name,
            label=label or name.replace("_", " ").capitalize(),
            type=type,
            field_type=field_type or PROPERTY_TYPES[type],
            options=options or [],
            description=description,
            created_ms=now,
            updated_ms=now,
        )
        Portal.objects.filter(pk=portal.pk).update(schema_version=F("schema_version") + 1)
    state.invalidate()
    portal.refresh_from_db()
    return prop


def delete_property(*, portal: Portal, collection: str, name: str) -> None:
    """Archive a custom property (built-in custom ones included); HubSpot-defined properties cannot be."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    info = td.props.get(name)
    if info is None:
        raise MutationError(f"property {name} does not exist on {otype.name}")
    if info.hubspot_defined:
        raise MutationError(f"{name} is a HubSpot-defined property and cannot be deleted")
    now = data.now_ms()
    with transaction.atomic():
        row = CustomProperty.objects.filter(portal=portal, object_type=otype.name, name=name).first()
        if row is None:
            row = CustomProperty(
                portal=portal,
                object_type=otype.name,
                name=name,
                label=info.label,
                type=info.type,
                field_type=info.field_type,
                group_name=info.group,
                options=[{"label": lbl, "value": v} for lbl, v in info.options],
                created_ms=info.created_ms or now,
            )
        row.deleted = True
        row.updated_ms = now
        row.save()
        Portal.objects.filter(pk=portal.pk).update(schema_version=F("schema_version") + 1)
    state.invalidate()
    portal.refresh_from_db()


def add_many_properties(
    *, portal: Portal, collection: str, count: int, prefix: str = "imported_field_with_a_long_internal_name_"
) -> list[str]:
    """Add `count` custom properties at once (portals with hundreds of properties: requesting them all in a
    GET URL passes HubSpot's ~8,000-character limit, so clients must split the list or use POST endpoints)."""
    otype = _otype(collection)
    td = data.type_data(portal, otype)
    now = data.now_ms()
    kinds = ["string", "number", "enumeration", "datetime", "bool"]
    names, rows = [], []
    n = 0
    while len(rows) < count:
        n += 1
        name = f"{prefix}{n:04d}"
        if name in td.props:
            continue
        kind = kinds[n % len(kinds)]
        options = [{"label": f"Option {k}", "value": f"option_{k}"} for k in range(3)] if kind == "enumeration" else []
        rows.append(
            CustomProperty(
                portal=portal,
                object_type=otype.name,
                name=name,
                label=f"Imported field {n}",
                type=kind,
                field_type=PROPERTY_TYPES[kind],
                options=options,
                created_ms=now,
                updated_ms=now,
            )
        )
        names.append(name)
    with transaction.atomic():
        CustomProperty.objects.filter(portal=portal, object_type=otype.name, name__in=names).delete()
        CustomProperty.objects.bulk_create(rows, batch_size=BATCH)
        Portal.objects.filter(pk=portal.pk).update(schema_version=F("schema_version") + 1)
    state.invalidate()
    portal.refresh_from_db()
    return names

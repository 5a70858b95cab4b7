"""Helpers for extraction tests and benchmarks: sources wired to the sandbox, and the sandbox as an oracle."""

from __future__ import annotations

from datetime import datetime, timedelta

import requests
from django.utils import timezone

import sources.extraction as extract
from sources.models import Record, Source, SourceCollection, SyncRun
from sources.runs import create_run

PORTAL = 3001


def make_source(workspace, sandbox, *, hub_id: int = PORTAL, collections=("contacts",), scopes=None, **fields):
    """A source connected to the sandbox portal `hub_id` with fresh tokens; `fields` override the defaults."""
    tokens = sandbox.token(portal=hub_id, scopes=scopes)
    values = {
        "name": f"HubSpot {hub_id}",
        "schema_name": f"hubspot_{hub_id}",
        "token": tokens["refresh_token"],
        "access_token": tokens["access_token"],
        "access_token_expires_at": timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
        **fields,
    }
    source = Source.objects.create(workspace=workspace, hub_id=hub_id, **values)
    for collection in collections:
        SourceCollection.objects.create(source=source, collection=collection)
    return source


def sync(source: Source, trigger: str = SyncRun.Trigger.MANUAL) -> SyncRun:
    run = create_run(source=source, trigger=trigger)
    assert run is not None
    finished = extract.execute_run(run_id=run.pk)
    assert finished is not None
    return finished


def sandbox_truth(sandbox, hub_id: int, collection: str) -> tuple[dict[int, dict], set[int]]:
    """(live records {id: properties without nulls}, archived ids) straight from the sandbox's HTTP API."""
    headers = sandbox.headers(hub_id)
    base = sandbox.base_url
    props = requests.get(f"{base}/crm/v3/properties/{collection}", headers=headers, timeout=30).json()["results"]
    # hs_merged_object_ids too, as the engine reads it (the sandbox leaves it out of the property list).
    names = ",".join([p["name"] for p in props] + ["hs_merged_object_ids"])
    live: dict[int, dict] = {}
    archived: set[int] = set()
    for flag in ("false", "true"):
        after = None
        while True:
            params = {"limit": 100, "archived": flag, "properties": names if flag == "false" else "hs_object_id"}
            if after:
                params["after"] = after
            page = requests.get(f"{base}/crm/v3/objects/{collection}", params=params, headers=headers, timeout=30)
            page.raise_for_status()
            body = page.json()
            for r in body["results"]:
                if flag == "false":
                    live[int(r["id"])] = {k: v for k, v in r["properties"].items() if v is not None}
                else:
                    archived.add(int(r["id"]))
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
    return live, archived


def iso_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def mirror(source: Source, collection: str) -> tuple[dict[int, dict], set[int]]:
    live, archived = {}, set()
    for object_id, props, is_archived in Record.objects.filter(source=source, collection=collection).values_list(
        "object_id", "properties", "archived"
    ):
        if is_archived:
            archived.add(object_id)
        else:
            live[object_id] = props
    return live, archived


def assert_mirror_equals_sandbox(
    source: Source,
    sandbox,
    collection: str = "contacts",
    hub_id: int = PORTAL,
    *,
    exact: bool = False,
    since_ms: int | None = None,
):
    """The mirror's live rows equal HubSpot's live records, property for property; its archived rows are archived
    in HubSpot. `exact`: and every record HubSpot holds archived is archived in the mirror (true when the mirror
    saw every archived record while it was live), so the mirror holds nothing HubSpot deleted for good.
    `since_ms` (a source with a start date): HubSpot's live records are those last modified since then only."""
    live, archived = sandbox_truth(sandbox, hub_id, collection)
    if since_ms is not None:
        modified = "lastmodifieddate" if collection == "contacts" else "hs_lastmodifieddate"
        live = {i: p for i, p in live.items() if iso_ms(p[modified]) >= since_ms}
    m_live, m_archived = mirror(source, collection)
    assert set(m_live) == set(live), (len(m_live), len(live), sorted(set(live) ^ set(m_live))[:10])
    diff = [i for i in live if m_live[i] != live[i]]
    assert not diff, (diff[:5], live[diff[0]], m_live[diff[0]]) if diff else None
    # Archived in HubSpot = archived in the mirror (for every record the mirror ever saw).
    assert m_archived <= archived, sorted(m_archived - archived)[:10]
    if exact:
        assert m_archived == archived, sorted(archived - m_archived)[:10]


def max_seq(source: Source) -> int:
    return Record.objects.filter(source=source).order_by("-change_seq").values_list("change_seq", flat=True).first()


def sandbox_ids(sandbox, hub_id: int = PORTAL, collection: str = "contacts") -> set[int]:
    """HubSpot's live record ids, all of them (whatever a source's start date)."""
    return set(sandbox_truth(sandbox, hub_id, collection)[0])


def archive(sandbox, ids, hub_id: int = PORTAL, collection: str = "contacts") -> list[int]:
    """Archive given live records in the sandbox (HubSpot's recycle bin)."""
    from sandbox.hubspot.mutate import archive_records

    return archive_records(portal=sandbox.portal(hub_id), collection=collection, ids=[int(i) for i in ids])


def merge(sandbox, primary, other, hub_id: int = PORTAL, collection: str = "contacts", keep_id: bool = False) -> int:
    """Merge two live records in the sandbox as HubSpot does (a new id unless keep_id); the merged record's id."""
    from sandbox.hubspot.mutate import merge_records

    return merge_records(
        portal=sandbox.portal(hub_id),
        collection=collection,
        primary_id=int(primary),
        merged_id=int(other),
        keep_id=keep_id,
    )


def sandbox_archived(sandbox, hub_id: int, collection: str) -> dict[int, dict]:
    """HubSpot's archived records {id: properties without nulls}, with every property (the archived list)."""
    headers = sandbox.headers(hub_id)
    base = sandbox.base_url
    props = requests.get(f"{base}/crm/v3/properties/{collection}", headers=headers, timeout=30).json()["results"]
    names = ",".join(p["name"] for p in props)
    out: dict[int, dict] = {}
    after = None
    while True:
        params = {"limit": 100, "archived": "true", "properties": names}
        if after:
            params["after"] = after
        page = requests.get(f"{base}/crm/v3/objects/{collection}", params=params, headers=headers, timeout=30)
        page.raise_for_status()
        body = page.json()
        for r in body["results"]:
            out[int(r["id"])] = {k: v for k, v in r["properties"].items() if v is not None}
        after = ((body.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return out

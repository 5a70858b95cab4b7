# SCRATCH (not committed): engine logic against an in-memory fake client until the sandbox lands.
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

import sources.extract as extract
from hubsync.models import Workspace
from sources.hubspot import BadRequest
from sources.models import Record, Source, SourceCollection, SyncRun
from sources.runs import create_run, enqueue_sync


class Portal:
    def __init__(self):
        self.recs = {}  # id -> dict
        self.calls = 0

    def add(self, oid, props, ts=None, archived=False):
        ts = ts or int(time.time() * 1000)
        self.recs[oid] = {"props": dict(props), "ts": ts, "archived": archived}

    def view(self, oid, names):
        r = self.recs[oid]
        props = {k: v for k, v in r["props"].items() if k in names}
        props["hs_object_id"] = str(oid)
        props["lastmodifieddate"] = str(r["ts"])
        return {"id": str(oid), "properties": props, "createdAt": "2024-01-01T00:00:00Z",
                "updatedAt": "2024-01-01T00:00:00Z", "archived": r["archived"]}


PORTAL = Portal()


class FakeClient:
    def __init__(self, source):
        self.api_calls = 0
        self.retries = 0

    def get_properties(self, collection):
        self.api_calls += 1
        return [{"name": n, "label": n, "type": "string", "fieldType": "text"} for n in ("a", "b", "hs_object_id", "lastmodifieddate")]

    def list_page(self, collection, *, properties, after=None, limit=100, archived=False):
        self.api_calls += 1
        ids = sorted(i for i, r in PORTAL.recs.items() if r["archived"] == archived and i > int(after or 0))
        page = ids[:limit]
        out = {"results": [PORTAL.view(i, properties) for i in page]}
        if len(ids) > limit:
            out["paging"] = {"next": {"after": str(page[-1])}}
        return out

    def search_page(self, collection, body):
        self.api_calls += 1
        after = int(body.get("after") or 0)
        limit = body.get("limit", 10)
        if after + limit > 10000:
            raise BadRequest("past 10000")
        ids = []
        for i, r in sorted(PORTAL.recs.items()):
            if r["archived"]:
                continue
            ok = True
            for g in body.get("filterGroups") or [{"filters": []}]:
                for f in g["filters"]:
                    v = r["ts"] if f["propertyName"] == "lastmodifieddate" else i
                    x = int(f["value"])
                    ok &= {"GTE": v >= x, "LTE": v <= x, "GT": v > x}[f["operator"]]
            if ok:
                ids.append(i)
        page = ids[after:after + limit]
        out = {"total": len(ids), "results": [PORTAL.view(i, body["properties"]) for i in page]}
        if after + limit < len(ids):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return out

    def batch_read(self, collection, ids, properties):
        self.api_calls += 1
        return [PORTAL.view(int(i), properties) for i in ids if int(i) in PORTAL.recs and not PORTAL.recs[int(i)]["archived"]]


@pytest.fixture
def source(transactional_db, monkeypatch):
    global PORTAL
    PORTAL = Portal()
    monkeypatch.setattr(extract, "HubSpotClient", FakeClient)
    ws = Workspace.objects.create(name="W")
    s = Source.objects.create(workspace=ws, name="s", schema_name="s", hub_id=1)
    SourceCollection.objects.create(source=s, collection="contacts")
    return s


def mirror(source):
    return {r.object_id: (r.properties.get("a"), r.archived) for r in Record.objects.filter(source=source)}


def truth():
    return {i: (r["props"].get("a"), r["archived"]) for i, r in PORTAL.recs.items()}


def sync(source, trigger="manual"):
    run = create_run(source=source, trigger=trigger)
    return extract.execute_run(run_id=run.pk)


def test_full_then_incremental(source):
    for i in range(1, 351):
        PORTAL.add(i * 7, {"a": f"v{i}"})
    run = sync(source, "first")
    assert run.status == "succeeded", run.error
    assert mirror(source) == {k: v for k, v in truth().items()}
    assert run.counts["contacts"]["new"] == 350
    run = sync(source)
    assert run.counts["contacts"]["new"] == 0
    seqs = Record.objects.order_by("-change_seq").values_list("change_seq", flat=True)[0]
    PORTAL.add(5, {"a": "new"})
    PORTAL.recs[7]["props"]["a"] = "changed"; PORTAL.recs[7]["ts"] = int(time.time() * 1000)
    PORTAL.recs[14]["archived"] = True
    run = sync(source)
    assert run.status == "succeeded", run.error
    c = run.counts["contacts"]
    assert (c["new"], c["updated"], c["archived"]) == (1, 1, 1), c
    assert mirror(source) == {k: v for k, v in truth().items() if k in mirror(source)}
    assert set(mirror(source)) == set(truth())
    assert Record.objects.filter(change_seq__gt=seqs).count() == 3


def test_equal_timestamps_15000(source):
    ts = int(time.time() * 1000) - 1000
    for i in range(1, 15001):
        PORTAL.add(i, {"a": "x"}, ts=ts)
    source.start_date = (timezone.now() - timedelta(days=1)).date()
    source.save()
    run = sync(source, "first")
    assert run.status == "succeeded", run.error
    assert Record.objects.count() == 15000


def test_resume_every_page(source, monkeypatch):
    for i in range(1, 1001):
        PORTAL.add(i, {"a": f"v{i}"})
    state = {"n": 0, "stop": 1}

    class Boom(Exception):
        pass

    def after_page(engine, sc):
        state["n"] += 1
        if state["n"] == state["stop"]:
            raise Boom

    monkeypatch.setattr(extract, "after_page", after_page)
    for stop in range(1, 12):
        state.update(n=0, stop=1)
        try:
            sync(source, "first")
        except Boom:
            pass
    assert mirror(source) == truth()


def test_one_active_run(source):
    assert enqueue_sync(source=source, trigger="manual") is not None
    assert enqueue_sync(source=source, trigger="manual") is None
    r = SyncRun.objects.get()
    r.status = "running"; r.heartbeat_at = timezone.now() - timedelta(minutes=10); r.save()
    assert enqueue_sync(source=source, trigger="manual") is not None
    r.refresh_from_db()
    assert r.status == "failed" and "worker lost" in r.error

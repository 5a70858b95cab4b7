"""The processes of the delivery-vs-official-client benchmark (bench/test_bench_deliver.py drives them).

`python -m bench.deliver_compare engine` — hubsync's delivery engine on the database its environment names
(DATABASE_URL for PostgreSQL, HUBSYNC_SQLITE_PATH for SQLite): migrates it, fills the mirror with RECORDS contacts
and one identify mapping of 20 traits, prints "ready", then for every "round" line on stdin forgets every delivery
state (a first delivery again: nothing known, everything built, hashed, sent and recorded) and prints the run's
figures as one JSON line.

`python -m bench.deliver_compare client` — Segment's official segment-analytics-python client: for every "round"
line, `identify` with the same 20 trait values for RECORDS users, then `flush` (the queue drained, every batch
answered), and the figures as one JSON line. Its queue is made large enough to drop nothing; everything else is
the library's default (100 messages per request, one consumer thread). The client keeps no state and reads no
database: it is given the trait values ready made, its best case.

Both post to the same local Segment double (bench/segment_double.py) at BENCH_SEGMENT_URL.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta

RECORDS = int(os.environ.get("BENCH_DELIVER_RECORDS", "100000"))
# Properties per mirror row: a real HubSpot contact carries ~65 (defaults plus the portal's own), 20 are mapped.
PROPERTIES = max(21, int(os.environ.get("BENCH_DELIVER_PROPERTIES", "65")))
BASE = datetime(2026, 1, 1, tzinfo=UTC)
WRITE_KEY = "bench-write-key"

# The 20 mapped properties, every HubSpot type.
SCHEMA = {
    "email": {"type": "string", "fieldType": "text"},
    "firstname": {"type": "string", "fieldType": "text"},
    "lastname": {"type": "string", "fieldType": "text"},
    "company": {"type": "string", "fieldType": "text"},
    "jobtitle": {"type": "string", "fieldType": "text"},
    "phone": {"type": "string", "fieldType": "phonenumber"},
    "website": {"type": "string", "fieldType": "text"},
    "city": {"type": "string", "fieldType": "text"},
    "state": {"type": "string", "fieldType": "text"},
    "country": {"type": "string", "fieldType": "text"},
    "zip": {"type": "string", "fieldType": "text"},
    "hubspot_owner_id": {"type": "enumeration", "fieldType": "select"},
    "lifecyclestage": {"type": "enumeration", "fieldType": "radio"},
    "hs_lead_status": {"type": "enumeration", "fieldType": "select"},
    "interests": {"type": "enumeration", "fieldType": "checkbox"},
    "num_employees": {"type": "number", "fieldType": "number"},
    "annualrevenue": {"type": "number", "fieldType": "number"},
    "is_customer": {"type": "bool", "fieldType": "booleancheckbox"},
    "createdate": {"type": "datetime", "fieldType": "date"},
    "lastmodifieddate": {"type": "datetime", "fieldType": "date"},
}
FILLER = [f"hs_extra_property_{n:02d}" for n in range(PROPERTIES - len(SCHEMA) - 1)]


def _ms(dt: datetime) -> str:
    return str(int(dt.timestamp() * 1000))


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"


def properties(i: int) -> dict[str, str | None]:
    """Record i's HubSpot properties, as the mirror holds them (HubSpot sends every value as a string)."""
    values: dict[str, str | None] = {
        "email": f"contact{i}@example.com",
        "firstname": "Ada",
        "lastname": f"Lovelace {i}",
        "company": "Analytical Engines",
        "jobtitle": "Engineer",
        "phone": f"+44 20 7946 {i % 10000:04d}",
        "website": f"https://example{i % 97}.com",
        "city": "London",
        "state": "England",
        "country": "United Kingdom",
        "zip": f"N{i % 20} {i % 9}AB",
        "hubspot_owner_id": str(100 + i % 7),
        "lifecyclestage": "customer",
        "hs_lead_status": "OPEN" if i % 2 else "CONNECTED",
        "interests": "golf;tennis" if i % 3 else "",
        "num_employees": str(i % 500),
        "annualrevenue": f"{i % 1000}000.5",
        "is_customer": "true" if i % 2 else "false",
        "createdate": _ms(BASE + timedelta(minutes=i)),
        "lastmodifieddate": _ms(BASE + timedelta(seconds=i)),
        "hs_object_id": str(1000 + i),
    }
    for n, name in enumerate(FILLER):
        kind = n % 4
        if kind == 0:
            values[name] = str((i * 7 + n) % 1000)
        elif kind == 1:
            values[name] = f"2026-01-{1 + n % 28:02d}T12:{n % 60:02d}:00.000Z"
        elif kind == 2:
            values[name] = None if i % 2 else f"value {n} of record {i}"
        else:
            values[name] = f"{i}{n:03d}"
    return values


def traits(i: int) -> dict[str, object]:
    """Record i's 20 traits as the mapping sends them (typed), for the official client."""
    p = properties(i)
    out: dict[str, object] = {name: p[name] for name in SCHEMA}
    out["interests"] = [part for part in (p["interests"] or "").split(";") if part]
    out["num_employees"] = int(p["num_employees"] or 0)
    out["annualrevenue"] = float(p["annualrevenue"] or 0)
    out["is_customer"] = p["is_customer"] == "true"
    out["createdate"] = _iso(BASE + timedelta(minutes=i))
    out["lastmodifieddate"] = _iso(BASE + timedelta(seconds=i))
    if out["interests"] == []:
        out["interests"] = None
    return out


def updated_at(i: int) -> datetime:
    return BASE + timedelta(seconds=i)


def _answer(figures: dict) -> None:
    print(json.dumps(figures), flush=True)


# --- the official client -------------------------------------------------------------------------------------
def run_client() -> None:
    from segment.analytics import Client

    errors: list[str] = []
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        client = Client(
            WRITE_KEY,
            host=os.environ["BENCH_SEGMENT_URL"],
            max_queue_size=RECORDS + 1,
            on_error=lambda exc, batch: errors.append(str(exc)),
        )
        started = time.perf_counter()
        cpu = time.process_time()
        queued = 0
        for i in range(1, RECORDS + 1):
            ok, _msg = client.identify(
                user_id=f"contact{i}@example.com",
                traits=traits(i),
                timestamp=updated_at(i),
                integrations={"All": False},
            )
            queued += ok
        client.flush()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        client.join()
        _answer({"seconds": seconds, "cpu": cpu, "sent": queued, "errors": len(errors)})


# --- hubsync's engine ----------------------------------------------------------------------------------------
def _fill():
    from hubsync.models import Workspace
    from mappings.models import Destination, Mapping, ProfileSpace
    from models_app.models import DataModel
    from sources.models import Record, Source, SourceCollection

    workspace = Workspace.objects.create(name="Bench")
    source = Source.objects.create(workspace=workspace, name="HubSpot", schema_name="bench")
    SourceCollection.objects.create(source=source, collection="contacts", properties=SCHEMA)
    model = DataModel.objects.create(source=source, collection="contacts", name="Contacts", columns=list(SCHEMA))
    destination = Destination.objects.create(workspace=workspace, name="Segment")
    space = ProfileSpace.objects.create(destination=destination, name="Bench", write_key=WRITE_KEY, region="sandbox")
    rows = []
    for i in range(1, RECORDS + 1):
        rows.append(
            Record(
                source=source,
                collection="contacts",
                object_id=1000 + i,
                properties=properties(i),
                created_at=BASE,
                updated_at=updated_at(i),
                content_hash=f"{i:064d}",
                change_seq=i,
            )
        )
        if len(rows) == 5000:
            Record.objects.bulk_create(rows)
            rows = []
    Record.objects.bulk_create(rows)
    return Mapping.objects.create(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=[[name, name] for name in SCHEMA],
        enabled=True,
    )


def _forget(mapping) -> None:
    """Back to a mapping that never delivered: no state, watermark 0, no run."""
    from django.db import connection

    from mappings.models import DeliveryRun, DeliveryState, Mapping

    DeliveryState.objects.filter(mapping=mapping).delete()
    Mapping.objects.filter(pk=mapping.pk).update(watermark=0, watermark_config_hash="", last_run=None)
    DeliveryRun.objects.filter(mapping=mapping).delete()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {DeliveryState._meta.db_table}")
            cursor.execute(f"VACUUM ANALYZE {Mapping._meta.db_table}")
        else:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def run_engine() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsync.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from mappings.delivery import deliver
    from mappings.segment import close_session

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    mapping = _fill()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    print(f"ready {connection.vendor} {time.perf_counter() - started:.1f}", flush=True)
    profile = os.environ.get("BENCH_DELIVER_PROFILE")
    for rounds, line in enumerate(sys.stdin, 1):
        if line.strip() != "round":
            break
        _forget(mapping)
        profiler = None
        if profile and rounds == 1:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        cpu = time.process_time()
        run = deliver(mapping_id=mapping.pk)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{connection.vendor}")
        assert run is not None
        _answer(
            {
                "seconds": seconds,
                "cpu": cpu,
                "sent": run.sent,
                "status": run.status,
                "requests": run.requests,
                "batches": run.batches,
                "error": run.error,
            }
        )
    close_session()


if __name__ == "__main__":
    {"engine": run_engine, "client": run_client}[sys.argv[1]]()

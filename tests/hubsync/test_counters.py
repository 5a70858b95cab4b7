"""The trigger-kept row counters (hubsync.counters): installed by the migrations on this database, and exact
after every kind of write: plain and bulk inserts, upserts that insert some rows and update others, status
changes, deletes, and deletes cascading from a mapping or a source. (tests/conftest.py also checks every
counter after every test of the suite.)"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from hubsync import counters
from mappings.models import DeliveryState, DeliveryStateCount
from sources.models import Record, RecordCount
from tests.factories import DataModelFactory, DestinationFactory, MappingFactory, ProfileSpaceFactory, SourceFactory

pytestmark = pytest.mark.django_db


def disagreements(counted: counters.Counted) -> list:
    with connection.cursor() as cursor:
        cursor.execute(counters.recount_sql(counted))
        return cursor.fetchall()


def installed_triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {row[0] for row in cursor.fetchall()}


def test_the_migrations_install_every_counter_trigger():
    # A later migration that makes SQLite rebuild sources_record or mappings_deliverystate (Django's way of
    # altering a column there) drops the table's triggers with it: this test says so at once.
    expected = {"hubsync_count_record_ins", "hubsync_count_record_del"} | {
        f"hubsync_count_deliverystate_{s}" for s in ("ins", "upd", "del")
    }
    assert expected <= installed_triggers()


def test_a_fresh_sqlite_database_has_every_counter_trigger(tmp_path):
    # The embedded default (`make run`) is SQLite, where a migration adding a column with a default rebuilds the
    # table and drops its triggers (sources 0006 did so to sources_record: the dashboard showed 0 records in the
    # mirror after a sync). `migrate` puts them back, also on a database migrated before.
    db = tmp_path / "hubsync.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(HUBSYNC_TESTING="1", HUBSYNC_VAR_DIR=str(tmp_path / "var"), HUBSYNC_SQLITE_PATH=str(db))
    root = Path(__file__).resolve().parents[2]

    def migrate() -> set[str]:
        proc = subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        with sqlite3.connect(db) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    expected = set().union(*(counters.expected_triggers(c) for c in counters.COUNTED))
    assert expected <= migrate()
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER hubsync_count_record_ins")
    assert expected <= migrate()


def test_reinstall_missing_puts_back_dropped_triggers_and_recounts(workspace):
    source = SourceFactory(workspace=workspace, name="Portal", schema_name="portal", token="t")
    _, drop = counters.statements(connection.vendor, counters.RECORDS)
    with connection.cursor() as cursor:
        for sql in drop:  # what SQLite's table rebuild does to the triggers
            cursor.execute(sql)
    Record.objects.bulk_create([record(source, i) for i in range(1, 4)])
    assert mirror_counts(source) == {}  # what the dashboard showed: no trigger, no count

    assert counters.reinstall_missing(connection) == ["record"]
    assert mirror_counts(source) == {"contacts": 3}
    record(source, 4).save()
    assert mirror_counts(source) == {"contacts": 4}
    assert counters.reinstall_missing(connection) == []


def record(source, object_id, collection="contacts", seq=None):
    return Record(
        source=source,
        collection=collection,
        object_id=object_id,
        properties={"email": f"u{object_id}@x.test"},
        content_hash="h",
        change_seq=seq or object_id,
    )


def mirror_counts(source) -> dict[str, int]:
    return dict(RecordCount.objects.filter(source=source).values_list("collection", "n"))


def test_record_counts_follow_inserts_upserts_and_deletes(workspace):
    source = SourceFactory(workspace=workspace, name="Portal", schema_name="portal", token="t")
    Record.objects.bulk_create([record(source, i) for i in range(1, 11)])
    Record.objects.bulk_create([record(source, i, "companies") for i in range(1, 4)])
    record(source, 99).save()
    assert mirror_counts(source) == {"contacts": 11, "companies": 3}

    # An upsert of 5 known ids and 5 new ones adds 5, as the extraction engine's page upsert does.
    Record.objects.bulk_create(
        [record(source, i, seq=100 + i) for i in range(6, 16)],
        update_conflicts=True,
        unique_fields=["source", "collection", "object_id"],
        update_fields=["change_seq"],
    )
    assert mirror_counts(source) == {"contacts": 16, "companies": 3}
    Record.objects.filter(source=source, collection="contacts", object_id__lte=3).update(archived=True)
    assert mirror_counts(source)["contacts"] == 16  # archived records stay in the mirror
    Record.objects.filter(source=source, collection="companies", object_id=1).delete()
    assert mirror_counts(source) == {"contacts": 16, "companies": 2}
    assert not disagreements(counters.RECORDS)

    other = SourceFactory(workspace=workspace, name="Other", schema_name="other", token="t")
    Record.objects.bulk_create([record(other, i) for i in range(1, 6)])
    source.delete()  # cascades to its records and its counters
    assert not RecordCount.objects.filter(source_id=source.pk).exists()
    assert mirror_counts(other) == {"contacts": 5}
    assert not disagreements(counters.RECORDS)


@pytest.fixture
def mapping(workspace):
    source = SourceFactory(workspace=workspace, name="Portal", schema_name="portal", token="t")
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Prod", write_key="wk")
    return MappingFactory(
        destination=destination, data_model=model, profile_space=space, identifiers={"user_id": "email"}
    )


def state_counts(mapping) -> dict[str, int]:
    return {k: v for k, v in DeliveryStateCount.for_mappings([mapping.pk])[mapping.pk].items() if v}


def test_state_counts_follow_status_changes_upserts_and_deletes(mapping):
    S = DeliveryState.Status
    DeliveryState.objects.bulk_create(
        [DeliveryState(mapping=mapping, object_id=i, status=S.DELIVERED if i % 4 else S.REJECTED) for i in range(1, 21)]
    )
    assert state_counts(mapping) == {"delivered": 15, "rejected": 5}

    # "Retry all" then the delivery engine's outcome: a mixed upsert (updates and inserts, several statuses).
    DeliveryState.objects.filter(mapping=mapping, status=S.REJECTED).update(status=S.RETRY)
    assert state_counts(mapping) == {"delivered": 15, "retry": 5}
    DeliveryState.objects.bulk_create(
        [DeliveryState(mapping=mapping, object_id=i, status=S.DELIVERED) for i in (4, 8, 21, 22)],
        update_conflicts=True,
        unique_fields=["mapping", "object_id"],
        update_fields=["status"],
    )
    assert state_counts(mapping) == {"delivered": 19, "retry": 3}
    # An update that leaves the status alone (resync all forgets the hashes) changes no count.
    DeliveryState.objects.filter(mapping=mapping).update(delivered_hash="")
    assert state_counts(mapping) == {"delivered": 19, "retry": 3}
    DeliveryState.objects.filter(mapping=mapping, object_id__gt=20).delete()
    assert state_counts(mapping) == {"delivered": 17, "retry": 3}
    assert not disagreements(counters.DELIVERY_STATES)

    mapping.delete()  # cascades to its states and its counters; no counter row may outlive it
    assert not DeliveryStateCount.objects.filter(mapping_id=mapping.pk).exists()
    assert not disagreements(counters.DELIVERY_STATES)


def test_the_delivery_engines_hot_path_upsert_is_counted(mapping):
    from django.utils import timezone

    from mappings.delivery.checkpoint import _Delivered, _upsert_delivered

    DeliveryState.objects.bulk_create(
        [DeliveryState(mapping=mapping, object_id=i, status=DeliveryState.Status.PENDING) for i in range(1, 4)]
    )
    _upsert_delivered(mapping.pk, [_Delivered(i, "a" * 64, f"hs-1-1-{i}-x") for i in range(2, 6)], timezone.now())
    assert state_counts(mapping) == {"pending": 1, "delivered": 4}
    assert not disagreements(counters.DELIVERY_STATES)


def test_the_migration_counts_rows_that_were_there_before_it(mapping):
    """Applying the migration to a database that already holds rows: the counters start from a real count."""
    DeliveryState.objects.bulk_create(
        [DeliveryState(mapping=mapping, object_id=i, status=DeliveryState.Status.DELIVERED) for i in range(1, 8)]
    )
    forward, _ = counters.migration_operations(counters.DELIVERY_STATES)
    DeliveryStateCount.objects.all().delete()  # as before the migration

    class Editor:  # what RunPython hands over, minus the DDL machinery (no DDL runs here)
        def __init__(self) -> None:
            self.connection = connection

        def execute(self, sql: str) -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql)

    forward(None, Editor())
    assert state_counts(mapping) == {"delivered": 7}
    DeliveryState.objects.filter(mapping=mapping, object_id=1).delete()
    assert state_counts(mapping) == {"delivered": 6}

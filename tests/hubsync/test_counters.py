"""The trigger-kept row counters (hubsync.counters): installed by the migrations on this database, and exact
after every kind of write: plain and bulk inserts, upserts that insert some rows and update others, status
changes, deletes, and deletes cascading from a mapping or a source. (tests/conftest.py also checks every
counter after every test of the suite.)"""

from __future__ import annotations

import pytest
from django.core.management import call_command
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


@pytest.mark.django_db(transaction=True)
def test_a_table_rebuilt_without_its_triggers_gets_them_back_after_migrate(workspace):
    """What SQLite's table rebuild does to a counted table (its triggers are gone, rows change uncounted) is
    repaired by the post_migrate check: the triggers come back and the counter is recounted from the rows."""
    source = SourceFactory(workspace=workspace)
    Record.objects.bulk_create([record(source, i) for i in range(1, 4)])
    with connection.cursor() as cursor:
        for name in counters.trigger_names(counters.RECORDS):
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER {name} ON sources_record")
            else:
                cursor.execute(f"DROP TRIGGER {name}")
    Record.objects.bulk_create([record(source, i) for i in range(4, 6)])  # uncounted
    assert disagreements(counters.RECORDS)

    call_command("migrate", verbosity=0)  # nothing to migrate; post_migrate still runs

    assert counters.trigger_names(counters.RECORDS) <= installed_triggers()
    assert not disagreements(counters.RECORDS)
    Record.objects.filter(source=source, object_id=5).delete()
    assert mirror_counts(source) == {"contacts": 4}
    assert counters.ensure_triggers(connection) == []  # nothing left to repair


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

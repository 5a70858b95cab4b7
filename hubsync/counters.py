"""Row counts kept by the database itself: a counter table per counted table, maintained by triggers.

The dashboard shows, for every source, the records in its mirror and, for every mapping, its delivered and
rejected records. Counting a million rows takes 100-220 ms on PostgreSQL; reading a counter row takes well under
one. The counters are kept by triggers rather than by the engines, because rows change along many paths (the
extraction and delivery engines, "retry" and "sample" buttons, deletes cascading from a source or a mapping, a
one-off fix in `manage.py shell`), and a trigger sees all of them, in the same transaction as the change: a
counter can never disagree with the rows it counts.

- PostgreSQL: statement-level triggers with transition tables, one aggregated upsert per statement (a page of
  100 records or a batch of 2,500 states costs one extra statement, not one per row).
- SQLite: row-level triggers (SQLite has no statement-level ones); a row costs an in-process index update.

Counter rows are only ever *created* by increments. A decrement updates an existing row and never creates one:
when Django deletes a mapping it may delete the counter rows before the states, and a decrement that created a
row for the mapping being deleted would break its foreign key at commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import transaction


@dataclass(frozen=True)
class Counted:
    """`table`'s rows counted per `keys` (column names, the same in both tables) into `counter`.`n`.
    `updatable`: the key columns can change in an UPDATE (a state's status); otherwise UPDATE needs no trigger."""

    name: str  # short, unique: prefixes the trigger and function names
    table: str
    counter: str
    keys: Sequence[str]
    updatable: bool


def _pg(c: Counted) -> tuple[list[str], list[str]]:
    keys = ", ".join(c.keys)
    join = " AND ".join(f"{c.counter}.{k} = d.{k}" for k in c.keys)
    # ORDER BY the key: two transactions touching the same counter rows lock them in the same order.
    increment = (
        f"INSERT INTO {c.counter} ({keys}, n) SELECT {keys}, k FROM d WHERE k > 0 ORDER BY {keys} "
        f"ON CONFLICT ({keys}) DO UPDATE SET n = {c.counter}.n + excluded.n"
    )
    decrement = f"UPDATE {c.counter} SET n = {c.counter}.n + d.k FROM d WHERE d.k < 0 AND {join}"
    functions = {
        "ins": f"WITH d AS (SELECT {keys}, count(*) AS k FROM new_rows GROUP BY {keys}) {increment}",
        "del": f"WITH d AS (SELECT {keys}, -count(*) AS k FROM old_rows GROUP BY {keys}) {decrement}",
    }
    if c.updatable:
        delta = (
            f"WITH d AS (SELECT {keys}, sum(k) AS k FROM (SELECT {keys}, 1 AS k FROM new_rows UNION ALL "
            f"SELECT {keys}, -1 FROM old_rows) AS x GROUP BY {keys} HAVING sum(k) <> 0)"
        )
        # Decrements first, in key order like the increments.
        functions["upd"] = f"{delta} {decrement}; {delta} {increment}"
    events = {
        "ins": ("INSERT", "NEW TABLE AS new_rows"),
        "del": ("DELETE", "OLD TABLE AS old_rows"),
        "upd": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    }
    create, drop = [], []
    for suffix, body in functions.items():
        event, referencing = events[suffix]
        fn = f"hubsync_count_{c.name}_{suffix}"
        create.append(
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body}; RETURN NULL; END $$"
        )
        create.append(f"DROP TRIGGER IF EXISTS {fn} ON {c.table}")
        create.append(
            f"CREATE TRIGGER {fn} AFTER {event} ON {c.table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
        )
        drop += [f"DROP TRIGGER IF EXISTS {fn} ON {c.table}", f"DROP FUNCTION IF EXISTS {fn}()"]
    return create, drop


def _sqlite(c: Counted) -> tuple[list[str], list[str]]:
    keys = ", ".join(c.keys)

    def increment(row: str) -> str:
        values = ", ".join(f"{row}.{k}" for k in c.keys)
        return f"INSERT INTO {c.counter} ({keys}, n) VALUES ({values}, 1) ON CONFLICT ({keys}) DO UPDATE SET n = n + 1;"

    def decrement(row: str) -> str:
        where = " AND ".join(f"{k} = {row}.{k}" for k in c.keys)
        return f"UPDATE {c.counter} SET n = n - 1 WHERE {where};"

    bodies = {"ins": ("INSERT", "", increment("NEW")), "del": ("DELETE", "", decrement("OLD"))}
    if c.updatable:
        changed = " OR ".join(f"OLD.{k} IS NOT NEW.{k}" for k in c.keys)
        bodies["upd"] = (f"UPDATE OF {keys}", f"WHEN {changed}", decrement("OLD") + " " + increment("NEW"))
    create, drop = [], []
    for suffix, (event, when, body) in bodies.items():
        name = f"hubsync_count_{c.name}_{suffix}"
        create.append(f"DROP TRIGGER IF EXISTS {name}")
        create.append(f"CREATE TRIGGER {name} AFTER {event} ON {c.table} FOR EACH ROW {when} BEGIN {body} END")
        drop.append(f"DROP TRIGGER IF EXISTS {name}")
    return create, drop


def statements(vendor: str, c: Counted) -> tuple[list[str], list[str]]:
    """(create, drop) SQL for the counter triggers of `c` on this database vendor."""
    if vendor == "postgresql":
        return _pg(c)
    if vendor == "sqlite":
        return _sqlite(c)
    raise NotImplementedError(f"row counters are written for PostgreSQL and SQLite, not {vendor}")


def install_sql(vendor: str, c: Counted) -> list[str]:
    """Fill the counter from the rows already there, then install the triggers: run in one transaction, so no
    row is counted twice or missed."""
    keys = ", ".join(c.keys)
    create, _ = statements(vendor, c)
    return [
        f"DELETE FROM {c.counter}",
        f"INSERT INTO {c.counter} ({keys}, n) SELECT {keys}, count(*) FROM {c.table} GROUP BY {keys}",
        *create,
    ]


def migration_operations(c: Counted) -> tuple[Callable, Callable]:
    """(forward, backward) for migrations.RunPython: install the triggers and fill the counters from the rows
    already there (in the migration's transaction, so no row is counted twice or missed)."""

    def forward(apps, schema_editor) -> None:
        for sql in install_sql(schema_editor.connection.vendor, c):
            schema_editor.execute(sql)

    def backward(apps, schema_editor) -> None:
        _, drop = statements(schema_editor.connection.vendor, c)
        for sql in drop:
            schema_editor.execute(sql)

    return forward, backward


RECORDS = Counted(
    name="record",
    table="sources_record",
    counter="sources_recordcount",
    keys=("source_id", "collection"),
    updatable=False,
)
DELIVERY_STATES = Counted(
    name="deliverystate",
    table="mappings_deliverystate",
    counter="mappings_deliverystatecount",
    keys=("mapping_id", "status"),
    updatable=True,
)


COUNTED = (RECORDS, DELIVERY_STATES)


def _trigger_names(connection) -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {row[0] for row in cursor.fetchall()}


def expected_triggers(c: Counted) -> set[str]:
    suffixes = ("ins", "del", "upd") if c.updatable else ("ins", "del")
    return {f"hubsync_count_{c.name}_{suffix}" for suffix in suffixes}


def reinstall_missing(connection) -> list[str]:
    """Install again, and recount, every counter whose triggers are gone; the names of those counters.

    SQLite alters a column by rebuilding the table (create a copy, move the rows, drop the original), and the
    triggers go with the original: any later migration that adds a column with a default to sources_record or
    mappings_deliverystate silently stops a counter. Run after every `migrate` (hubsync.apps), so no migration
    has to remember it."""
    tables = set(connection.introspection.table_names())
    present = _trigger_names(connection)
    repaired = []
    for c in COUNTED:
        if c.table not in tables or c.counter not in tables or expected_triggers(c) <= present:
            continue
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            for sql in install_sql(connection.vendor, c):
                cursor.execute(sql)
        repaired.append(c.name)
    return repaired


def recount_sql(c: Counted) -> str:
    """A query listing every counter that disagrees with the rows ({keys}, counted, actual): empty when the
    triggers did their job. For tests and for an operator's peace of mind."""
    keys = ", ".join(c.keys)
    on = " AND ".join(f"a.{k} = b.{k}" for k in c.keys)
    return (
        f"SELECT {', '.join('coalesce(a.' + k + ', b.' + k + ')' for k in c.keys)}, coalesce(a.n, 0), "
        f"coalesce(b.n, 0) FROM (SELECT {keys}, n FROM {c.counter} WHERE n <> 0) AS a "
        f"FULL OUTER JOIN (SELECT {keys}, count(*) AS n FROM {c.table} GROUP BY {keys}) AS b ON {on} "
        f"WHERE coalesce(a.n, 0) <> coalesce(b.n, 0)"
    )

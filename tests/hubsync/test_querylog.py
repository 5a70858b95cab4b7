from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hubsync.models import Workspace
from hubsync.querylog import forget_queries
from hubsync.tasks import dispatch

pytestmark = pytest.mark.django_db


def test_forget_queries_empties_the_debug_log(settings):
    settings.DEBUG = True
    Workspace.objects.count()
    assert len(connection.queries_log) >= 1
    forget_queries()
    assert len(connection.queries_log) == 0


def test_a_capture_in_progress_is_left_alone():
    with CaptureQueriesContext(connection) as captured:
        Workspace.objects.count()
        forget_queries()
        Workspace.objects.count()
    assert len(captured) == 2


def test_a_task_leaves_nothing_in_the_log(settings):
    settings.DEBUG = True
    Workspace.objects.count()
    seen: list[int] = []
    real = dispatch.run

    def spy():
        seen.append(len(connection.queries_log))  # cleared before the task starts
        return real()

    dispatch.run = spy
    try:
        dispatch.apply()
    finally:
        dispatch.run = real
    assert seen == [0]
    assert len(connection.queries_log) == 0  # and after it ends


def test_a_bulk_statement_runs_and_is_logged_short(settings):
    """A page-sized statement runs as usual (execute wrappers included) and the DEBUG log holds its head and size,
    not a copy with every parameter written into it."""
    from django.db import connection

    from hubsync.querylog import execute_bulk

    settings.DEBUG = True
    forget_queries()
    seen: list[str] = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    names = [f"workspace {i} " + "x" * 80 for i in range(50)]
    table = Workspace._meta.db_table
    sql = f"SELECT COUNT(*) FROM {table} WHERE name IN ({', '.join(['%s'] * len(names))})"
    Workspace.objects.create(name=names[7])
    with connection.execute_wrapper(wrapper), connection.cursor() as cursor:
        execute_bulk(cursor, sql, names)
        assert cursor.fetchone() == (1,)
    assert seen == [sql]
    (entry,) = [q for q in connection.queries_log if "COUNT(*)" in q["sql"]]
    assert len(entry["sql"]) < 400 and "50 parameters" in entry["sql"] and "xxxx" not in entry["sql"]


def test_a_bulk_statement_counts_in_a_capture_and_runs_without_debug(settings):
    from django.db import connection

    from hubsync.querylog import execute_bulk

    settings.DEBUG = False
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        execute_bulk(cursor, "SELECT %s", [1])
        assert cursor.fetchone() == (1,)
    assert len(captured) == 1
    forget_queries()
    with connection.cursor() as cursor:
        execute_bulk(cursor, "SELECT %s", [2])
        assert cursor.fetchone() == (2,)
    assert len(connection.queries_log) == 0

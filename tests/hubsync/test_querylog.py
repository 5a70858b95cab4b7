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

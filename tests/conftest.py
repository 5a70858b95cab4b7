"""Shared fixtures: one per role (owner, admin, viewer, outsider) and logged-in clients for each."""

from __future__ import annotations

import pytest
from django.test import Client

from hubsync.models import Role, Workspace
from mappings.segment import close_session
from tests.factories import (
    PASSWORD,  # noqa: F401 (tests import it from here)
    MembershipFactory,
    UserFactory,
    WorkspaceFactory,
)

pytest_plugins = ["tests.fixtures_sandbox", "tests.fixtures_segment"]


def make_user(email: str):
    return UserFactory(email=email)


@pytest.fixture
def workspace(db) -> Workspace:
    return WorkspaceFactory(name="Acme")


@pytest.fixture
def other_workspace(db) -> Workspace:
    return WorkspaceFactory(name="Globex")


def _member(workspace: Workspace, email: str, role: str):
    user = make_user(email)
    MembershipFactory(user=user, workspace=workspace, role=role)
    return user


@pytest.fixture
def owner(workspace):
    return _member(workspace, "owner@acme.test", Role.OWNER)


@pytest.fixture
def admin_user(workspace):
    return _member(workspace, "admin@acme.test", Role.ADMIN)


@pytest.fixture
def viewer(workspace):
    return _member(workspace, "viewer@acme.test", Role.VIEWER)


@pytest.fixture
def outsider(other_workspace):
    """Owner of another workspace: must never see or change Acme's objects."""
    return _member(other_workspace, "owner@globex.test", Role.OWNER)


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return _client_for(owner)


@pytest.fixture
def admin_client_(admin_user) -> Client:
    return _client_for(admin_user)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return _client_for(viewer)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return _client_for(outsider)


@pytest.fixture(autouse=True)
def _row_counters_agree(request):
    """After every test that used the database: the trigger-kept row counters (hubsync.counters) equal a real
    count. Every engine, view and fixture in the suite thereby tests the triggers for free."""
    names = request.fixturenames
    # Set the database up inside this fixture, so that it is torn down after the check below (an autouse
    # fixture is otherwise set up before, and so torn down after, the fixtures a test asks for).
    if "transactional_db" in names or "live_server" in names:
        request.getfixturevalue("transactional_db")
    elif "db" in names:
        request.getfixturevalue("db")
    elif request.node.get_closest_marker("django_db") is None:
        yield  # no database in this test
        return
    yield
    from django.db import connection

    from hubsync import counters

    for counted in (counters.RECORDS, counters.DELIVERY_STATES):
        with connection.cursor() as cursor:
            cursor.execute(counters.recount_sql(counted))
            wrong = cursor.fetchall()
        assert not wrong, f"{counted.counter} disagrees with {counted.table} (keys, counted, actual): {wrong}"


@pytest.fixture
def inline_handoffs(monkeypatch):
    """Hand-offs upward (hubsync.handoff) run their task in this process at once, as a worker does after the
    commit that a test's transaction never makes. Returns the (name, kwargs) sent."""
    from celery import current_app

    from hubsync import handoff

    sent: list[tuple[str, dict]] = []

    def send(name: str, /, **kwargs) -> None:
        sent.append((name, kwargs))
        current_app.tasks[name].apply(kwargs=kwargs)

    monkeypatch.setattr(handoff, "send", send)
    return sent


@pytest.fixture
def sandbox(hubspot_sandbox, settings):
    """The HubSpot sandbox on live_server, reached by our client through BASE_URL; our limiter off and fast
    backoff, the sandbox's own rate limits off (tests that want 429s turn them on)."""
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    settings.HUBSPOT_RETRY_BASE_SECONDS = 0.02
    settings.HUBSPOT_RETRY_CAP_SECONDS = 0.2
    hubspot_sandbox.set_knobs(rate_limits=False)
    return hubspot_sandbox


@pytest.fixture
def hub(sandbox, segment_sandbox, settings):
    """Both sandboxes on the same live server (the whole pipeline), fast Segment backoffs too."""
    settings.SEGMENT_BACKOFF_BASE = 0.001
    settings.SEGMENT_BACKOFF_CAP = 0.01
    yield sandbox
    close_session()  # keep-alive connections would hold live_server threads (and their DB sessions)

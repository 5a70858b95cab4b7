"""The URL walk of tests/hubsync/test_url_walk.py, for the API: every route under /api/v1/, with the ids of the
victim workspace's objects (one of every model), asked by every kind of caller with every method.

* no token, a garbage token, an expired or a revoked token: 401 problem details, nothing changes;
* a token of another workspace (admin role): 404 for the victim's workspace and objects, also when it names its
  own workspace with the victim's ids; no victim text ever in the answer; nothing of the victim changes;
* a read-only token of the victim workspace: reads answer (< 500, no secret value ever), writes are 403;
* every API view goes through the token check (a view without it fails the walk).
"""

from __future__ import annotations

import pytest
from rest_framework.permissions import AllowAny

from api.auth import WorkspaceTokenPermission
from api.models import ApiToken
from hubsync.models import AuditEvent
from tests.api.conftest import ApiClient
from tests.hubsync.test_url_walk import (
    MARKER,
    ROUTES,
    SECRET_MARKER,
    Route,
    _Builder,
    _diff,
    build_url,
    fillings,
    snapshot,
)

API_ROUTES = [r for r in ROUTES if r.route.startswith("api/v1/")]
PUBLIC = {"api:root", "api:schema", "api:docs"}
WORKSPACE_ROUTES = [r for r in API_ROUTES if r.name not in PUBLIC]
METHODS = ("get", "post", "patch", "put", "delete")
# What an API call writes whatever it answers: the token's last use and the audit of the call (checked apart).
CALL_TABLES = {"api.ApiToken", "hubsync.AuditEvent"}


def _params(routes: list[Route]) -> list:
    return [pytest.param(r, id=r.id) for r in routes]


@pytest.fixture
def victim_objects(workspace, owner, viewer):
    return _Builder(workspace, owner).build_all()


def _changed(before, after) -> list[str]:
    return [label for label in _diff(before, after) if label not in CALL_TABLES]


def _is_problem(response) -> bool:
    return response["Content-Type"].startswith("application/problem+json")


def test_the_walk_sees_the_api():
    names = {r.name for r in API_ROUTES}
    assert {"api:sources", "api:mapping_test", "api:records", "api:alert_events", "api:schema"} <= names
    assert len(WORKSPACE_ROUTES) > 35


def test_every_api_view_checks_the_token():
    unguarded = []
    for route in API_ROUTES:
        cls = getattr(route.callback, "cls", None)
        if route.name in PUBLIC:
            assert cls is not None and cls.permission_classes == [AllowAny]
            continue
        permissions = getattr(cls, "permission_classes", [])
        if not getattr(cls, "api_view", False) or WorkspaceTokenPermission not in permissions:
            unguarded.append(route.id)
    assert not unguarded, f"API views without the token check (api.views.base.ApiView / ListView): {unguarded}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", _params(WORKSPACE_ROUTES))
def test_no_valid_token_is_a_401(route, victim_objects, expired_token, revoked_token):
    before = snapshot()
    callers = [
        ApiClient(None),
        ApiClient("hs_not-a-token"),
        ApiClient(expired_token.token),
        ApiClient(revoked_token.token),
    ]
    for values in list(fillings(route, victim_objects))[:3]:
        url = build_url(route, values)
        for client in callers:
            for method in METHODS:
                response = client.request(method, url)
                assert response.status_code == 401, f"{method.upper()} {url} -> {response.status_code}"
                assert _is_problem(response) and response.json()["status"] == 401
                assert response["WWW-Authenticate"].startswith("Bearer")
                assert MARKER not in response.content.decode()
    assert not _diff(before, snapshot())


@pytest.mark.django_db
@pytest.mark.parametrize("route", _params(WORKSPACE_ROUTES))
def test_another_workspaces_token_reaches_nothing(route, victim_objects, workspace, other_workspace, api_other):
    before = snapshot()
    for values in fillings(route, victim_objects):
        for own in (False, True):
            if own:
                if "workspace_id" not in values or len(route.converters) == 1:
                    continue  # its own workspace without victim ids: its own data, not a leak
                values = {**values, "workspace_id": other_workspace.pk}
            url = build_url(route, values)
            for method in METHODS:
                response = api_other.request(method, url, {} if method != "get" else None)
                body = response.content.decode(errors="replace")
                assert MARKER not in body and SECRET_MARKER not in body, f"{method.upper()} {url} leaks"
                if not route.converters:  # its own workspace's list: answered, with none of the victim's data
                    assert response.status_code < 500
                    continue
                assert response.status_code in (404, 405), f"outsider {method.upper()} {url} -> {response.status_code}"
                assert _is_problem(response)
    assert not _changed(before, snapshot())
    assert (
        not AuditEvent.objects.filter(workspace=workspace)
        .exclude(pk__in=[r[0] for r in before["hubsync.AuditEvent"]])
        .exists()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("route", _params(WORKSPACE_ROUTES))
def test_a_read_only_token_reads_and_changes_nothing(route, victim_objects, api_read):
    for values in fillings(route, victim_objects):
        url = build_url(route, values)
        response = api_read.get(url)
        body = response.content.decode(errors="replace")
        assert response.status_code < 500, f"read-only GET {url} -> {response.status_code}"
        assert response.status_code != 403, f"read-only GET {url} -> 403"
        assert SECRET_MARKER not in body, f"GET {url} shows a secret value"
        before = snapshot()
        for method in METHODS[1:]:
            response = api_read.request(method, url, {})
            assert response.status_code in (403, 404, 405), (
                f"read-only {method.upper()} {url} -> {response.status_code}"
            )
            assert _is_problem(response)
        assert not _changed(before, snapshot()), f"read-only writes to {url} changed something"


@pytest.mark.django_db
def test_the_token_page_walk_covers_api_tokens(victim_objects):
    assert ApiToken in victim_objects or any(m._meta.label == "api.ApiToken" for m in victim_objects)

"""The configuration as code through the API: export (read-only tokens may), plan and apply (admin tokens), the
same plan as hubsync_apply, refusals as problem details that change nothing, another workspace's token refused."""

from __future__ import annotations

import pytest

from api.config import export_yaml
from api.models import ApiToken
from hubsync.models import AuditEvent
from mappings.models import Mapping
from tests.api.config_seed import sandbox_settings, seed
from tests.api.conftest import ApiClient, make_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seeded(hubspot_sandbox, settings, live_server, workspace, owner):
    sandbox_settings(settings, live_server)
    return seed(hubspot_sandbox, workspace, owner)


def url(workspace, what: str) -> str:
    return f"/api/v1/workspaces/{workspace.pk}/config/{what}/"


def column_of(mapping: Mapping, trait: str) -> str:
    return next(column for column, name in mapping.traits if name == trait)


def test_export_plan_and_apply_through_the_api(seeded, workspace, owner):
    admin = ApiClient(make_token(workspace, owner, ApiToken.Role.ADMIN).token)
    read = ApiClient(make_token(workspace, owner, ApiToken.Role.READ_ONLY).token)

    exported = read.get(url(workspace, "export"))
    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("application/yaml")
    text = exported.content.decode()
    assert text == export_yaml(workspace=workspace)

    # The workspace's own export plans nothing.
    same = admin.post(url(workspace, "plan"), {"yaml": text})
    assert same.status_code == 200, same.content
    assert same.json()["changes"] == [] and "No changes" in same.json()["text"]

    # One trait renamed: exactly that field, and a plan changes nothing.
    changed = text.replace("      email: email\n", "      email: lastname\n")
    assert changed != text
    plan = admin.post(url(workspace, "plan"), {"yaml": changed}).json()
    assert [(c["op"], c["path"], c["old"], c["new"]) for c in plan["changes"]] == [
        ("change", "mappings.contacts-to-profiles.traits.email", "email", "lastname")
    ]
    mapping = Mapping.objects.get(data_model__source__workspace=workspace)
    assert column_of(mapping, "email") == "email"

    # A read-only token cannot plan or apply.
    for what in ("plan", "apply"):
        refused = read.post(url(workspace, what), {"yaml": changed})
        assert refused.status_code == 403 and refused["Content-Type"] == "application/problem+json"

    applied = admin.post(url(workspace, "apply"), {"yaml": changed})
    assert applied.status_code == 200, applied.content
    assert applied.json()["applied"] is True
    mapping.refresh_from_db()
    assert column_of(mapping, "email") == "lastname"
    assert AuditEvent.objects.filter(workspace=workspace, verb="config.apply").exists()
    # Idempotent.
    assert admin.post(url(workspace, "apply"), {"yaml": changed}).json()["changes"] == []


def test_a_refused_file_is_a_problem_and_changes_nothing(seeded, workspace, owner):
    admin = ApiClient(make_token(workspace, owner, ApiToken.Role.ADMIN).token)
    before = export_yaml(workspace=workspace)
    for body in ({"yaml": "version: 1\nmappings: [unclosed"}, {"yaml": before + "surprise: 1\n"}, {}):
        response = admin.post(url(workspace, "apply"), body)
        assert response.status_code == 400, response.content
        problem = response.json()
        assert response["Content-Type"] == "application/problem+json"
        assert problem["status"] == 400 and problem["errors"]
    assert export_yaml(workspace=workspace) == before


def test_another_workspaces_token_cannot_reach_the_config(seeded, workspace, other_workspace, outsider):
    other = ApiClient(make_token(other_workspace, outsider, ApiToken.Role.ADMIN).token)
    assert other.get(url(workspace, "export")).status_code == 404
    text = export_yaml(workspace=workspace)
    assert other.post(url(workspace, "apply"), {"yaml": text.replace("email: email", "email: city")}).status_code == 404
    assert column_of(Mapping.objects.get(data_model__source__workspace=workspace), "email") == "email"
    assert ApiClient(None).get(url(workspace, "export")).status_code == 401

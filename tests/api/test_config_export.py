"""hubsync_export: the seeded workflow as readable YAML, the same bytes every time, without any secret."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from api.config import export_yaml
from mappings.models import Mapping
from sources.models import Source
from tests.api.config_seed import WEBHOOK, WRITE_KEY, owner_of, sandbox_settings, seed


@pytest.fixture
def seeded(hubspot_sandbox, settings, live_server, workspace):
    sandbox_settings(settings, live_server)
    owner = owner_of(workspace)
    return {"owner": owner, **seed(hubspot_sandbox, workspace, owner)}


def test_export_describes_the_seed_workflow_with_stable_keys(seeded, workspace):
    text = export_yaml(workspace=workspace)
    assert text == export_yaml(workspace=workspace)  # byte-equal
    doc = yaml.safe_load(text)
    assert doc["version"] == 1 and doc["workspace"] == "Acme"
    assert list(doc) == [
        "version",
        "workspace",
        "settings",
        "alerts",
        "sources",
        "data_models",
        "destinations",
        "mappings",
    ]
    assert doc["sources"] == {
        "hubspot": {
            "hub_id": 1001,
            "hub_domain": "acme-sandbox.example",
            "name": "HubSpot",
            "label": "Production portal",
            "start_date": seeded["source"].start_date,
            "sync_interval": "3h",
            "collections": ["companies", "contacts"],
            "enabled": True,
        }
    }
    assert doc["data_models"] == {
        "contacts": {
            "name": "Contacts",
            "source": "hubspot",
            "collection": "contacts",
            "columns": ["email", "firstname", "lastname"],
        }
    }
    assert doc["destinations"]["segment"]["profile_spaces"] == {
        "production": {"name": "Production", "region": "us", "write_key_env": "SEGMENT_WRITE_KEY_PRODUCTION"}
    }
    assert doc["mappings"]["contacts-to-profiles"] == {
        "name": "Contacts to profiles",
        "model": "contacts",
        "destination": "segment",
        "profile_space": "production",
        "action": "identify",
        "identifiers": {"user_id": "email"},
        "traits": {"email": "email", "first_name": "firstname", "last_name": "lastname"},
        "options": {
            "empty_values": "null",
            "identifier_format": "lower",
            "archived_behaviour": "nothing",
            "sample_size": None,
        },
        "enabled": True,
    }
    assert doc["alerts"] == {
        "rules": {"freshness_alert_minutes": 30, "rejected_alert_threshold": 50},
        "channels": {
            "ops": {"name": "Ops", "kind": "email", "emails": ["owner@acme.test"], "enabled": True},
            "slack": {
                "name": "Slack",
                "kind": "webhook",
                "webhook_url_env": "ALERT_WEBHOOK_URL_SLACK",
                "enabled": True,
            },
        },
    }
    assert doc["settings"] == {"drift_pauses_mappings": False}
    # Sorted keys (the sections above are compared whole: no database id anywhere).
    for section in ("sources", "data_models", "destinations", "mappings"):
        assert list(doc[section]) == sorted(doc[section])


def test_export_contains_no_secret(seeded, workspace):
    source = Source.objects.get(pk=seeded["source"].pk)
    text = export_yaml(workspace=workspace)
    for secret in (WRITE_KEY, WEBHOOK, "secretpart", source.token, source.access_token):
        assert secret and secret not in text


def test_export_follows_a_change(seeded, workspace):
    before = export_yaml(workspace=workspace)
    Mapping.objects.filter(pk=seeded["mapping"].pk).update(traits=[["email", "e_mail"]])
    after = export_yaml(workspace=workspace)
    assert after != before
    assert yaml.safe_load(after)["mappings"]["contacts-to-profiles"]["traits"] == {"e_mail": "email"}


def test_command_prints_the_export_by_name_or_id(seeded, workspace, tmp_path):
    out = io.StringIO()
    call_command("hubsync_export", "--workspace", "Acme", stdout=out)
    assert out.getvalue() == export_yaml(workspace=workspace)
    target = tmp_path / "hubsync.yaml"
    call_command("hubsync_export", "--workspace", str(workspace.pk), "--output", str(target))
    assert target.read_text() == export_yaml(workspace=workspace)
    with pytest.raises(CommandError, match="no workspace with the id or name 'Nope'"):
        call_command("hubsync_export", "--workspace", "Nope")

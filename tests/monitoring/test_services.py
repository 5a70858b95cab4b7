"""monitoring.services.update_channel: rename and re-address a channel, audited, secrets kept out of the log."""

from __future__ import annotations

from hubsync.models import AlertChannel, AuditEvent
from monitoring.services import update_channel
from tests.factories import AlertChannelFactory

HOOK = "https://hooks.example.com/services/T0/B0/secret"


def test_update_changes_name_and_addresses_and_audits_them(workspace, owner):
    channel = AlertChannelFactory(workspace=workspace, name="Ops", emails="a@acme.test")
    assert update_channel(
        channel=channel, name="Ops team", emails="a@acme.test, b@acme.test", webhook_url="", actor=owner
    )
    channel.refresh_from_db()
    assert (channel.name, channel.recipients) == ("Ops team", ["a@acme.test", "b@acme.test"])
    event = AuditEvent.objects.get(verb="update", object_type="hubsync.AlertChannel")
    assert event.actor == owner
    assert event.changes == {"name": ["Ops", "Ops team"], "emails": ["a@acme.test", "a@acme.test, b@acme.test"]}


def test_update_keeps_or_replaces_the_webhook_url_without_logging_it(workspace, owner):
    channel = AlertChannelFactory(workspace=workspace, kind=AlertChannel.Kind.WEBHOOK, name="Slack", webhook_url=HOOK)
    assert not update_channel(channel=channel, name="Slack", emails="", webhook_url="", actor=owner)
    assert not update_channel(channel=channel, name="Slack", emails="", webhook_url=HOOK, actor=owner)
    assert not AuditEvent.objects.exists()
    assert update_channel(channel=channel, name="Slack", emails="", webhook_url=HOOK + "2", actor=owner)
    assert AlertChannel.objects.get(pk=channel.pk).webhook_url == HOOK + "2"
    event = AuditEvent.objects.get()
    assert event.changes == {"webhook_url": "•••"}  # a secret field: the audit log only says it changed

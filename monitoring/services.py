"""Writes on a workspace's alert channels: keyword-only, atomic, audited. The alert views call these."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hubsync import audit
from hubsync.fields import DecryptionError
from hubsync.models import Alert, AlertChannel, Workspace

from .alerts import queue_alert


class SendTestLimited(Exception):
    """Too many test messages recently; the message says when to try again."""


@transaction.atomic
def create_channel(
    *, workspace: Workspace, kind: str, name: str, emails: str, webhook_url: str, actor: Any
) -> AlertChannel:
    channel = AlertChannel.objects.create(
        workspace=workspace, kind=kind, name=name, emails=emails, webhook_url=webhook_url
    )
    audit.record(
        workspace=workspace,
        actor=actor,
        verb="create",
        obj=channel,
        # A webhook URL may carry a token (Slack's do): the audit log says only that one was set.
        changes={"kind": channel.kind, "name": channel.name, "emails": channel.emails, "webhook_url": "set"},
    )
    return channel


def _same_secret(channel: AlertChannel, webhook_url: str) -> bool:
    try:
        return channel.webhook_url == webhook_url
    except DecryptionError:  # unreadable with the current keys: the new one replaces it
        return False


@transaction.atomic
def update_channel(*, channel: AlertChannel, name: str, emails: str, webhook_url: str, actor: Any) -> bool:
    """Rename a channel or change its addresses; an empty `webhook_url` keeps the saved one (it is never shown).
    The kind stays what it was. Returns whether anything changed."""
    before = {"name": channel.name, "emails": channel.emails}
    channel.name, channel.emails = name, emails
    changes: dict[str, Any] = audit.diff(channel, before, list(before))
    fields = list(changes)
    if webhook_url and not _same_secret(channel, webhook_url):
        channel.webhook_url = webhook_url
        changes["webhook_url"] = "replaced"
        fields.append("webhook_url")
    if not changes:
        return False
    channel.save(update_fields=fields)
    audit.record(workspace=channel.workspace, actor=actor, verb="update", obj=channel, changes=changes)
    return True


@transaction.atomic
def toggle_channel(*, channel: AlertChannel, actor: Any) -> bool:
    """Switch the channel on if it is off and off if it is on; returns whether it is now enabled."""
    channel.enabled = not channel.enabled
    channel.save(update_fields=["enabled"])
    audit.record(
        workspace=channel.workspace,
        actor=actor,
        verb="enable" if channel.enabled else "disable",
        obj=channel,
        changes={"enabled": [not channel.enabled, channel.enabled]},
    )
    return channel.enabled


@transaction.atomic
def delete_channel(*, channel: AlertChannel, actor: Any) -> None:
    audit.record(
        workspace=channel.workspace,
        actor=actor,
        verb="delete",
        obj=channel,
        changes={"kind": channel.kind, "name": channel.name},
    )
    channel.delete()


def send_test(*, channel: AlertChannel) -> Alert:
    """Queue a test message, unless the channel or its workspace has sent too many lately: "Send test" must not
    turn the server into a mail cannon or a request flood. Counted from the Alert rows (the database decides, with
    the workspace row locked so two clicks at once cannot both slip under the limit). Not audited: the Alert row
    it queues is its record, shown in the alert log with its outcome."""
    window = timedelta(seconds=settings.ALERT_TEST_WINDOW_SECONDS)
    minutes = max(1, settings.ALERT_TEST_WINDOW_SECONDS // 60)
    with transaction.atomic():
        list(Workspace.objects.select_for_update().filter(pk=channel.workspace_id).values_list("pk", flat=True))
        recent = Alert.objects.filter(
            workspace_id=channel.workspace_id, kind=Alert.Kind.TEST, created_at__gte=timezone.now() - window
        )
        if recent.filter(channel=channel).count() >= settings.ALERT_TEST_LIMIT_PER_CHANNEL:
            raise SendTestLimited(
                f"This channel already got {settings.ALERT_TEST_LIMIT_PER_CHANNEL} test messages in the last "
                f"{minutes} minutes. Wait a few minutes before sending another."
            )
        if recent.count() >= settings.ALERT_TEST_LIMIT_PER_WORKSPACE:
            raise SendTestLimited(
                f"This workspace already sent {settings.ALERT_TEST_LIMIT_PER_WORKSPACE} test messages in the last "
                f"{minutes} minutes. Wait a few minutes before sending another."
            )
        return queue_alert(
            channel=channel,
            kind=Alert.Kind.TEST,
            text=f"[hubsync · {channel.workspace.name}] Test message for channel “{channel}”: alerts reach you here.",
        )

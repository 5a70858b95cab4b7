"""Alerts: watch a workspace's sources and mappings and tell its channels when something goes wrong.

`evaluate(workspace_id=...)` looks at the current state of every rule and object:

- ``sync_failed:source:N``      the source's latest finished sync run failed or was partial
- ``reconnect:source:N``        the source needs to be reconnected (HubSpot refused its token)
- ``delivery_failed:mapping:N`` the mapping's latest finished delivery run failed or was partial
- ``drift:mapping:N``           schema drift paused the mapping
- ``freshness:mapping:N``       the oldest mirror change not yet delivered to this enabled mapping is older than
                                the workspace's threshold
- ``rejected:mapping:N``        the mapping holds more rejected records than the workspace's threshold

Each key has one `AlertState`. A failing key whose state is closed opens it and sends **one** alert; while it
stays open nothing more is sent, however many runs fail or retries happen; when the key is healthy again the
state closes and sends **one** recovery message. Opening and closing are compare-and-set updates, so two
evaluations racing (a sync and a delivery finishing at once) still send one message. Objects that were deleted
close their streak silently, and so do mappings that were switched off.

It runs when a sync run or a delivery run finishes (the engines send `hubsync.handoff.RUN_FINISHED`) and every
minute from the beat dispatcher (freshness grows without any run finishing). Each message is an `Alert` row
(the outbox) sent by the Celery task `monitoring.send_alert`, one per channel, with bounded retries; every
attempt is recorded on the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from hubsync import handoff
from hubsync.http import full_jitter
from hubsync.models import Alert, AlertChannel, AlertState, Workspace, WorkspaceSettings

logger = logging.getLogger(__name__)

SEND_ALERT = "monitoring.send_alert"  # monitoring.tasks.send_alert, named to keep tasks -> alerts one-way
TEXT_LIMIT = 300  # characters of a run's error quoted in a message


# What each rule is called on the Alerts page.
RULE_LABELS = {
    "sync_failed": "Sync failed",
    "reconnect": "Reconnect needed",
    "delivery_failed": "Delivery failed",
    "drift": "Schema change",
    "freshness": "Data late",
    "rejected": "Rejected records",
}


def state_path(key: str) -> str:
    """Where to look for an open problem, from its key ("sync_failed:source:3" -> the source's page)."""
    rule, _, rest = key.partition(":")
    kind, _, pk = rest.partition(":")
    if not pk.isdigit():
        return ""
    if kind == "source":
        return _url("sources:detail", int(pk))
    if kind == "mapping":
        return _url("mappings:drift" if rule == "drift" else "mappings:mapping_detail", int(pk))
    return ""


@dataclass(frozen=True)
class Finding:
    rule: str
    subject: str  # what is wrong, one line
    detail: str = ""
    path: str = ""  # where to look, relative URL


# --- rules ---------------------------------------------------------------------------------------------------


def _short(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _url(name: str, *args: Any) -> str:
    try:
        return reverse(name, args=args)
    except Exception:  # a page another part of the app has not wired (yet)
        return ""


def findings(workspace_id: int) -> tuple[dict[str, Finding], set[str], set[str]]:
    """(failing keys with what is wrong, keys checked and healthy, keys held: neither opened nor closed)."""
    from mappings.models import DeliveryRun, DeliveryState, DeliveryStateCount, Mapping
    from monitoring.dashboard import first_pending_change
    from sources.models import Source, SyncRun

    conf = WorkspaceSettings.for_workspace(workspace_id)
    failing: dict[str, Finding] = {}
    healthy: set[str] = set()
    held: set[str] = set()
    bad_runs = (SyncRun.Status.FAILED, SyncRun.Status.PARTIAL)

    # The latest *finished* run of each source / mapping in the same query (a running one says nothing yet).
    # Ordered by created_at: one run at a time per source / mapping, so the newest created is the newest finished,
    # and the (source, -created_at) index answers it without reading the whole history.
    last_sync = SyncRun.objects.filter(source=OuterRef("pk"), finished_at__isnull=False).order_by("-created_at", "-id")
    sources = Source.objects.filter(workspace_id=workspace_id).annotate(
        last_pk=Subquery(last_sync.values("pk")[:1]),
        last_status=Subquery(last_sync.values("status")[:1]),
        last_error=Subquery(last_sync.values("error")[:1]),
    )
    for source in sources:
        path = _url("sources:detail", source.pk)
        key = f"reconnect:source:{source.pk}"
        if source.status == Source.Status.NEEDS_RECONNECT:
            failing[key] = Finding(
                "reconnect", f"Source “{source}” needs to be reconnected to HubSpot", _short(source.status_detail), path
            )
        else:
            healthy.add(key)
        key = f"sync_failed:source:{source.pk}"
        last = {"pk": source.last_pk, "status": source.last_status, "error": source.last_error or ""}
        if source.status == Source.Status.NEEDS_RECONNECT:
            held.add(key)  # the reconnect alert says it all; its runs fail for that reason
        elif last["pk"] is None:
            continue
        elif last["status"] in bad_runs:
            failing[key] = Finding(
                "sync_failed",
                f"Sync of source “{source}” {last['status']} (run {last['pk']})",
                _short(last["error"]),
                path,
            )
        else:
            healthy.add(key)

    last_delivery = DeliveryRun.objects.filter(mapping=OuterRef("pk"), finished_at__isnull=False).order_by(
        "-created_at", "-id"
    )
    mappings = list(
        Mapping.objects.filter(destination__workspace_id=workspace_id)
        .select_related("data_model")
        .annotate(
            last_pk=Subquery(last_delivery.values("pk")[:1]),
            last_status=Subquery(last_delivery.values("status")[:1]),
            last_error=Subquery(last_delivery.values("error")[:1]),
            oldest_pending=Subquery(first_pending_change().values("synced_at")[:1]),
        )
    )
    rejected = {
        pk: counts.get(DeliveryState.Status.REJECTED, 0)
        for pk, counts in DeliveryStateCount.for_mappings([m.pk for m in mappings]).items()
    }
    now = timezone.now()
    for mapping in mappings:
        if not mapping.enabled:
            continue  # switched off on purpose: its open streaks close without a message
        # The schema-change page for drift; the mapping page (runs, rejected records, freshness) for the rest.
        path = _url("mappings:mapping_detail", mapping.pk)
        key = f"drift:mapping:{mapping.pk}"
        if mapping.paused_reason == Mapping.PAUSED_DRIFT:
            failing[key] = Finding(
                "drift",
                f"Mapping “{mapping}” was paused: HubSpot changed a property it uses",
                "; ".join(i.summary for i in mapping.issues.filter(resolved_at__isnull=True, paused=True)),
                _url("mappings:drift", mapping.pk),
            )
        else:
            healthy.add(key)

        key = f"delivery_failed:mapping:{mapping.pk}"
        last = {"pk": mapping.last_pk, "status": mapping.last_status, "error": mapping.last_error or ""}
        if last["pk"] is not None and last["status"] in bad_runs:
            failing[key] = Finding(
                "delivery_failed",
                f"Delivery of mapping “{mapping}” {last['status']} (run {last['pk']})",
                _short(last["error"]),
                path,
            )
        elif last["pk"] is not None:
            healthy.add(key)

        key = f"rejected:mapping:{mapping.pk}"
        count = rejected.get(mapping.pk, 0)
        if conf.rejected_alert_threshold and count > conf.rejected_alert_threshold:
            failing[key] = Finding(
                "rejected",
                f"Mapping “{mapping}” has {count} rejected records (threshold {conf.rejected_alert_threshold})",
                "",
                path,
            )
        else:
            healthy.add(key)

        key = f"freshness:mapping:{mapping.pk}"
        if not conf.freshness_alert_minutes or not mapping.delivers:
            healthy.add(key)  # off, or nothing is meant to be delivered (a paused mapping has its own alert)
            continue
        oldest = mapping.oldest_pending  # annotated above: no query per mapping
        age = now - oldest if oldest is not None else timedelta(0)
        if age > timedelta(minutes=conf.freshness_alert_minutes):
            failing[key] = Finding(
                "freshness",
                f"Mapping “{mapping}” is {int(age.total_seconds() // 60)} minutes behind "
                f"(threshold {conf.freshness_alert_minutes})",
                "",
                path,
            )
        else:
            healthy.add(key)
    return failing, healthy, held


def evaluate(*, workspace_id: int) -> dict[str, list[str]]:
    """Open streaks for new failures and close recovered ones, sending one message per change of state.
    Returns {"opened": [keys], "closed": [keys]}."""
    failing, healthy, held = findings(workspace_id)
    opened: list[str] = []
    closed: list[str] = []
    now = timezone.now()
    for key, finding in failing.items():
        state, _ = AlertState.objects.get_or_create(workspace_id=workspace_id, key=key, defaults={"rule": finding.rule})
        # Compare-and-set: of two evaluations racing, exactly one turns the state open and sends the alert.
        if AlertState.objects.filter(pk=state.pk, is_open=False).update(
            is_open=True,
            opened_at=now,
            closed_at=None,
            rule=finding.rule,
            subject=finding.subject[:300],
            detail=finding.detail,
        ):
            opened.append(key)
            state.refresh_from_db()
            _fan_out(workspace_id, state, Alert.Kind.FIRING, _firing_text(finding))
    for state in AlertState.objects.filter(workspace_id=workspace_id, is_open=True).exclude(key__in=list(failing)):
        if state.key in held:
            continue
        if not AlertState.objects.filter(pk=state.pk, is_open=True).update(is_open=False, closed_at=now):
            continue
        closed.append(state.key)
        if state.key in healthy:  # else the object is gone: close the streak without a message
            _fan_out(workspace_id, state, Alert.Kind.RECOVERED, f"✅ Recovered: {state.subject}")
    return {"opened": opened, "closed": closed}


def evaluate_safely(*, workspace_id: int | None) -> None:
    """For the run completion paths: alerting must never fail or slow down a run's bookkeeping."""
    if workspace_id is None:
        return
    try:
        evaluate(workspace_id=workspace_id)
    except Exception:
        logger.exception("alert evaluation failed for workspace %s", workspace_id)


def evaluate_all() -> int:
    """The beat dispatcher's hook (every minute): freshness grows without any run finishing."""
    from sources.models import Source

    ids = list(Source.objects.values_list("workspace_id", flat=True).distinct())
    for workspace_id in ids:
        evaluate_safely(workspace_id=workspace_id)
    return len(ids)


def _firing_text(finding: Finding) -> str:
    text = f"🔴 {finding.subject}"
    if finding.detail:
        text += f": {finding.detail}"
    if finding.path:
        text += f"\n{settings.BASE_URL.rstrip('/')}{finding.path}"
    return text


def _fan_out(workspace_id: int, state: AlertState | None, kind: str, text: str) -> list[Alert]:
    workspace = Workspace.objects.get(pk=workspace_id)
    text = f"[hubsync · {workspace.name}] {text}"
    alerts = []
    for channel in AlertChannel.objects.filter(workspace_id=workspace_id, enabled=True):
        alerts.append(queue_alert(channel=channel, kind=kind, text=text, state=state))
    return alerts


def queue_alert(*, channel: AlertChannel, kind: str, text: str, state: AlertState | None = None) -> Alert:
    """Record one message for one channel and send it through the task after commit (the task takes the id)."""
    alert = Alert.objects.create(
        workspace_id=channel.workspace_id,
        channel=channel,
        state=state,
        kind=kind,
        rule=state.rule if state is not None else "",
        text=text,
    )
    handoff.send(SEND_ALERT, alert_id=alert.pk)
    return alert


def send_test(*, channel: AlertChannel) -> Alert:
    return queue_alert(
        channel=channel,
        kind=Alert.Kind.TEST,
        text=f"[hubsync · {channel.workspace.name}] Test message for channel “{channel}”: alerts reach you here.",
    )


# --- delivery ------------------------------------------------------------------------------------------------


class _Permanent(Exception):
    """Retrying cannot help (the webhook refused the request as invalid, or the channel is gone)."""


def _redact(message: str, url: str) -> str:
    """Errors from requests quote the URL, and a Slack webhook URL is a secret: cut it (and its path) out."""
    if url:
        message = message.replace(url, "[webhook URL]")
        parts = urlsplit(url)
        secret_path = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(secret_path) > 1:
            message = message.replace(secret_path, "/[redacted]")
    return message


def _send(alert: Alert) -> int | None:
    """Send one alert; returns the HTTP status for webhooks. Raises on failure."""
    channel = alert.channel
    if channel is None:
        raise _Permanent("the channel was deleted")
    if channel.kind == AlertChannel.Kind.EMAIL:
        first_line = alert.text.splitlines()[0] if alert.text else "hubsync alert"
        send_mail(
            subject=first_line[:150],
            message=alert.text,
            from_email=None,
            recipient_list=channel.recipients,
            fail_silently=False,
        )
        return None
    url = channel.webhook_url
    try:
        response = requests.post(
            url,
            json={"text": alert.text},
            timeout=settings.ALERT_WEBHOOK_TIMEOUT,
            headers={"User-Agent": "hubsync-alerts"},
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise RuntimeError(_redact(f"{type(exc).__name__}: {exc}", url)) from None
    if 200 <= response.status_code < 300:
        return response.status_code
    error = _WebhookError(response.status_code, _redact(response.text[:200], url))
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise _Permanent(str(error)) from error
    raise error


class _WebhookError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status


def attempt(*, alert_id: int, last: bool) -> str:
    """One delivery attempt, recorded on the Alert. Returns "sent", "failed" (given up) or "retry"."""
    alert = Alert.objects.select_related("channel").filter(pk=alert_id).first()
    if alert is None or alert.status != Alert.Status.QUEUED:
        return "sent" if alert is not None and alert.status == Alert.Status.SENT else "failed"
    entry: dict[str, Any] = {"at": timezone.now().isoformat(), "ok": False, "status_code": None, "error": ""}
    outcome = "retry"
    try:
        entry["status_code"] = _send(alert)
        entry["ok"] = True
        outcome = "sent"
    except _Permanent as exc:
        entry["error"] = str(exc)
        entry["status_code"] = getattr(exc.__cause__, "status", None)
        outcome = "failed"
    except Exception as exc:
        url = alert.channel.webhook_url if alert.channel else ""
        entry["error"] = _redact(f"{type(exc).__name__}: {exc}", url)[:500]
        entry["status_code"] = getattr(exc, "status", None)
        outcome = "failed" if last else "retry"
    alert.attempts = [*(alert.attempts or []), entry]
    fields = ["attempts"]
    if outcome == "sent":
        alert.status, alert.sent_at = Alert.Status.SENT, timezone.now()
        fields += ["status", "sent_at"]
    elif outcome == "failed":
        alert.status = Alert.Status.FAILED
        fields.append("status")
        logger.warning("alert %s to channel %s gave up: %s", alert.pk, alert.channel_id, entry["error"])
    alert.save(update_fields=fields)
    return outcome


def retry_delay(retries: int) -> float:
    """Full-jitter exponential backoff before the next attempt."""
    return full_jitter(retries, base=settings.ALERT_RETRY_BASE_SECONDS, cap=300.0)

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

It runs as the task `monitoring.evaluate_alerts` (hubsync.handoff.RUN_FINISHED), sent when a sync run or a
delivery run finishes and every minute by the beat dispatcher (freshness grows without any run finishing). Each
message is an `Alert` row (the outbox) sent by the task `monitoring.send_alert`, one per channel, with bounded
retries; every attempt is recorded on the row. Both tasks run on the `alerts` queue with short time limits, so
a slow webhook or mail server never delays a sync or a delivery.

Channels are other people's servers and inboxes: webhooks go to public addresses only (hubsync/outbound.py) and
the log keeps only their HTTP status; e-mails go to verified members of the workspace only, with subjects of our
own words; webhook texts are escaped for Slack's mrkdwn; "Send test" is rate-limited (monitoring/services.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.mail import get_connection, send_mail
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from hubsync import handoff, outbound
from hubsync.http import full_jitter
from hubsync.models import Alert, AlertChannel, AlertState, Workspace, WorkspaceSettings
from hubsync.redact import redact
from hubsync.runbase import RunBase
from mappings.models import DeliveryRun, DeliveryState, DeliveryStateCount, Mapping
from sources.models import Source, SyncRun

from .dashboard import first_pending_change

logger = logging.getLogger(__name__)

SEND_ALERT = "monitoring.send_alert"  # monitoring.tasks.send_alert, named to keep tasks -> alerts one-way
TEXT_LIMIT = 300  # characters of a run's error quoted in a message
BAD_RUNS = (RunBase.Status.FAILED, RunBase.Status.PARTIAL)  # outcomes of a sync or delivery run that alert


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


@dataclass
class _Verdicts:
    failing: dict[str, Finding] = field(default_factory=dict)
    healthy: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)


def findings(workspace_id: int) -> tuple[dict[str, Finding], set[str], set[str]]:
    """(failing keys with what is wrong, keys checked and healthy, keys held: neither opened nor closed)."""
    verdicts = _Verdicts()
    _source_findings(workspace_id, verdicts)
    _mapping_findings(workspace_id, verdicts)
    return verdicts.failing, verdicts.healthy, verdicts.held


def _source_findings(workspace_id: int, out: _Verdicts) -> None:

    # The latest *finished* run of each source in the same query (a running one says nothing yet). Ordered by
    # created_at: one run at a time per source, so the newest created is the newest finished, and the
    # (source, -created_at) index answers it without reading the whole history.
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
            out.failing[key] = Finding(
                "reconnect", f"Source “{source}” needs to be reconnected to HubSpot", _short(source.status_detail), path
            )
        else:
            out.healthy.add(key)
        key = f"sync_failed:source:{source.pk}"
        last = {"pk": source.last_pk, "status": source.last_status, "error": source.last_error or ""}
        if source.status == Source.Status.NEEDS_RECONNECT:
            out.held.add(key)  # the reconnect alert says it all; its runs fail for that reason
        elif last["pk"] is None:
            continue
        elif last["status"] in BAD_RUNS:
            out.failing[key] = Finding(
                "sync_failed",
                f"Sync of source “{source}” {last['status']} (run {last['pk']})",
                _short(last["error"]),
                path,
            )
        else:
            out.healthy.add(key)


def _mapping_findings(workspace_id: int, out: _Verdicts) -> None:

    conf = WorkspaceSettings.for_workspace(workspace_id)
    # The latest finished delivery of each mapping, as for sources above.
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
            out.failing[key] = Finding(
                "drift",
                f"Mapping “{mapping}” was paused: HubSpot changed a property it uses",
                "; ".join(i.summary for i in mapping.issues.filter(resolved_at__isnull=True, paused=True)),
                _url("mappings:drift", mapping.pk),
            )
        else:
            out.healthy.add(key)
        _delivery_finding(mapping, path, out)
        _rejected_finding(mapping, rejected.get(mapping.pk, 0), conf, path, out)
        _freshness_finding(mapping, now, conf, path, out)


def _delivery_finding(mapping: Any, path: str, out: _Verdicts) -> None:
    key = f"delivery_failed:mapping:{mapping.pk}"
    last = {"pk": mapping.last_pk, "status": mapping.last_status, "error": mapping.last_error or ""}
    if last["pk"] is not None and last["status"] in BAD_RUNS:
        out.failing[key] = Finding(
            "delivery_failed",
            f"Delivery of mapping “{mapping}” {last['status']} (run {last['pk']})",
            _short(last["error"]),
            path,
        )
    elif last["pk"] is not None:
        out.healthy.add(key)


def _rejected_finding(mapping: Any, count: int, conf: WorkspaceSettings, path: str, out: _Verdicts) -> None:
    key = f"rejected:mapping:{mapping.pk}"
    if conf.rejected_alert_threshold and count > conf.rejected_alert_threshold:
        out.failing[key] = Finding(
            "rejected",
            f"Mapping “{mapping}” has {count} rejected records (threshold {conf.rejected_alert_threshold})",
            "",
            path,
        )
    else:
        out.healthy.add(key)


def _freshness_finding(mapping: Any, now: Any, conf: WorkspaceSettings, path: str, out: _Verdicts) -> None:
    key = f"freshness:mapping:{mapping.pk}"
    if not conf.freshness_alert_minutes or not mapping.delivers:
        out.healthy.add(key)  # off, or nothing is meant to be delivered (a paused mapping has its own alert)
        return
    oldest = mapping.oldest_pending  # annotated in _mapping_findings: no query per mapping
    age = now - oldest if oldest is not None else timedelta(0)
    if age > timedelta(minutes=conf.freshness_alert_minutes):
        out.failing[key] = Finding(
            "freshness",
            f"Mapping “{mapping}” is {int(age.total_seconds() // 60)} minutes behind "
            f"(threshold {conf.freshness_alert_minutes})",
            "",
            path,
        )
    else:
        out.healthy.add(key)


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
    """Ask for an evaluation on the `alerts` queue once the current transaction commits. Alerting must never
    fail or slow down its caller, nor wait behind (or hold up) syncs and deliveries."""
    if workspace_id is None:
        return
    try:
        handoff.send(handoff.RUN_FINISHED, workspace_id=workspace_id)
    except Exception:
        logger.exception("could not queue the alert evaluation of workspace %s", workspace_id)


def evaluate_logged(*, workspace_id: int) -> None:
    """The task's body: one workspace's evaluation; a failure is logged, the next run or tick tries again."""
    try:
        evaluate(workspace_id=workspace_id)
    except Exception:
        logger.exception("alert evaluation failed for workspace %s", workspace_id)


def evaluate_all() -> int:
    """The beat dispatcher's hook (every minute): freshness grows without any run finishing. One task per
    workspace on the `alerts` queue, so a slow evaluation never delays the dispatcher's other work."""

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


def member_addresses(workspace_id: int) -> set[str]:
    """The verified e-mail addresses of the workspace's members (lower case): the only possible recipients, so
    alert e-mails cannot be pointed at strangers."""
    from allauth.account.models import EmailAddress

    return {
        e.lower()
        for e in EmailAddress.objects.filter(verified=True, user__memberships__workspace_id=workspace_id).values_list(
            "email", flat=True
        )
    }


def has_verified_email(user: Any) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, verified=True).exists()


def slack_escape(text: str) -> str:
    """Slack mrkdwn's control characters escaped (Slack: "escape &, < and >"): a source named "<!channel>" or a
    HubSpot error quoting "<https://evil.example|click>" stays plain text instead of pinging or linking."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def email_subject(alert: Alert) -> str:
    """Our words only: names, error texts and anything else a user or HubSpot wrote stay in the body."""
    if alert.kind == Alert.Kind.TEST:
        return "[hubsync] Test message"
    label = RULE_LABELS.get(alert.rule, "Alert")
    return f"[hubsync] Recovered: {label}" if alert.kind == Alert.Kind.RECOVERED else f"[hubsync] Problem: {label}"


# --- delivery ------------------------------------------------------------------------------------------------


# The beginnings of every error an attempt records (besides "HTTP <status>" and e-mail errors): the log shows
# these and nothing else for a webhook.
OWN_ERRORS = (
    "refused: ",
    "could not connect to the webhook",
    "the webhook did not answer in time",
    "the channel was deleted",
    "none of the channel's addresses",
)


class _Permanent(Exception):
    """Retrying cannot help (the webhook refused the request as invalid, or the channel is gone)."""


def _send(alert: Alert) -> int | None:
    """Send one alert; returns the HTTP status for webhooks. Raises on failure."""
    channel = alert.channel
    if channel is None:
        raise _Permanent("the channel was deleted")
    if channel.kind == AlertChannel.Kind.EMAIL:
        # Checked again at send time: a member who left (or an address added before this check) gets nothing.
        allowed = member_addresses(channel.workspace_id)
        recipients = [r for r in channel.recipients if r.lower() in allowed]
        if not recipients:
            raise _Permanent("none of the channel's addresses belongs to a verified member of this workspace")
        send_mail(
            subject=email_subject(alert),
            message=alert.text,
            from_email=None,
            recipient_list=recipients,
            fail_silently=False,
            connection=get_connection(fail_silently=False, timeout=settings.ALERT_EMAIL_TIMEOUT),
        )
        return None
    url = channel.webhook_url
    try:
        # Checked again at send time: the row may predate the check, or the allow-list may have changed. The
        # connection itself re-checks the address it connects to (hubsync/outbound.py).
        outbound.check_url(url)
        with outbound.session() as session:
            response = session.post(
                url,
                json={"text": slack_escape(alert.text)},
                timeout=(min(3.0, settings.ALERT_WEBHOOK_TIMEOUT), settings.ALERT_WEBHOOK_TIMEOUT),
                headers={"User-Agent": "hubsync-alerts"},
                allow_redirects=False,
                stream=True,
            )
            status = response.status_code
            response.close()  # the body is never read: only the status is kept and shown
    except outbound.RefusedURL as exc:
        raise _Permanent(f"refused: {exc}") from None
    except requests.Timeout:
        raise _Transient("the webhook did not answer in time") from None
    except requests.RequestException:
        # No exception text: it would tell open ports from closed ones and quote addresses.
        raise _Transient("could not connect to the webhook") from None
    if 200 <= status < 300:
        return status
    error = _WebhookError(status)
    if 300 <= status < 400 or (400 <= status < 500 and status not in (408, 429)):
        raise _Permanent(str(error)) from error
    raise error


class _Transient(Exception):
    """Worth another attempt; the message is ours (no remote text, no address)."""


class _WebhookError(_Transient):
    def __init__(self, status: int) -> None:
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        super().__init__(f"HTTP {status}{hint}")
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
    except _Transient as exc:
        entry["error"] = str(exc)
        entry["status_code"] = getattr(exc, "status", None)
        outcome = "failed" if last else "retry"
    except Exception as exc:  # e-mail: the SMTP server's answer, which may quote addresses or credentials
        entry["error"] = redact(f"{type(exc).__name__}: {exc}")[:500]
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

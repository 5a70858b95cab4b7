# ruff: noqa: F811 (fixtures imported from tests/mappings/conftest.py are used as arguments)
"""Alerts: every rule fires once per failure streak and once on recovery, through email (locmem) and a webhook
(a loopback HTTP server standing in for Slack); delivery retries are bounded and recorded; the webhook URL
never shows."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from hubsync.models import Alert, AlertChannel, AlertState, AuditEvent, WorkspaceSettings
from mappings.models import DeliveryRun, DeliveryState, Mapping, ProfileSpace
from monitoring import alerts
from sources.models import Source, SyncRun
from tests.mappings.conftest import (  # noqa: F401 (fixtures)
    CONTACT_SCHEMA,
    DEFAULT_TRAITS,
    Mirror,
    contact_props,
    contacts_model,
    destination,
    mirror,
    source,
)

SECRET_PATH = "/services/T0SECRET/B0SECRET/xyzSECRETtoken"


class Hook:
    """A Slack-like incoming webhook on 127.0.0.1: records each POST, answers with `statuses` in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append(
                    {"path": self.path, "type": self.headers.get("Content-Type"), "json": json.loads(body)}
                )
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"invalid_payload")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def texts(self) -> list[str]:
        return [r["json"]["text"] for r in self.requests]


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


@pytest.fixture(autouse=True)
def _run_tasks_inline(monkeypatch, settings, django_capture_on_commit_callbacks):
    """Alerts are queued after commit; run the task in-process (retries included) when that happens."""
    from monitoring.tasks import send_alert

    settings.ALERT_RETRY_BASE_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setattr(send_alert, "apply_async", lambda args=(), kwargs=None, **_: send_alert.apply(args, kwargs))


@pytest.fixture
def run_evaluate(django_capture_on_commit_callbacks, workspace):
    def run() -> dict:
        with django_capture_on_commit_callbacks(execute=True):
            return alerts.evaluate(workspace_id=workspace.pk)

    return run


@pytest.fixture
def channels(workspace, hook):
    email = AlertChannel.objects.create(workspace=workspace, kind="email", name="Ops mail", emails="ops@acme.test")
    webhook = AlertChannel.objects.create(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    return email, webhook


@pytest.fixture
def space(destination) -> ProfileSpace:
    return ProfileSpace.objects.create(destination=destination, name="Space", write_key="wk-test", region="sandbox")


@pytest.fixture
def mapping(destination, space, contacts_model) -> Mapping:
    return Mapping.objects.create(
        destination=destination,
        data_model=contacts_model,
        profile_space=space,
        name="Contacts to Segment",
        identifiers={"user_id": "email"},
        traits=DEFAULT_TRAITS,
        enabled=True,
    )


def _sync(source: Source, status: str, error: str = "") -> SyncRun:
    now = timezone.now()
    return SyncRun.objects.create(
        source=source, trigger="scheduled", status=status, error=error, started_at=now, finished_at=now
    )


def _delivery(mapping: Mapping, status: str, error: str = "") -> DeliveryRun:
    now = timezone.now()
    return DeliveryRun.objects.create(mapping=mapping, status=status, error=error, started_at=now, finished_at=now)


# --- streaks ------------------------------------------------------------------------------------------------


def test_failed_sync_alerts_once_per_streak_and_once_on_recovery(source, channels, hook, run_evaluate):
    _sync(source, "failed", "HubSpot answered 502")
    assert run_evaluate()["opened"] == [f"sync_failed:source:{source.pk}"]
    assert len(mail.outbox) == 1 and len(hook.requests) == 1
    assert "Sync of source “HubSpot” failed" in mail.outbox[0].subject
    assert "HubSpot answered 502" in hook.texts[0]

    # More failures and partial runs in the same streak (retries, the next scheduled runs): nothing more.
    _sync(source, "failed", "HubSpot answered 503")
    _sync(source, "partial", "deals: 403")
    for _ in range(3):
        assert run_evaluate() == {"opened": [], "closed": []}
    assert len(mail.outbox) == 1 and len(hook.requests) == 1

    _sync(source, "succeeded")
    assert run_evaluate()["closed"] == [f"sync_failed:source:{source.pk}"]
    assert len(mail.outbox) == 2 and len(hook.requests) == 2
    assert hook.texts[1].startswith("[hubsync · Acme] ✅ Recovered: Sync of source")
    run_evaluate()
    assert len(hook.requests) == 2  # recovered stays quiet

    _sync(source, "partial", "contacts: 500")  # a new streak: a new alert
    run_evaluate()
    assert len(hook.requests) == 3 and "partial" in hook.texts[2]
    assert Alert.objects.filter(status="sent").count() == 6


def test_webhook_gets_slack_compatible_json(source, channels, hook, run_evaluate):
    _sync(source, "failed", "boom")
    run_evaluate()
    request = hook.requests[0]
    assert request["path"] == SECRET_PATH
    assert request["type"] == "application/json"
    assert set(request["json"]) == {"text"} and isinstance(request["json"]["text"], str)
    assert reverse("sources:detail", args=[source.pk]) in request["json"]["text"]  # a link to look at
    alert = Alert.objects.get(channel=channels[1])
    assert alert.status == "sent" and alert.attempts[0]["ok"] and alert.attempts[0]["status_code"] == 200


def test_needs_reconnect_alerts_once_and_holds_the_sync_failure(source, channels, hook, run_evaluate):
    source.status, source.status_detail = Source.Status.NEEDS_RECONNECT, "The refresh token was revoked."
    source.save()
    _sync(source, "failed", "HubSpot access was revoked: reconnect the source")
    assert run_evaluate()["opened"] == [f"reconnect:source:{source.pk}"]  # one message for one cause
    run_evaluate()
    assert len(hook.requests) == 1 and "needs to be reconnected" in hook.texts[0]
    source.status = Source.Status.OK
    source.save()
    _sync(source, "succeeded")
    assert run_evaluate()["closed"] == [f"reconnect:source:{source.pk}"]
    assert len(hook.requests) == 2


def test_failed_delivery_alerts_once_and_recovers(mapping, channels, hook, run_evaluate):
    _delivery(mapping, "failed", "Segment answered 401")
    _delivery(mapping, "failed", "Segment answered 401")
    assert run_evaluate()["opened"] == [f"delivery_failed:mapping:{mapping.pk}"]
    _delivery(mapping, "partial", "one batch refused")
    run_evaluate()
    assert len(hook.requests) == 1 and "Delivery of mapping “Contacts to Segment” failed" in hook.texts[0]
    _delivery(mapping, "succeeded")
    assert run_evaluate()["closed"] == [f"delivery_failed:mapping:{mapping.pk}"]
    assert len(hook.requests) == 2
    # A mapping switched off while failing: its streak closes without a "recovered" message.
    _delivery(mapping, "failed", "Segment answered 401")
    run_evaluate()
    assert len(hook.requests) == 3
    Mapping.objects.filter(pk=mapping.pk).update(enabled=False)
    assert run_evaluate()["closed"] == [f"delivery_failed:mapping:{mapping.pk}"]
    assert len(hook.requests) == 3


def test_drift_pause_alerts(mapping, channels, hook, run_evaluate):
    Mapping.objects.filter(pk=mapping.pk).update(paused_reason="drift", paused_at=timezone.now())
    assert run_evaluate()["opened"] == [f"drift:mapping:{mapping.pk}"]
    run_evaluate()
    assert len(hook.requests) == 1 and "was paused" in hook.texts[0]
    Mapping.objects.filter(pk=mapping.pk).update(paused_reason="", paused_at=None)
    assert run_evaluate()["closed"] == [f"drift:mapping:{mapping.pk}"]


def test_freshness_beyond_threshold(mapping, mirror, channels, hook, run_evaluate, workspace):
    WorkspaceSettings.objects.create(workspace=workspace, freshness_alert_minutes=30)
    record = mirror.put(1, contact_props(1))
    assert run_evaluate()["opened"] == []  # just arrived: fresh
    type(record).objects.filter(pk=record.pk).update(synced_at=timezone.now() - timedelta(minutes=45))
    assert run_evaluate()["opened"] == [f"freshness:mapping:{mapping.pk}"]
    assert "45 minutes behind" in hook.texts[0]
    run_evaluate()
    assert len(hook.requests) == 1
    Mapping.objects.filter(pk=mapping.pk).update(watermark=record.change_seq)  # delivered
    assert run_evaluate()["closed"] == [f"freshness:mapping:{mapping.pk}"]
    # A disabled mapping is not late: nothing is meant to reach it.
    record2 = mirror.put(2, contact_props(2))
    type(record2).objects.filter(pk=record2.pk).update(synced_at=timezone.now() - timedelta(hours=5))
    Mapping.objects.filter(pk=mapping.pk).update(enabled=False)
    assert run_evaluate()["opened"] == []


def test_rejected_records_above_threshold(mapping, channels, hook, run_evaluate, workspace):
    WorkspaceSettings.objects.create(workspace=workspace, rejected_alert_threshold=2)
    for n in range(2):
        DeliveryState.objects.create(mapping=mapping, object_id=n, status="rejected", error="no user id")
    assert run_evaluate()["opened"] == []  # at the threshold, not above it
    DeliveryState.objects.create(mapping=mapping, object_id=9, status="rejected", error="no user id")
    assert run_evaluate()["opened"] == [f"rejected:mapping:{mapping.pk}"]
    assert "3 rejected records" in hook.texts[0]
    DeliveryState.objects.filter(mapping=mapping).update(status="delivered")
    assert run_evaluate()["closed"] == [f"rejected:mapping:{mapping.pk}"]


def test_a_deleted_object_closes_its_streak_silently(source, channels, hook, run_evaluate):
    _sync(source, "failed")
    run_evaluate()
    key = f"sync_failed:source:{source.pk}"
    source.delete()
    assert run_evaluate()["closed"] == [key]
    assert len(hook.requests) == 1


def test_an_open_streak_is_not_reopened(source, channels, hook, run_evaluate):
    # An evaluation that finds the streak already open (another one just opened it) sends nothing: the
    # opening is a compare-and-set on is_open.
    _sync(source, "failed")
    run_evaluate()
    AlertState.objects.filter(is_open=True).update(is_open=True)
    assert run_evaluate()["opened"] == []
    assert len(hook.requests) == 1


def test_disabled_channel_gets_nothing(source, channels, hook, run_evaluate):
    AlertChannel.objects.filter(kind="webhook").update(enabled=False)
    _sync(source, "failed")
    run_evaluate()
    assert hook.requests == [] and len(mail.outbox) == 1


# --- hooks -------------------------------------------------------------------------------------------------


def test_a_finished_delivery_evaluates_alerts(
    mapping, mirror, channels, hook, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The delivery engine's completion path hands the evaluation over: Segment unreachable -> one alert."""
    from mappings.deliver import deliver
    from monitoring.tasks import run_finished

    settings.BASE_URL = "http://127.0.0.1:9"  # the sandbox region posts here: nothing listens
    settings.SEGMENT_MAX_ATTEMPTS = 1
    monkeypatch.setattr(run_finished, "apply_async", lambda args=(), kwargs=None, **_: run_finished.apply(args, kwargs))
    mirror.put(1, contact_props(1))
    with django_capture_on_commit_callbacks(execute=True):
        run = deliver(mapping_id=mapping.pk)
    assert run.status == "failed"
    state = AlertState.objects.get(key=f"delivery_failed:mapping:{mapping.pk}")
    assert state.is_open and Alert.objects.filter(state=state).count() == 2


def test_the_beat_dispatcher_evaluates_every_workspace(source, channels, hook, django_capture_on_commit_callbacks):
    from hubsync.dispatch import dispatch_due, dispatchers

    assert alerts.evaluate_all in dispatchers()
    _sync(source, "failed")
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_due()
    assert len(hook.requests) == 1


# --- delivery of alerts ------------------------------------------------------------------------------------


def test_retries_are_bounded_and_recorded(source, workspace, hook, settings, run_evaluate):
    settings.ALERT_MAX_ATTEMPTS = 3
    AlertChannel.objects.create(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    hook.statuses = [500] * 10
    _sync(source, "failed")
    run_evaluate()
    alert = Alert.objects.get()
    assert alert.status == "failed"
    assert len(hook.requests) == 3 and len(alert.attempts) == 3
    assert [a["status_code"] for a in alert.attempts] == [500, 500, 500]
    assert all(not a["ok"] and "HTTP 500" in a["error"] for a in alert.attempts)


def test_a_transient_failure_is_retried_until_sent(source, channels, hook, run_evaluate):
    hook.statuses = [503, 429]
    _sync(source, "failed")
    run_evaluate()
    alert = Alert.objects.get(channel=channels[1])
    assert alert.status == "sent" and [a["status_code"] for a in alert.attempts] == [503, 429, 200]


def test_a_refused_webhook_fails_fast(source, channels, hook, run_evaluate):
    hook.statuses = [404]
    _sync(source, "failed")
    run_evaluate()
    alert = Alert.objects.get(channel=channels[1])
    assert alert.status == "failed" and len(alert.attempts) == 1 and alert.attempts[0]["status_code"] == 404


def test_an_unreachable_webhook_never_logs_its_url(source, workspace, settings, run_evaluate, caplog):
    settings.ALERT_MAX_ATTEMPTS = 2
    url = f"http://127.0.0.1:9{SECRET_PATH}"
    AlertChannel.objects.create(workspace=workspace, kind="webhook", name="Slack", webhook_url=url)
    _sync(source, "failed")
    with caplog.at_level(logging.DEBUG):
        run_evaluate()
    alert = Alert.objects.get()
    assert alert.status == "failed" and len(alert.attempts) == 2
    assert "ConnectionError" in alert.attempts[0]["error"]
    stored = json.dumps(alert.attempts)
    assert "SECRET" not in stored and "SECRET" not in caplog.text


# --- the Alerts page ---------------------------------------------------------------------------------------


def test_admin_adds_a_webhook_and_its_url_never_shows(admin_client_, workspace, hook):
    page = reverse("alerts")
    response = admin_client_.post(page, {"kind": "webhook", "name": "Slack #ops", "webhook_url": hook.url})
    assert response.status_code == 302
    channel = AlertChannel.objects.get()
    assert channel.webhook_url == hook.url
    html = admin_client_.get(page).content.decode()
    assert "Slack #ops" in html and "SECRET" not in html and "webhook URL saved" in html
    assert "SECRET" not in json.dumps(list(AuditEvent.objects.values_list("changes", flat=True)))
    # A form error re-renders the page without echoing the URL back either.
    response = admin_client_.post(page, {"kind": "webhook", "name": "", "webhook_url": hook.url})
    assert response.status_code == 400 and "SECRET" not in response.content.decode()


def test_email_channel_and_send_test_button(admin_client_, workspace, django_capture_on_commit_callbacks):
    admin_client_.post(reverse("alerts"), {"kind": "email", "name": "Ops", "emails": "a@acme.test, b@acme.test"})
    channel = AlertChannel.objects.get()
    assert channel.recipients == ["a@acme.test", "b@acme.test"]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(reverse("alert_channel_test", args=[channel.pk]))
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["a@acme.test", "b@acme.test"]
    assert "Test message" in mail.outbox[0].body
    alert = Alert.objects.get()
    assert alert.kind == "test" and alert.status == "sent"
    assert "Test message" in admin_client_.get(reverse("alerts")).content.decode()  # the log shows it


def test_send_test_to_webhook(admin_client_, workspace, hook, django_capture_on_commit_callbacks):
    channel = AlertChannel.objects.create(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[channel.pk]))
    assert len(hook.requests) == 1 and "Test message" in hook.texts[0]


def test_invalid_channels_are_refused(admin_client_):
    bad = admin_client_.post(reverse("alerts"), {"kind": "email", "name": "x", "emails": "not-an-address"})
    assert bad.status_code == 400 and "not a valid email address" in bad.content.decode()
    bad = admin_client_.post(reverse("alerts"), {"kind": "webhook", "name": "x", "webhook_url": ""})
    assert bad.status_code == 400
    assert not AlertChannel.objects.exists()


def test_a_bad_webhook_url_gets_one_clear_error(admin_client_):
    bad = admin_client_.post(reverse("alerts"), {"kind": "webhook", "name": "x", "webhook_url": "not a url at all"})
    errors = bad.context["form"].errors
    # Not also "give the webhook URL": the field was given, it is just not a URL.
    assert bad.status_code == 400 and list(errors) == ["webhook_url"] and len(errors["webhook_url"]) == 1
    assert "This is not a web address" in errors["webhook_url"][0]
    # An email channel ignores the (hidden) webhook field, whatever it holds.
    ok = admin_client_.post(
        reverse("alerts"), {"kind": "email", "name": "Ops", "emails": "ops@acme.test", "webhook_url": "junk here"}
    )
    assert ok.status_code == 302
    assert AlertChannel.objects.get().webhook_url == ""


def test_log_fragment_polls_while_a_message_is_queued(admin_client_, workspace):
    channel = AlertChannel.objects.create(workspace=workspace, kind="email", name="Ops", emails="ops@acme.test")
    alert = alerts.send_test(channel=channel)  # queued: the task runs after commit, which never comes here
    page = admin_client_.get(reverse("alerts")).content.decode()
    assert f'hx-get="{reverse("alerts_log")}"' in page and "waiting for a worker" in page
    fragment = admin_client_.get(reverse("alerts_log"), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and 'hx-trigger="every 2s"' in fragment.content.decode()
    assert alerts.attempt(alert_id=alert.pk, last=False) == "sent"
    fragment = admin_client_.get(reverse("alerts_log"), HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert fragment.status_code == 286 and "hx-trigger" not in html and "Sent" in html  # done: stop polling
    assert 'hx-get="' not in admin_client_.get(reverse("alerts")).content.decode().split('id="alert-log"')[1][:80]


def test_open_problems_name_the_rule_and_link_to_the_object(
    source, mapping, channels, hook, owner_client, run_evaluate
):
    _sync(source, "failed", "HubSpot answered 502")
    _delivery(mapping, "failed", "Segment answered 401")
    Mapping.objects.filter(pk=mapping.pk).update(paused_reason="drift", paused_at=timezone.now())
    run_evaluate()
    html = owner_client.get(reverse("alerts")).content.decode()
    assert ">Sync failed</span>" in html and ">Delivery failed</span>" in html and ">Schema change</span>" in html
    assert f'href="{reverse("sources:detail", args=[source.pk])}"' in html
    assert f'href="{reverse("mappings:drift", args=[mapping.pk])}"' in html
    assert f'href="{reverse("mappings:mapping_detail", args=[mapping.pk])}"' in html
    # A failed delivery's message points at the mapping page (its runs), not at the schema-change page.
    by_rule = {text.split("🔴 ")[1].split(" ")[0]: text for text in hook.texts}
    assert set(by_rule) == {"Sync", "Delivery", "Mapping"}
    assert by_rule["Delivery"].endswith(reverse("mappings:mapping_detail", args=[mapping.pk]))
    assert by_rule["Mapping"].endswith(reverse("mappings:drift", args=[mapping.pk]))


def test_viewer_reads_but_cannot_change_channels(viewer_client, workspace, channels):
    html = viewer_client.get(reverse("alerts")).content.decode()
    assert "Ops mail" in html and "Send test" not in html and "SECRET" not in html
    assert (
        viewer_client.post(reverse("alerts"), {"kind": "email", "name": "x", "emails": "x@x.test"}).status_code == 403
    )
    for name in ("alert_channel_test", "alert_channel_toggle", "alert_channel_delete"):
        assert viewer_client.post(reverse(name, args=[channels[0].pk])).status_code == 403
    assert AlertChannel.objects.count() == 2 and not Alert.objects.exists()


def test_outsider_gets_404(outsider_client, channels):
    for name in ("alert_channel_test", "alert_channel_toggle", "alert_channel_delete"):
        assert outsider_client.post(reverse(name, args=[channels[0].pk])).status_code == 404
    assert AlertChannel.objects.filter(enabled=True).count() == 2 and not Alert.objects.exists()


def test_toggle_and_delete(admin_client_, channels):
    email, _ = channels
    admin_client_.post(reverse("alert_channel_toggle", args=[email.pk]))
    email.refresh_from_db()
    assert not email.enabled
    admin_client_.post(reverse("alert_channel_delete", args=[email.pk]))
    assert not AlertChannel.objects.filter(pk=email.pk).exists()
    assert AuditEvent.objects.filter(verb__in=["disable", "delete"]).count() == 2


def test_monitoring_settings_on_the_settings_page(owner_client, admin_client_, workspace):
    url = reverse("workspace_settings")
    assert "Pause mappings on schema drift" in owner_client.get(url).content.decode()
    response = owner_client.post(
        url, {"form": "monitoring", "freshness_alert_minutes": "15", "rejected_alert_threshold": "0"}
    )
    assert response.status_code == 302
    conf = WorkspaceSettings.objects.get(workspace=workspace)
    assert not conf.drift_pauses_mappings and conf.freshness_alert_minutes == 15 and conf.rejected_alert_threshold == 0
    assert workspace.name == "Acme"  # the rename form was not touched
    assert admin_client_.post(url, {"form": "monitoring", "freshness_alert_minutes": "1"}).status_code == 403


def test_evaluation_cost_does_not_grow_with_run_history(source, mapping, run_evaluate):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            run_evaluate()
        return len(ctx)

    _sync(source, "succeeded")
    _delivery(mapping, "succeeded")
    few = queries()
    for _ in range(30):
        _sync(source, "succeeded")
        _delivery(mapping, "succeeded")
    assert queries() == few

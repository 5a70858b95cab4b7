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
from monitoring import alerts, services
from sources.models import Source, SyncRun
from tests.factories import (
    AlertChannelFactory,
    DeliveryRunFactory,
    DeliveryStateFactory,
    MappingFactory,
    ProfileSpaceFactory,
    SyncRunFactory,
)
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
    """Alerts are queued after commit; run the task in-process (retries included) when that happens. The
    evaluation after a run is a task on the alerts queue too."""
    from monitoring.tasks import evaluate_alerts, send_alert

    settings.ALERT_RETRY_BASE_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # The Hook below listens on 127.0.0.1: a test-only allowance (ignored unless DEBUG or HUBSYNC_TESTING).
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    for task in (send_alert, evaluate_alerts):
        monkeypatch.setattr(task, "apply_async", lambda args=(), kwargs=None, _t=task, **_: _t.apply(args, kwargs))


def verify(user):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(user=user, email=user.email, defaults={"verified": True, "primary": True})
    return user


# Channels are added and tested from verified accounts only: the shared role fixtures, verified.
@pytest.fixture
def admin_user(admin_user):
    return verify(admin_user)


@pytest.fixture
def owner(owner):
    return verify(owner)


@pytest.fixture
def recipients(workspace):
    """Alert e-mails go to verified members only: these addresses belong to members of Acme."""
    from hubsync.models import Membership
    from tests.conftest import make_user

    for email in ("ops@acme.test", "a@acme.test", "b@acme.test"):
        Membership.objects.create(user=verify(make_user(email)), workspace=workspace, role="viewer")


@pytest.fixture
def run_evaluate(django_capture_on_commit_callbacks, workspace):
    def run() -> dict:
        with django_capture_on_commit_callbacks(execute=True):
            return alerts.evaluate(workspace_id=workspace.pk)

    return run


@pytest.fixture
def channels(workspace, hook, recipients):
    email = AlertChannelFactory(workspace=workspace, kind="email", name="Ops mail", emails="ops@acme.test")
    webhook = AlertChannelFactory(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    return email, webhook


@pytest.fixture
def space(destination) -> ProfileSpace:
    return ProfileSpaceFactory(destination=destination, name="Space", write_key="wk-test", region="sandbox")


@pytest.fixture
def mapping(destination, space, contacts_model) -> Mapping:
    return MappingFactory(
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
    return SyncRunFactory(
        source=source, trigger="scheduled", status=status, error=error, started_at=now, finished_at=now
    )


def _delivery(mapping: Mapping, status: str, error: str = "") -> DeliveryRun:
    now = timezone.now()
    return DeliveryRunFactory(mapping=mapping, status=status, error=error, started_at=now, finished_at=now)


# --- streaks ------------------------------------------------------------------------------------------------


def test_failed_sync_alerts_once_per_streak_and_once_on_recovery(source, channels, hook, run_evaluate):
    _sync(source, "failed", "HubSpot answered 502")
    assert run_evaluate()["opened"] == [f"sync_failed:source:{source.pk}"]
    assert len(mail.outbox) == 1 and len(hook.requests) == 1
    assert mail.outbox[0].subject == "[hubsync] Problem: Sync failed"  # our words only: names stay in the body
    assert "Sync of source “HubSpot” failed" in mail.outbox[0].body
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
        DeliveryStateFactory(mapping=mapping, object_id=n, status="rejected", error="no user id")
    assert run_evaluate()["opened"] == []  # at the threshold, not above it
    DeliveryStateFactory(mapping=mapping, object_id=9, status="rejected", error="no user id")
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
    mapping, mirror, channels, hook, settings, django_capture_on_commit_callbacks
):
    """The delivery engine's completion path hands the evaluation over: Segment unreachable -> one alert."""
    from mappings.delivery import deliver

    settings.BASE_URL = "http://127.0.0.1:9"  # the sandbox region posts here: nothing listens
    settings.SEGMENT_MAX_ATTEMPTS = 1
    mirror.put(1, contact_props(1))
    with django_capture_on_commit_callbacks(execute=True):  # the evaluation is queued once the run is committed
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
    AlertChannelFactory(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
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
    AlertChannelFactory(workspace=workspace, kind="webhook", name="Slack", webhook_url=url)
    _sync(source, "failed")
    with caplog.at_level(logging.DEBUG):
        run_evaluate()
    alert = Alert.objects.get()
    assert alert.status == "failed" and len(alert.attempts) == 2
    # Only that it failed: no exception text (it would tell closed ports from open ones), no address.
    assert alert.attempts[0]["error"] == "could not connect to the webhook"
    stored = json.dumps(alert.attempts)
    assert "SECRET" not in stored and "SECRET" not in caplog.text and "127.0.0.1" not in stored


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


def test_email_channel_and_send_test_button(admin_client_, workspace, recipients, django_capture_on_commit_callbacks):
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
    channel = AlertChannelFactory(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[channel.pk]))
    assert len(hook.requests) == 1 and "Test message" in hook.texts[0]


def test_invalid_channels_are_refused(admin_client_):
    bad = admin_client_.post(reverse("alerts"), {"kind": "email", "name": "x", "emails": "not-an-address"})
    assert bad.status_code == 400 and "not a valid email address" in bad.content.decode()
    bad = admin_client_.post(reverse("alerts"), {"kind": "webhook", "name": "x", "webhook_url": ""})
    assert bad.status_code == 400
    assert not AlertChannel.objects.exists()


def test_a_bad_webhook_url_gets_one_clear_error(admin_client_, recipients):
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


def test_log_fragment_polls_while_a_message_is_queued(admin_client_, workspace, recipients):
    channel = AlertChannelFactory(workspace=workspace, kind="email", name="Ops", emails="ops@acme.test")
    alert = services.send_test(channel=channel)  # queued: the task runs after commit, which never comes here
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


# --- issue 11: SSRF through webhook channels ----------------------------------------------------------------


@pytest.fixture
def production_webhooks(settings):
    """What a production server allows: no loopback allowance (DEBUG is off under pytest)."""
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = False


SSRF_URLS = [
    "http://127.0.0.1:{port}/x",
    "https://127.0.0.1:{port}/x",
    "https://localhost:{port}/x",
    "https://2130706433:{port}/x",
    "https://0177.0.0.1:{port}/x",
    "https://[::ffff:127.0.0.1]:{port}/x",
    "https://[::1]:{port}/x",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/x",
    "https://[fd00::1]/x",
    "ftp://127.0.0.1:{port}/x",
]


def test_internal_webhook_urls_are_refused_when_saved(admin_client_, hook, production_webhooks):
    port = hook.server.server_address[1]
    for template in SSRF_URLS:
        url = template.format(port=port)
        response = admin_client_.post(reverse("alerts"), {"kind": "webhook", "name": "x", "webhook_url": url})
        assert response.status_code == 400, url
        errors = response.context["form"].errors["webhook_url"]
        assert "cannot be used" in errors[0] or "not a web address" in errors[0], (url, errors)
    assert not AlertChannel.objects.exists()
    assert hook.requests == []


def test_a_stored_internal_webhook_is_refused_when_sent(
    admin_client_, workspace, hook, production_webhooks, django_capture_on_commit_callbacks
):
    """A channel saved before the check existed (or by any other path): "Send test" connects to nothing."""
    channel = AlertChannelFactory(workspace=workspace, kind="webhook", name="Old", webhook_url=hook.url)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[channel.pk]))
    alert = Alert.objects.get()
    assert hook.requests == []
    assert alert.status == "failed" and len(alert.attempts) == 1  # permanent: not retried
    assert alert.attempts[0]["error"].startswith("refused: ") and "127.0.0.1" not in alert.attempts[0]["error"]


def test_the_log_shows_the_status_code_only(admin_client_, workspace, channels, hook, source, run_evaluate):
    """Not the body (the old log quoted 200 characters of whatever the URL answered)."""
    hook.statuses = [400]
    _sync(source, "failed")
    run_evaluate()
    webhook_alert = Alert.objects.get(channel=channels[1])
    assert webhook_alert.status == "failed" and webhook_alert.attempts[0]["error"] == "HTTP 400"
    html = admin_client_.get(reverse("alerts")).content.decode()
    assert "HTTP 400" in html and "invalid_payload" not in html


def test_redirects_are_not_followed(workspace, channels, hook, source, run_evaluate):
    hook.statuses = [302]
    _sync(source, "failed")
    run_evaluate()
    alert = Alert.objects.get(channel=channels[1])
    assert len(hook.requests) == 1 and alert.status == "failed" and len(alert.attempts) == 1
    assert alert.attempts[0]["error"].startswith("HTTP 302")


# --- issue 11: mail relay and noisy neighbour ---------------------------------------------------------------


def test_an_unverified_account_cannot_add_or_test_channels(workspace, recipients):
    from tests.conftest import _client_for, _member

    unverified = _client_for(_member(workspace, "new-admin@acme.test", "admin"))
    response = unverified.post(reverse("alerts"), {"kind": "email", "name": "x", "emails": "ops@acme.test"})
    assert response.status_code == 403 and "Verify your e-mail address" in response.content.decode()
    assert not AlertChannel.objects.exists()
    channel = AlertChannelFactory(workspace=workspace, kind="email", name="Ops", emails="ops@acme.test")
    response = unverified.post(reverse("alert_channel_test", args=[channel.pk]), follow=True)
    assert "Verify your e-mail address" in response.content.decode() and not Alert.objects.exists()


def test_email_recipients_must_be_verified_members(admin_client_, workspace, recipients):
    from tests.conftest import _member

    _member(workspace, "unverified@acme.test", "viewer")  # a member, but the address is not proved
    for emails in ("victim@elsewhere.test", "ops@acme.test, victim@elsewhere.test", "unverified@acme.test"):
        response = admin_client_.post(reverse("alerts"), {"kind": "email", "name": "x", "emails": emails})
        assert response.status_code == 400, emails
        assert "not the verified address of a member" in response.content.decode()
    assert not AlertChannel.objects.exists()
    ok = admin_client_.post(reverse("alerts"), {"kind": "email", "name": "x", "emails": "OPS@acme.test"})
    assert ok.status_code == 302


def test_stored_non_member_recipients_get_nothing(
    admin_client_, workspace, recipients, django_capture_on_commit_callbacks
):
    channel = AlertChannelFactory(
        workspace=workspace, kind="email", name="Ops", emails="victim@elsewhere.test, ops@acme.test"
    )
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[channel.pk]))
    assert [m.to for m in mail.outbox] == [["ops@acme.test"]]
    only_strangers = AlertChannelFactory(workspace=workspace, kind="email", name="Spam", emails="victim@elsewhere.test")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[only_strangers.pk]))
    assert len(mail.outbox) == 1
    assert Alert.objects.get(channel=only_strangers).status == "failed"


def test_send_test_is_rate_limited_per_channel_and_per_workspace(
    admin_client_, workspace, recipients, settings, django_capture_on_commit_callbacks
):
    settings.ALERT_TEST_LIMIT_PER_CHANNEL, settings.ALERT_TEST_LIMIT_PER_WORKSPACE = 2, 3
    a, b = (AlertChannelFactory(workspace=workspace, kind="email", name=n, emails="ops@acme.test") for n in "ab")
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(4):
            response = admin_client_.post(reverse("alert_channel_test", args=[a.pk]), follow=True)
    assert Alert.objects.filter(channel=a).count() == 2 and len(mail.outbox) == 2
    assert "This channel already got 2 test messages" in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            response = admin_client_.post(reverse("alert_channel_test", args=[b.pk]), follow=True)
    assert Alert.objects.filter(channel=b).count() == 1 and len(mail.outbox) == 3
    assert "This workspace already sent 3 test messages" in response.content.decode()
    # The window passes: tests are possible again.
    Alert.objects.update(created_at=timezone.now() - timedelta(seconds=settings.ALERT_TEST_WINDOW_SECONDS + 1))
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[b.pk]))
    assert len(mail.outbox) == 4


def test_user_text_stays_out_of_email_subjects(
    admin_client_, workspace, recipients, django_capture_on_commit_callbacks
):
    workspace.name = "WIN A PRIZE at evil.example"
    workspace.save()
    channel = AlertChannelFactory(
        workspace=workspace, kind="email", name="Claim your reward now", emails="ops@acme.test"
    )
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(reverse("alert_channel_test", args=[channel.pk]))
    assert mail.outbox[0].subject == "[hubsync] Test message"


def test_slack_mrkdwn_is_escaped(workspace, hook, recipients, source, run_evaluate):
    AlertChannelFactory(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    Source.objects.filter(pk=source.pk).update(name="<!channel> & co")
    _sync(source, "failed", "HubSpot says <https://evil.example|click here> <!here>")
    run_evaluate()
    text = hook.texts[0]
    assert "&lt;!channel&gt; &amp; co" in text and "&lt;https://evil.example|click here&gt; &lt;!here&gt;" in text
    assert "<" not in text and ">" not in text
    # The stored message (log page, e-mail) keeps the plain text.
    assert "<!channel> & co" in Alert.objects.get().text


def test_alert_tasks_run_on_their_own_queue_with_short_limits():
    from pathlib import Path

    from hubsync.celery import app
    from monitoring.tasks import evaluate_alerts, send_alert

    for task in (send_alert, evaluate_alerts):
        assert app.amqp.router.route({}, task.name)["queue"].name == "alerts"
        assert task.time_limit and task.time_limit <= 60 and task.soft_time_limit < task.time_limit
    assert app.amqp.router.route({}, "sources.run_sync")["queue"].name == "extract"
    assert "alerts" in {q.name for q in app.conf.task_queues}
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    assert "-Q extract,deliver,alerts" in procfile


def test_a_finished_run_queues_the_evaluation_instead_of_running_it(
    workspace, source, monkeypatch, django_capture_on_commit_callbacks
):
    from monitoring.tasks import evaluate_alerts

    queued: list[int] = []
    monkeypatch.setattr(
        evaluate_alerts, "apply_async", lambda args=(), kwargs=None, **_: queued.append(kwargs["workspace_id"])
    )
    with django_capture_on_commit_callbacks() as callbacks:
        alerts.evaluate_safely(workspace_id=workspace.pk)
    assert queued == [] and len(callbacks) == 1  # queued once the run's bookkeeping is committed
    callbacks[0]()
    assert queued == [workspace.pk] and not Alert.objects.exists()


def test_the_log_hides_bodies_and_connection_errors_stored_before(admin_client_, workspace, channels):
    """Rows written before the fix quoted the webhook's body and requests' connection errors."""
    Alert.objects.create(
        workspace=workspace,
        channel=channels[1],
        kind="test",
        text="t",
        status="failed",
        attempts=[
            {"ok": False, "status_code": 500, "error": "HTTP 500: <html>LEAKBODY root:x:0:0"},
            {
                "ok": False,
                "status_code": None,
                "error": "ConnectionError: HTTPConnectionPool(host='10.9.8.7', port=6379)",
            },
            {"ok": False, "status_code": 302, "error": "HTTP 302 (redirects are not followed)"},
        ],
    )
    html = admin_client_.get(reverse("alerts")).content.decode()
    assert "LEAKBODY" not in html and "10.9.8.7" not in html and "6379" not in html
    assert "HTTP 500" in html and "could not connect to the webhook" in html
    assert "HTTP 302 · (redirects are not followed)" in html

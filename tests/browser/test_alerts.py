"""Settings → Alerts in Chromium, as an owner would use it: open it from the sidebar, add a webhook channel (a real
HTTP endpoint on 127.0.0.1 standing in for Slack) and an email channel through the form, send a test to each and
read the outcome on the page; then HubSpot starts failing, "Sync now" runs the real extraction engine twice (each
HubSpot call retried), and exactly one problem alert reaches each channel and shows in the log and the open
problems; HubSpot recovers and one recovery alert follows. Form errors, delete confirmation and the viewer's
read-only page too."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from hubsync.models import Alert, AlertChannel, AlertState
from monitoring import alerts
from sources.models import Source, SyncRun
from tests.browser.conftest import log_in, screenshot
from tests.factories import AlertChannelFactory, SourceFactory, SyncRunFactory
from tests.monitoring.test_alerts import SECRET_PATH, Hook
from tests.sources.extract_helpers import make_source

pytestmark = pytest.mark.browser

PORTAL = 3621


@pytest.fixture
def hook(settings):
    # The webhook listens on 127.0.0.1: a test-only allowance (ignored unless DEBUG or HUBSYNC_TESTING).
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def members(workspace):
    """Channels are added from verified accounts, and alert e-mails go to verified members only."""
    from hubsync.models import Membership
    from tests.conftest import make_user
    from tests.monitoring.test_alerts import verify

    for user in workspace.memberships.values_list("user", flat=True):
        verify(get_user_model().objects.get(pk=user))
    for email in ("ops@acme.test", "data@acme.test"):
        Membership.objects.create(user=verify(make_user(email)), workspace=workspace, role="viewer")


@pytest.fixture
def eager_celery():
    """Tasks run inline in live_server's request thread: "Sync now" runs the sync there, and the alert messages
    it raises are sent (with their retries) before the page comes back, as a worker would do a moment later."""
    from hubsync.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def hubspot(hubspot_sandbox, settings):
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    # HubSpot's 5xx are retried by the client (7 attempts per call): quick retries keep a failing run short.
    settings.HUBSPOT_RETRY_BASE_SECONDS = 0.01
    settings.ALERT_RETRY_BASE_SECONDS = 0
    hubspot_sandbox.set_knobs(rate_limits=False)
    hubspot_sandbox.seed(PORTAL, contacts=5, companies=0, deals=0, tickets=0, name="Alerts portal")
    return hubspot_sandbox


def _source(workspace, sandbox) -> Source:
    source = make_source(
        workspace,
        sandbox,
        hub_id=PORTAL,
        name="Acme CRM",
        schema_name="acme_crm",
        enabled=True,
        next_sync_at=timezone.now() + timedelta(hours=3),
    )
    return source


def _add_channel(page, kind: str, name: str, **fields: str) -> None:
    form = page.locator("form", has=page.get_by_role("button", name="Add channel"))
    form.get_by_label("Kind").select_option(kind)
    form.get_by_label("Name").fill(name)
    for label, value in fields.items():
        form.get_by_label(label).fill(value)
    form.get_by_role("button", name="Add channel").click()


def _channel_row(page, name: str):
    return page.locator("tr[data-channel]", has=page.get_by_role("cell", name=name, exact=True))


def _log_rows(page):
    return page.locator("table.alert-log tbody tr")


def test_channels_tests_one_alert_per_failure_streak_and_recovery(
    hubspot, hook, eager_celery, mailoutbox, page, owner, workspace, members, monkeypatch
):
    base = hubspot.server_url
    source = _source(workspace, hubspot)
    log_in(page, owner, base)

    # From the dashboard, the sidebar leads to Alerts; with no channel yet the page says nobody is told.
    page.goto(base + "/")
    page.locator(".sidebar").get_by_role("link", name="Alerts").click()
    page.wait_for_url(re.compile(r"/settings/alerts/$"))
    expect(page.get_by_role("heading", name="Alerts", level=1)).to_be_visible()
    expect(page.get_by_text("No channels yet")).to_be_visible()
    expect(page.get_by_text("Nothing sent yet")).to_be_visible()
    expect(page.locator("#open-problems")).to_contain_text("No open problems right now.")
    # The form asks only for what the chosen kind needs.
    expect(page.get_by_label("Email addresses")).to_be_visible()
    expect(page.get_by_label("Webhook URL")).to_be_hidden()
    page.get_by_label("Kind").select_option("webhook")
    expect(page.get_by_label("Webhook URL")).to_be_visible()
    expect(page.get_by_label("Email addresses")).to_be_hidden()
    screenshot(page, "alerts_01_empty")

    # A webhook URL that is not a URL: one clear error sits next to the field and nothing is saved.
    _add_channel(page, "webhook", "Slack #data-alerts", **{"Webhook URL": "hooks.slack.com services T0/B0 x"})
    field = page.locator(".field.has-error", has=page.get_by_label("Webhook URL"))
    expect(field.locator(".errorlist li")).to_have_text(
        [
            "This is not a web address. Paste the whole webhook URL, e.g. https://hooks.slack.com/services/T000/B000/XXXX."
        ]
    )
    expect(page.get_by_label("Name")).to_have_value("Slack #data-alerts")  # what was typed stays
    expect(page.get_by_label("Kind")).to_have_value("webhook")
    expect(page.get_by_label("Email addresses")).to_be_hidden()
    assert not AlertChannel.objects.exists()
    screenshot(page, "alerts_02_bad_webhook_url")

    # The webhook channel, then an email channel; the secret webhook URL never comes back into the page.
    _add_channel(page, "webhook", "Slack #data-alerts", **{"Webhook URL": hook.url})
    expect(page.locator(".flash")).to_contain_text("Alert channel “Slack #data-alerts” added")
    _add_channel(page, "email", "Ops mail", **{"Email addresses": "ops@acme.test, data@acme.test"})
    expect(page.locator(".flash")).to_contain_text("Alert channel “Ops mail” added")
    expect(page.locator("tr[data-channel]")).to_have_count(2)
    expect(_channel_row(page, "Ops mail")).to_contain_text("ops@acme.test, data@acme.test")
    assert SECRET_PATH not in page.content()

    # Send test: the webhook receives Slack-compatible JSON, the email lands in the outbox, the log says Sent.
    _channel_row(page, "Slack #data-alerts").get_by_role("button", name="Send test").click()
    expect(page.locator(".flash")).to_contain_text("Test message")
    assert len(hook.requests) == 1 and hook.requests[0]["path"] == SECRET_PATH
    assert set(hook.requests[0]["json"]) == {"text"}
    assert "Test message for channel “Slack #data-alerts”" in hook.texts[0]

    # The email test waits in the queue (the broker is held back here): the log says so, refreshes itself
    # while the message waits, shows the outcome once a worker has sent it, then stops asking.
    from monitoring.tasks import send_alert

    queued: list[int] = []
    with monkeypatch.context() as broker:
        broker.setattr(send_alert, "apply_async", lambda args=(), kwargs=None, **_: queued.append(kwargs["alert_id"]))
        _channel_row(page, "Ops mail").get_by_role("button", name="Send test").click()
        expect(page.locator(".flash")).to_contain_text("Test message queued for “Ops mail”")
    assert len(queued) == 1 and not mailoutbox
    waiting = _log_rows(page).filter(has_text="Ops mail")
    expect(waiting.locator(".badge.warn")).to_have_text("Queued")
    expect(waiting).to_contain_text("waiting for a worker")
    screenshot(page, "alerts_03a_test_queued")
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if "/settings/alerts/log/" in r.url else None)
    page.evaluate("window.notReloaded = true")
    send_alert.apply(args=[queued[0]])  # what a worker does with the message
    expect(waiting.locator(".badge.ok")).to_have_text("Sent", timeout=6000)
    assert page.evaluate("window.notReloaded === true")  # updated in place
    assert len(mailoutbox) == 1 and sorted(mailoutbox[0].to) == ["data@acme.test", "ops@acme.test"]
    assert "Test message for channel “Ops mail”" in mailoutbox[0].body
    assert polls and polls[-1] == 286
    seen = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == seen  # nothing waits any more: polling stopped
    expect(_log_rows(page)).to_have_count(2)
    for row in (_log_rows(page).nth(0), _log_rows(page).nth(1)):
        expect(row).to_contain_text("Test")
        expect(row.locator(".badge.ok")).to_have_text("Sent")
    expect(_log_rows(page).filter(has_text="Slack #data-alerts")).to_contain_text("HTTP 200")
    screenshot(page, "alerts_03b_tests_sent")

    # HubSpot answers every call with a 503. Two runs through the real engine, each call retried: one alert.
    hubspot.set_knobs(fail_next=1000, fail_next_status="503")
    for _ in range(2):
        page.goto(f"{base}/sources/{source.pk}/")
        page.get_by_role("button", name="Sync now").click()
        page.wait_for_url(re.compile(rf"/sources/{source.pk}/"))
    runs = list(SyncRun.objects.filter(source=source).order_by("pk"))
    assert [r.status for r in runs] == ["failed", "failed"]
    assert all(r.retries >= 6 for r in runs), [r.retries for r in runs]
    assert len(hook.requests) == 2 and len(mailoutbox) == 2
    firing = hook.texts[1]
    assert firing.startswith("[hubsync · Acme] 🔴 Sync of source “Acme CRM” failed")
    assert f"/sources/{source.pk}/" in firing  # a link to where to look
    assert mailoutbox[1].subject == "[hubsync] Problem: Sync failed"  # names and errors stay in the body
    assert mailoutbox[1].body.startswith("[hubsync · Acme] 🔴 Sync of source “Acme CRM” failed")

    page.locator(".sidebar").get_by_role("link", name="Alerts").click()
    problems = page.locator("#open-problems")
    expect(problems.locator("tbody tr")).to_have_count(1)
    expect(problems.locator(".badge.bad")).to_have_text("Sync failed")
    link = problems.get_by_role("link", name=re.compile("Sync of source “Acme CRM” failed"))
    expect(link).to_have_attribute("href", f"/sources/{source.pk}/")
    expect(problems).to_contain_text("contacts: TransientError: 503")  # HubSpot's answer, quoted
    expect(_log_rows(page)).to_have_count(4)
    problem_rows = _log_rows(page).filter(has=page.locator(".badge.bad", has_text="Problem"))
    expect(problem_rows).to_have_count(2)  # one per channel, not one per run or per retry
    for i in range(2):
        expect(problem_rows.nth(i).locator(".badge.ok")).to_have_text("Sent")
    screenshot(page, "alerts_04_problem_open")

    # HubSpot is back: the next sync succeeds and one recovery message goes to each channel.
    hubspot.set_knobs(fail_next=0)
    page.goto(f"{base}/sources/{source.pk}/")
    page.get_by_role("button", name="Sync now").click()
    page.wait_for_url(re.compile(rf"/sources/{source.pk}/"))
    assert SyncRun.objects.filter(source=source).order_by("-pk").first().status == "succeeded"
    assert len(hook.requests) == 3 and hook.texts[2].startswith("[hubsync · Acme] ✅ Recovered: Sync of source")
    assert len(mailoutbox) == 3 and "Recovered" in mailoutbox[2].subject
    page.locator(".sidebar").get_by_role("link", name="Alerts").click()
    expect(page.locator("#open-problems")).to_contain_text("No open problems right now.")
    expect(_log_rows(page)).to_have_count(6)
    expect(_log_rows(page).filter(has=page.locator(".badge.ok", has_text="Recovered"))).to_have_count(2)
    screenshot(page, "alerts_05_recovered")

    # Another sync, still healthy: nothing more is sent.
    page.goto(f"{base}/sources/{source.pk}/")
    page.get_by_role("button", name="Sync now").click()
    page.wait_for_url(re.compile(rf"/sources/{source.pk}/"))
    assert len(hook.requests) == 3 and len(mailoutbox) == 3
    assert not AlertState.objects.filter(is_open=True).exists()
    assert Alert.objects.filter(kind="firing").count() == 2 and Alert.objects.filter(kind="recovered").count() == 2

    # Deleting a channel asks first; dismissing keeps it, accepting deletes it and the log keeps its messages.
    page.goto(base + "/settings/alerts/")
    dialogs: list[str] = []

    def dismiss(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    _channel_row(page, "Ops mail").get_by_role("button", name="Delete").click()
    page.wait_for_timeout(200)
    assert dialogs and "Ops mail" in dialogs[0]
    assert AlertChannel.objects.filter(name="Ops mail").exists()
    page.once("dialog", lambda dialog: dialog.accept())
    _channel_row(page, "Ops mail").get_by_role("button", name="Delete").click()
    expect(page.locator(".flash")).to_contain_text("Alert channel “Ops mail” deleted")
    expect(page.locator("tr[data-channel]")).to_have_count(1)
    assert not AlertChannel.objects.filter(name="Ops mail").exists()
    expect(_log_rows(page)).to_have_count(6)
    screenshot(page, "alerts_06_after_delete")


def test_viewer_sees_alerts_read_only(page, viewer, workspace, members, live_server, hook, mailoutbox, settings):
    settings.ALERT_RETRY_BASE_SECONDS = 0
    AlertChannelFactory(workspace=workspace, kind="email", name="Ops mail", emails="ops@acme.test")
    AlertChannelFactory(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    # A failed run, evaluated the way the engine does when a run finishes (the messages go out inline here).
    source = SourceFactory(workspace=workspace, name="Acme CRM", schema_name="acme_crm", hub_id=PORTAL)
    now = timezone.now()
    SyncRunFactory(
        source=source,
        trigger="scheduled",
        status="failed",
        error="HubSpot answered 502",
        started_at=now,
        finished_at=now,
    )
    from monitoring.tasks import send_alert

    queued: list[int] = []
    with pytest.MonkeyPatch.context() as broker:
        broker.setattr(send_alert, "apply_async", lambda args=(), kwargs=None, **_: queued.append(kwargs["alert_id"]))
        assert alerts.evaluate(workspace_id=workspace.pk)["opened"] == [f"sync_failed:source:{source.pk}"]
    for alert_id in queued:
        send_alert.apply(args=[alert_id])
    assert len(hook.requests) == 1 and len(mailoutbox) == 1

    log_in(page, viewer, live_server.url)
    page.goto(live_server.url + "/")
    page.locator(".sidebar").get_by_role("link", name="Alerts").click()
    page.wait_for_url(re.compile(r"/settings/alerts/$"))
    expect(page.locator("#open-problems")).to_contain_text("Sync of source “Acme CRM” failed")
    expect(page.locator("table.alert-log tbody tr")).to_have_count(2)
    expect(page.locator("tr[data-channel]")).to_have_count(2)
    expect(page.get_by_text("Only admins and owners can change alert channels.")).to_be_visible()
    expect(page.locator("main form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Send test|Delete|Pause|Add channel"))).to_have_count(0)
    assert SECRET_PATH not in page.content()
    screenshot(page, "alerts_07_viewer")

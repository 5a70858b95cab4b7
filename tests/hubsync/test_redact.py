"""Credentials that HubSpot or Segment echo back in an error are cut out when the error is *stored*, so no page,
alert e-mail or webhook body shows them (before, only the two run pages redacted at display time)."""

from __future__ import annotations

import json

import pytest
import requests
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from hubsync.models import Alert, AlertChannel, AlertState
from hubsync.redact import redact
from mappings.models import DeliveryRun, DeliveryState
from monitoring import alerts
from sources.models import Source, SourceCollection, SyncRun
from tests.monitoring.test_alerts import Hook, verify
from tests.monitoring.test_dashboard import make_mapping, make_run, make_source

# Each form a remote error has been seen to echo, with the part that must never be stored.
FORMS = {
    "Authorization: Basic d2stTEVBSzE6": "d2stTEVBSzE6",  # base64("wk-LEAK1:"), Segment's write key
    "Authorization: Bearer at-LEAK2-abcdefghij": "at-LEAK2",
    "token was Bearer eyJhbGciOiJIUzI1NiJ9.LEAK3.sig": "LEAK3",
    "grant_type=refresh_token&refresh_token=rt-LEAK4-0000&client_id=x": "rt-LEAK4",
    '{"access_token": "at-LEAK5-0000", "expires_in": 1800}': "at-LEAK5",
    "client_secret=cs-LEAK6-0000&redirect_uri=https://x": "cs-LEAK6",
    "POST /oauth/v1/token code=ac-LEAK7-0000&grant_type=authorization_code": "ac-LEAK7",
    '{"writeKey": "wk-LEAK8-0000", "batch": []}': "wk-LEAK8",
    "{'Authorization': 'Basic d2stTEVBSzk6'}": "d2stTEVBSzk6",
}
ECHO = "HubSpot said: " + " | ".join(FORMS)
LEAKS = list(FORMS.values())


def assert_clean(text: str, where: str = "") -> None:
    found = [leak for leak in LEAKS if leak in text]
    assert not found, f"{where}: {found}"


def test_every_form_is_redacted_and_the_rest_kept():
    out = redact(ECHO + " status_code: 500 HTTP 401 x=1 error code: 429 keep-this redis://user:pw-LEAK@host:6379/0")
    assert_clean(out)
    assert "pw-LEAK" not in out
    for kept in ("status_code: 500", "HTTP 401", "x=1", "error code: 429", "keep-this", "grant_type=", "expires_in"):
        assert kept in out
    assert redact(out) == out  # idempotent: pages may redact again


def test_known_secret_values_are_redacted():
    assert redact("the key wk-plain-123456 was refused", ["wk-plain-123456"]) == "the key [redacted] was refused"


def _raw(table: str, column: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")  # noqa: S608 (our own table names)
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def echoed(workspace):
    """One source, mapping, runs and states whose errors were stored through each way the code stores them."""
    source = make_source(workspace)
    mapping = make_mapping(workspace, source)
    sync_run = make_run(source, "failed", error=ECHO)  # create()
    make_run(source, "partial", set_last=False)
    SyncRun.objects.filter(status="partial").update(error=ECHO)  # update()
    SourceCollection.objects.create(source=source, collection="contacts", last_error=ECHO)
    Source.objects.filter(pk=source.pk).update(status_detail=ECHO)
    now = timezone.now()
    delivery = DeliveryRun.objects.create(
        mapping=mapping, sync_run=sync_run, status="failed", error=ECHO, started_at=now, finished_at=now
    )
    Mapping = type(mapping)
    Mapping.objects.filter(pk=mapping.pk).update(last_run=delivery)
    DeliveryState.objects.bulk_create(  # bulk_create()
        [DeliveryState(mapping=mapping, object_id=1, status="rejected", error=ECHO)]
    )
    state = DeliveryState.objects.create(mapping=mapping, object_id=2, status="rejected", error="")
    DeliveryState.objects.bulk_update([DeliveryState(pk=state.pk, error=ECHO)], ["error"])  # bulk_update()
    return source, mapping, sync_run, delivery


def test_errors_are_redacted_in_the_database(echoed):
    for table, column in (
        (SyncRun._meta.db_table, "error"),
        (SourceCollection._meta.db_table, "last_error"),
        (Source._meta.db_table, "status_detail"),
        (DeliveryRun._meta.db_table, "error"),
        (DeliveryState._meta.db_table, "error"),
    ):
        values = _raw(table, column)
        assert any("HubSpot said" in v for v in values), table
        for value in values:
            assert_clean(value, f"{table}.{column}")


def test_no_page_shows_an_echoed_secret(echoed, owner_client):
    source, mapping, sync_run, delivery = echoed
    pages = [
        reverse("dashboard"),
        reverse("sources:detail", args=[source.pk]),
        reverse("sources:runs", args=[source.pk]),
        reverse("sync_run", args=[source.pk, sync_run.pk]),
        reverse("delivery_run", args=[delivery.pk]),
        reverse("mappings:mapping_detail", args=[mapping.pk]),
    ]
    for page in pages:
        response = owner_client.get(page)
        assert response.status_code in (200, 286), page  # 286: a polled fragment with nothing running
        assert_clean(response.content.decode(), page)


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def test_alert_emails_webhooks_and_the_log_show_no_echoed_secret(
    echoed, owner, owner_client, workspace, hook, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from monitoring.tasks import send_alert

    monkeypatch.setattr(send_alert, "apply_async", lambda args=(), kwargs=None, **_: send_alert.apply(args, kwargs))
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    verify(owner)
    AlertChannel.objects.create(workspace=workspace, kind="webhook", name="Slack", webhook_url=hook.url)
    AlertChannel.objects.create(workspace=workspace, kind="email", name="Mail", emails=owner.email)
    with django_capture_on_commit_callbacks(execute=True):
        opened = alerts.evaluate(workspace_id=workspace.pk)["opened"]
    assert opened and hook.requests and mail.outbox
    for request in hook.requests:
        assert_clean(json.dumps(request["json"]), "webhook body")
    assert any("HubSpot said" in r["json"]["text"] for r in hook.requests)
    for message in mail.outbox:
        assert_clean(message.subject + message.body, "e-mail")
    for alert in Alert.objects.all():
        assert_clean(alert.text, "Alert.text")
    for state in AlertState.objects.all():
        assert_clean(state.detail, "AlertState.detail")
    assert_clean(owner_client.get(reverse("alerts")).content.decode(), "alerts page")


def test_the_extraction_engine_stores_collection_errors_redacted(workspace, sandbox, owner_client, monkeypatch):
    """The real engine against the sandbox; HubSpot's answers for one collection are a 400 that echoes the request
    (stubbed at the HTTP transport, the boundary). The run, the per-collection counts and the pages are clean."""
    from tests.sources.extract_helpers import PORTAL, sync
    from tests.sources.extract_helpers import make_source as make_sandbox_source

    sandbox.seed(PORTAL, contacts=5, companies=0, deals=0, tickets=3)
    source = make_sandbox_source(workspace, sandbox, collections=("contacts", "tickets"))
    real_send = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        if "tickets" not in (request.url or ""):
            return real_send(self, request, *args, **kwargs)
        response = requests.Response()
        response.status_code, response.reason, response.url, response.request = 400, "Bad Request", request.url, request
        response.headers["Content-Type"] = "application/json"
        body = {"status": "error", "category": "VALIDATION_ERROR", "message": ECHO}
        response._content = json.dumps(body).encode()
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.PARTIAL and "HubSpot said" in run.counts["tickets"]["error"]
    assert_clean(json.dumps(run.counts), "SyncRun.counts")
    assert_clean(run.error, "SyncRun.error")
    assert_clean(SourceCollection.objects.get(source=source, collection="tickets").last_error, "last_error")
    for page in (reverse("sources:detail", args=[source.pk]), reverse("sync_run", args=[source.pk, run.pk])):
        assert_clean(owner_client.get(page).content.decode(), page)


def test_the_command_redacts_rows_stored_by_an_earlier_release(workspace):
    from io import StringIO

    from django.core.management import call_command

    source = make_source(workspace)
    run = make_run(source, "failed", counts={"tickets": {"read": 0, "error": ECHO}})
    # As an older release stored it: straight into the column, past the field's redaction.
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {SyncRun._meta.db_table} SET error = %s WHERE id = %s", [ECHO, run.pk])  # noqa: S608
    assert LEAKS[0] in _raw(SyncRun._meta.db_table, "error")[0]
    out = StringIO()
    call_command("redact_stored_errors", stdout=out)
    run.refresh_from_db()
    assert_clean(_raw(SyncRun._meta.db_table, "error")[0], "error")
    assert_clean(json.dumps(run.counts), "counts")
    assert "HubSpot said" in run.error
    out = StringIO()
    call_command("redact_stored_errors", stdout=out)
    assert "redacted 0 rows" in out.getvalue()  # idempotent

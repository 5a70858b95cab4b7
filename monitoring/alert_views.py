"""Settings → Alerts: the workspace's alert channels (email, webhook), "send test", open problems and the log."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HTMX_STOP_POLLING

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.forms import AlertChannelForm
from hubsync.models import Alert, AlertChannel, AlertState, Role
from hubsync.redact import redact

from . import alerts, services

LOG_SIZE = 50  # messages shown in the log
VERIFY_FIRST = (
    "Verify your e-mail address first (Account → E-mail addresses): alert channels can only be added and tested "
    "from a verified account."
)


def _shown_error(entry: dict) -> str:
    """What the log says about a failed attempt. A webhook's answer is summed up by its status code; rows stored
    before that rule quoted the response body or the connection error (addresses, open or closed ports), which
    are not shown again."""
    error = str(entry.get("error") or "")
    if entry.get("status_code"):  # the template shows "HTTP <code>"; keep only our own hint after it
        head = f"HTTP {entry['status_code']}"
        return error[len(head) :].strip() if error.startswith(head) and ":" not in error else ""
    if error.startswith(alerts.OWN_ERRORS) or not error:
        return error
    return redact(error) if entry.get("kind") == "email" else "could not connect to the webhook"


def _log(request: WorkspaceRequest) -> dict:
    alerts_shown = list(Alert.objects.filter(workspace=request.workspace).select_related("channel")[:LOG_SIZE])
    log = []
    for alert in alerts_shown:
        alert.text = redact(alert.text)  # stored redacted; rows from before that are cleaned here
        kind = alert.channel.kind if alert.channel else ""
        attempts = [{**entry, "error": _shown_error({**entry, "kind": kind})} for entry in alert.attempts or []]
        log.append({"alert": alert, "attempts": attempts})
    # While a message waits for a worker (or between retries) the log refreshes itself, so "Send test" shows
    # its outcome without a reload.
    return {"log": log, "log_pending": any(a.status == Alert.Status.QUEUED for a in alerts_shown)}


def _page(request: WorkspaceRequest, form: AlertChannelForm, status: int = 200) -> HttpResponse:
    workspace = request.workspace
    open_states = [
        {"state": state, "label": alerts.RULE_LABELS.get(state.rule, state.rule), "path": alerts.state_path(state.key)}
        for state in AlertState.objects.filter(workspace=workspace, is_open=True).order_by("-opened_at")
    ]
    context = {
        "form": form,
        "channels": AlertChannel.objects.filter(workspace=workspace),
        "open_states": open_states,
        **_log(request),
        "can_change": request.membership.allows(Role.ADMIN),
        "nav_section": "alerts",
    }
    return render(request, "hubsync/alerts.html", context, status=status)


@workspace_view()
def alerts_log(request: WorkspaceRequest) -> HttpResponse:
    """The log fragment the page polls while a message is queued; 286 once nothing is waiting any more."""
    context = _log(request)
    status = 200 if context["log_pending"] else HTMX_STOP_POLLING
    return render(request, "hubsync/_alert_log.html", context, status=status)


@workspace_view()
def alerts_page(request: WorkspaceRequest) -> HttpResponse:
    """The channel list and log; a POST adds a channel (admins), so form errors render in place."""
    if request.method != "POST":
        return _page(request, AlertChannelForm())
    form = AlertChannelForm(request.POST, member_emails=alerts.member_addresses(request.workspace.pk))
    if not alerts.has_verified_email(request.user):
        # An unverified account could otherwise point e-mails and requests anywhere from this server.
        form.add_error(None, VERIFY_FIRST)
        return _page(request, form, status=403)
    if not form.is_valid():
        return _page(request, form, status=400)
    data = form.cleaned_data
    channel = services.create_channel(
        workspace=request.workspace,
        kind=data["kind"],
        name=data["name"],
        emails=data["emails"],
        webhook_url=data["webhook_url"],
        actor=request.user,
    )
    messages.success(request, f"Alert channel “{channel}” added. Use “Send test” to check that it reaches you.")
    return redirect("alerts")


@workspace_view()
@require_POST
def alert_channel_test(request: WorkspaceRequest, alertchannel_id: int) -> HttpResponse:
    channel = get_for_workspace(request, AlertChannel, pk=alertchannel_id)
    if not alerts.has_verified_email(request.user):
        messages.error(request, VERIFY_FIRST)
        return redirect("alerts")
    try:
        services.send_test(channel=channel)
    except services.SendTestLimited as exc:
        messages.error(request, f"No test message sent: {exc}")
        return redirect("alerts")
    messages.success(request, f"Test message queued for “{channel}”; its outcome appears in the log below.")
    return redirect("alerts")


@workspace_view()
@require_POST
def alert_channel_toggle(request: WorkspaceRequest, alertchannel_id: int) -> HttpResponse:
    channel = get_for_workspace(request, AlertChannel, pk=alertchannel_id)
    enabled = services.toggle_channel(channel=channel, actor=request.user)
    messages.success(request, f"Alert channel “{channel}” {'enabled' if enabled else 'paused'}.")
    return redirect("alerts")


@workspace_view()
@require_POST
def alert_channel_delete(request: WorkspaceRequest, alertchannel_id: int) -> HttpResponse:
    channel = get_for_workspace(request, AlertChannel, pk=alertchannel_id)
    services.delete_channel(channel=channel, actor=request.user)
    messages.success(request, f"Alert channel “{channel}” deleted.")
    return redirect("alerts")

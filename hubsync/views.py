from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import healthz as healthz_state
from . import workspaces
from .access import WorkspaceRequest, get_for_workspace, login_view, public_view, workspace_view
from .forms import InviteForm, RoleForm, WorkspaceForm, WorkspaceSettingsForm
from .models import AuditEvent, Invitation, Membership, Role, WorkspaceSettings
from .workspaces import INVITATION_SESSION_KEY, NEW_LINKS_SESSION_KEY, WorkspaceError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@login_view
def workspace_new(request: HttpRequest) -> HttpResponse:
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = workspaces.create_workspace(name=form.cleaned_data["name"], owner=request.user)
        workspaces.switch_to(request, workspace)
        messages.success(request, f"Workspace “{workspace.name}” created. You are its owner.")
        return redirect("dashboard")
    return render(request, "hubsync/workspace_new.html", {"form": form})


@login_view
@require_POST
def workspace_switch(request: HttpRequest) -> HttpResponse:
    # Only the user's own memberships are candidates, so a foreign workspace id is silently ignored (and so is
    # anything that is not an id at all).
    wanted = request.POST.get("workspace", "")
    membership = (
        Membership.objects.filter(user=cast("User", request.user), workspace_id=int(wanted)).first()  # login_view
        if wanted.isascii() and wanted.isdigit() and len(wanted) < 19
        else None
    )
    if membership is not None:
        workspaces.switch_to(request, membership.workspace)
    return redirect("dashboard")


@workspace_view(write_role=Role.OWNER)
def workspace_settings(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    conf = WorkspaceSettings.for_workspace(workspace.pk)
    initial = {name: getattr(conf, name) for name in workspaces.MONITORING_SETTINGS}
    posted = request.POST if request.method == "POST" else None
    which = request.POST.get("form") if posted else None
    form = WorkspaceForm(posted if which != "monitoring" else None, initial={"name": workspace.name})
    monitoring = WorkspaceSettingsForm(posted if which == "monitoring" else None, initial=initial)
    if which == "monitoring" and monitoring.is_valid():
        workspaces.update_monitoring_settings(
            workspace=workspace,
            actor=request.user,
            **{name: monitoring.cleaned_data[name] for name in workspaces.MONITORING_SETTINGS},
        )
        messages.success(request, "Monitoring settings saved.")
        return redirect("workspace_settings")
    if posted is not None and which != "monitoring" and form.is_valid():
        workspaces.rename_workspace(workspace=workspace, name=form.cleaned_data["name"], actor=request.user)
        messages.success(request, "Workspace settings saved.")
        return redirect("workspace_settings")
    return render(request, "hubsync/settings.html", {"form": form, "monitoring": monitoring, "conf": conf})


# --- members and invitations -----------------------------------------------------------------------------


def _members_page(request: WorkspaceRequest, invite_form: InviteForm, status: int = 200) -> HttpResponse:
    workspace = request.workspace
    members = Membership.objects.filter(workspace=workspace).select_related("user").order_by("user__email")
    invitations = Invitation.objects.filter(workspace=workspace, accepted_at__isnull=True).order_by("-created_at")
    is_owner = request.membership.allows(Role.OWNER)
    # The link is shown to owners only (a bearer token that lets its holder join), and only once, right after
    # sending: just its hash is stored.
    new_links = request.session.pop(NEW_LINKS_SESSION_KEY, {}) if is_owner else {}
    invitation_rows = [{"invitation": i, "link": new_links.get(str(i.pk), "")} for i in invitations]
    context = {
        "members": members,
        "invitations": invitation_rows,
        "invite_form": invite_form,
        "role_choices": Role.choices,
        "is_owner": is_owner,
        "invitation_days": settings.HUBSYNC_INVITATION_DAYS,
    }
    return render(request, "hubsync/members.html", context, status=status)


@workspace_view(write_role=Role.OWNER)
def members(request: WorkspaceRequest) -> HttpResponse:
    """The member list; a POST here is an invitation (owners only), so its errors render in place."""
    if request.method != "POST":
        return _members_page(request, InviteForm())
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation = workspaces.invite(
                workspace=request.workspace,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=request.user,
                request=request,
            )
        except WorkspaceError as exc:
            form.add_error("email", str(exc))
        else:
            request.session[NEW_LINKS_SESSION_KEY] = {
                str(invitation.pk): workspaces.invitation_url(request, invitation)
            }
            messages.success(
                request,
                f"Invitation sent to {invitation.email}. You can also copy its link below and share it: it is "
                "shown only now.",
            )
            return redirect("members")
    return _members_page(request, form, status=400)


@workspace_view(write_role=Role.OWNER)
@require_POST
def member_role(request: WorkspaceRequest, membership_id: int) -> HttpResponse:
    membership = get_for_workspace(request, Membership.objects.select_related("user"), pk=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: owner, admin or viewer.")
        return redirect("members")
    try:
        workspaces.change_role(membership=membership, role=form.cleaned_data["role"], actor=request.user)
    except WorkspaceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
    return redirect("members")


@workspace_view(write_role=Role.OWNER)
@require_POST
def member_remove(request: WorkspaceRequest, membership_id: int) -> HttpResponse:
    membership = get_for_workspace(request, Membership.objects.select_related("user"), pk=membership_id)
    try:
        workspaces.remove_member(membership=membership, actor=request.user)
    except WorkspaceError as exc:
        messages.error(request, str(exc))
        return redirect("members")
    messages.success(request, f"{membership.user.email} was removed from the workspace.")
    if membership.user_id == request.user.pk:
        return redirect("dashboard")
    return redirect("members")


@workspace_view(write_role=Role.OWNER)
@require_POST
def invitation_revoke(request: WorkspaceRequest, invitation_id: int) -> HttpResponse:
    invitation = get_for_workspace(request, Invitation, pk=invitation_id, accepted_at__isnull=True)
    workspaces.revoke_invitation(invitation=invitation, actor=request.user)
    messages.success(request, f"The invitation for {invitation.email} was revoked; its link no longer works.")
    return redirect("members")


@public_view
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link from the invitation email. Visitors are offered sign-up or log-in (and come back here or join
    on sign-up); a logged-in user with the invited email joins with a POST."""
    invitation = Invitation.by_token(token).select_related("workspace", "invited_by").first()
    if invitation is None:
        return render(request, "hubsync/invitation.html", {"problem": "This invitation link is not valid."}, status=404)
    user = request.user if request.user.is_authenticated else None
    problem = workspaces.invitation_problem(invitation, user)
    context = {"invitation": invitation, "problem": problem}
    if problem:
        expired_or_used = workspaces.invitation_problem(invitation, None) is not None
        return render(request, "hubsync/invitation.html", context, status=410 if expired_or_used else 403)
    if user is None:
        if request.method == "POST":
            return redirect(f"{reverse('account_login')}?{urlencode({'next': request.path})}")
        # Remember the invitation for the sign-up: with the invited address, confirmed by the usual e-mail link,
        # it joins this workspace (workspaces.on_email_confirmed).
        request.session[INVITATION_SESSION_KEY] = invitation.token_hash
        context["signup_url"] = (
            f"{reverse('account_signup')}?{urlencode({'email': invitation.email, 'next': request.path})}"
        )
        context["login_url"] = f"{reverse('account_login')}?{urlencode({'next': request.path})}"
        return render(request, "hubsync/invitation.html", context)
    if request.method == "POST":
        try:
            workspaces.accept_invitation(invitation=invitation, user=user)
        except WorkspaceError as exc:
            context["problem"] = str(exc)
            return render(request, "hubsync/invitation.html", context, status=410)
        workspaces.switch_to(request, invitation.workspace)
        messages.success(request, f"Welcome to {invitation.workspace.name}.")
        return redirect("dashboard")
    return render(request, "hubsync/invitation.html", context)


# --- audit log -----------------------------------------------------------------------------------------


@workspace_view(role=Role.ADMIN)
def audit_log(request: WorkspaceRequest) -> HttpResponse:
    events = AuditEvent.objects.filter(workspace=request.workspace).select_related("actor").order_by("-at", "-id")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    rows = [{"event": event, "changes": _change_rows(event.changes)} for event in page.object_list]
    return render(request, "hubsync/audit_log.html", {"page": page, "rows": rows})


def _change_rows(changes: object) -> list[dict[str, object]]:
    """{field: [old, new]} renders as a diff, anything else as its value."""
    if not isinstance(changes, dict):
        return [{"key": "", "value": changes, "diff": False}] if changes else []
    rows: list[dict[str, object]] = []
    for key, value in changes.items():
        if isinstance(value, list) and len(value) == 2:
            rows.append({"key": key, "old": _show(value[0]), "new": _show(value[1]), "diff": True})
        else:
            rows.append({"key": key, "value": _show(value), "diff": False})
    return rows


def _show(value: object) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def healthz(request: HttpRequest) -> JsonResponse:
    """The state of the database, the broker and the workers, from a report at most a few seconds old
    (hubsync.healthz); details only for operators."""
    entry = healthz_state.current()
    response = JsonResponse(healthz_state.body_for(request, entry), status=200 if entry["ok"] else 503)
    response["Cache-Control"] = "no-store"
    return response

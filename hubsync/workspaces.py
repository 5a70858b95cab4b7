"""Workspaces and memberships: creation on signup, renaming, invitations, roles. Used by views and commands.

Every change here writes an AuditEvent. The invitation token is a bearer secret: it never enters the audit log.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from . import audit
from .middleware import SESSION_KEY
from .models import Invitation, Membership, Role, Workspace, WorkspaceSettings

# Where a visitor's invitation (the hash of its token) waits while they sign up, confirm their address or log in.
INVITATION_SESSION_KEY = "hubsync_invitation"
# Links of invitations just sent, shown once to the owner who sent them ({invitation id: link}): only the token's
# hash is stored, so the link cannot be shown again later.
NEW_LINKS_SESSION_KEY = "hubsync_new_invitation_links"


# The settings of the Monitoring form (Settings → Workspace), in the order the form shows them.
MONITORING_SETTINGS = ("drift_pauses_mappings", "freshness_alert_minutes", "rejected_alert_threshold")


class WorkspaceError(Exception):
    """A refused change, with a message meant for the user. Nothing was changed."""


@transaction.atomic
def create_workspace(*, name: str, owner: Any) -> Workspace:
    workspace = Workspace.objects.create(name=name)
    Membership.objects.create(user=owner, workspace=workspace, role=Role.OWNER)
    audit.record(workspace=workspace, actor=owner, verb="create", obj=workspace, changes={"name": name})
    return workspace


@transaction.atomic
def rename_workspace(*, workspace: Workspace, name: str, actor: Any) -> Workspace:
    old = workspace.name
    if old == name:
        return workspace
    workspace.name = name
    workspace.save(update_fields=["name"])
    audit.record(workspace=workspace, actor=actor, verb="update", obj=workspace, changes={"name": [old, name]})
    return workspace


@transaction.atomic
def update_monitoring_settings(
    *,
    workspace: Workspace,
    drift_pauses_mappings: bool,
    freshness_alert_minutes: int,
    rejected_alert_threshold: int,
    actor: Any,
) -> WorkspaceSettings:
    """Save the workspace's monitoring settings; the audit event lists the values that changed."""
    conf = WorkspaceSettings.for_workspace(workspace.pk)
    wanted = {
        "drift_pauses_mappings": drift_pauses_mappings,
        "freshness_alert_minutes": freshness_alert_minutes,
        "rejected_alert_threshold": rejected_alert_threshold,
    }
    changes = {name: [getattr(conf, name), value] for name, value in wanted.items() if getattr(conf, name) != value}
    for name, value in wanted.items():
        setattr(conf, name, value)
    conf.save()
    if changes:
        audit.record(workspace=workspace, actor=actor, verb="update", obj=conf, changes=changes)
    return conf


def default_workspace_name(user: Any) -> str:
    local = (user.email or "my").split("@")[0]
    return f"{local}'s workspace"


def switch_to(request: Any, workspace: Workspace) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = workspace.pk


def _pending_invitation(request: Any) -> Invitation | None:
    session = getattr(request, "session", None) if request is not None else None
    token_hash = session.get(INVITATION_SESSION_KEY) if session is not None else None
    if not token_hash:
        return None
    return Invitation.objects.filter(token_hash=token_hash).select_related("workspace").first()


def on_signup(*, request: Any, user: Any) -> None:
    """A sign-up through an invitation link for the same email waits to join that workspace until the address is
    confirmed (on_email_confirmed): the link proves nothing about who typed the address, so the normal
    verification applies. Any other sign-up creates the user's own first workspace, owned by them."""
    invitation = _pending_invitation(request)
    if (
        invitation is not None
        and invitation_problem(invitation, None) is None
        and _normal_email(user.email or "") == _normal_email(invitation.email)
    ):
        return
    if not Membership.objects.filter(user=user).exists():
        workspace = create_workspace(name=default_workspace_name(user), owner=user)
        switch_to(request, workspace)


def on_email_confirmed(*, request: Any, email_address: Any) -> None:
    """The address of the invitation this browser came through is now proven: join its workspace. (Confirmed in
    another browser, the user opens the invitation link again and joins with a click.)"""
    invitation = _pending_invitation(request)
    if invitation is None or _normal_email(invitation.email) != _normal_email(email_address.email):
        return
    user = email_address.user
    if invitation_problem(invitation, user) is not None:
        return
    try:
        accept_invitation(invitation=invitation, user=user)
    except WorkspaceError:
        return
    request.session.pop(INVITATION_SESSION_KEY, None)
    switch_to(request, invitation.workspace)


# --- invitations ---------------------------------------------------------------------------------------


def _normal_email(email: str) -> str:
    return email.strip().lower()


def invitation_url(request: Any, invitation: Invitation) -> str:
    """The link of an invitation just created (only then is its token known)."""
    from django.urls import reverse

    if not invitation.token:
        raise ValueError("only the hash of this invitation's token is stored: its link cannot be rebuilt")
    path = reverse("invitation_accept", args=[invitation.token])
    return request.build_absolute_uri(path) if request is not None else settings.BASE_URL + path


@transaction.atomic
def invite(*, workspace: Workspace, email: str, role: str, actor: Any, request: Any = None) -> Invitation:
    """Create a pending invitation and email its link. Refuses existing members and duplicate pending
    invitations; an expired pending invitation for the same email is replaced."""
    email = _normal_email(email)
    if Membership.objects.filter(workspace=workspace, user__email__iexact=email).exists():
        raise WorkspaceError(f"{email} is already a member of this workspace.")
    pending = Invitation.objects.filter(workspace=workspace, email__iexact=email, accepted_at__isnull=True).first()
    if pending is not None:
        if not pending.expired:
            raise WorkspaceError(f"{email} already has a pending invitation. Revoke it first to send a new one.")
        pending.delete()
    invitation = Invitation.objects.create(workspace=workspace, email=email, role=role, invited_by=actor)
    audit.record(
        workspace=workspace,
        actor=actor,
        verb="member.invite",
        obj=invitation,
        object_repr=email,
        changes={"email": email, "role": role},
    )
    link = invitation_url(request, invitation)
    context = {"invitation": invitation, "link": link, "inviter": actor}
    subject = one_line(f"You are invited to {workspace.name} on hubsync")
    transaction.on_commit(
        lambda: send_mail(
            subject=subject,
            message=render_to_string("hubsync/email/invitation.txt", context),
            from_email=None,
            recipient_list=[email],
        )
    )
    return invitation


def one_line(text: str) -> str:
    """Text for an e-mail header: control characters (a newline would make send_mail raise BadHeaderError, after
    the invitation was saved) become spaces."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _has_verified(user: Any, email: str) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=_normal_email(email), verified=True).exists()


def invitation_problem(invitation: Invitation, user: Any | None) -> str | None:
    """Why this invitation cannot be accepted (by `user`, if given), or None. The user must own the invited
    address as a *verified* address: an unconfirmed one (typed at sign-up or added on the e-mail page) proves
    nothing."""
    if invitation.accepted_at is not None:
        return "This invitation has already been used. Ask the workspace owner for a new one if you need access."
    if invitation.expired:
        return "This invitation has expired. Ask the workspace owner to send you a new one."
    if user is not None and not _has_verified(user, invitation.email):
        from allauth.account.models import EmailAddress

        if EmailAddress.objects.filter(user=user, email__iexact=_normal_email(invitation.email)).exists():
            return (
                f"Confirm {invitation.email} first: open the confirmation link we e-mailed to it (you can send it "
                "again from your account's e-mail page). Then open this invitation again."
            )
        return (
            f"This invitation was sent to {invitation.email}, but you are logged in as {user.email}. "
            f"Log in with {invitation.email} to accept it."
        )
    return None


@transaction.atomic
def accept_invitation(*, invitation: Invitation, user: Any) -> Membership:
    # Lock the row so two clicks on the same link cannot both accept it.
    invitation = Invitation.objects.select_for_update().select_related("workspace").get(pk=invitation.pk)
    problem = invitation_problem(invitation, user)
    if problem:
        raise WorkspaceError(problem)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    membership, created = Membership.objects.get_or_create(
        user=user, workspace=invitation.workspace, defaults={"role": invitation.role}
    )
    if created:
        audit.record(
            workspace=invitation.workspace,
            actor=user,
            verb="member.join",
            obj=membership,
            object_repr=user.email,
            changes={"role": invitation.role},
        )
    return membership


@transaction.atomic
def revoke_invitation(*, invitation: Invitation, actor: Any) -> None:
    audit.record(
        workspace=invitation.workspace,
        actor=actor,
        verb="member.revoke_invitation",
        obj=invitation,
        object_repr=invitation.email,
        changes={"email": invitation.email, "role": invitation.role},
    )
    invitation.delete()


# --- members -------------------------------------------------------------------------------------------


def _other_owners(membership: Membership) -> int:
    return (
        Membership.objects.filter(workspace_id=membership.workspace_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .count()
    )


@transaction.atomic
def change_role(*, membership: Membership, role: str, actor: Any) -> Membership:
    # Lock the workspace's owner rows so two owners demoting each other at once cannot leave none.
    list(Membership.objects.select_for_update().filter(workspace_id=membership.workspace_id, role=Role.OWNER))
    membership.refresh_from_db()
    old = membership.role
    if old == role:
        return membership
    if old == Role.OWNER and _other_owners(membership) == 0:
        raise WorkspaceError("A workspace needs at least one owner. Make someone else an owner first.")
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(
        workspace=membership.workspace,
        actor=actor,
        verb="member.role",
        obj=membership,
        object_repr=membership.user.email,
        changes={"role": [old, role]},
    )
    return membership


@transaction.atomic
def remove_member(*, membership: Membership, actor: Any) -> None:
    list(Membership.objects.select_for_update().filter(workspace_id=membership.workspace_id, role=Role.OWNER))
    membership.refresh_from_db()
    if membership.role == Role.OWNER and _other_owners(membership) == 0:
        raise WorkspaceError("The last owner cannot be removed. Make someone else an owner first.")
    audit.record(
        workspace=membership.workspace,
        actor=actor,
        verb="member.remove",
        obj=membership,
        object_repr=membership.user.email,
        changes={"email": membership.user.email, "role": membership.role},
    )
    membership.delete()

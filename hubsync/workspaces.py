"""Workspaces and memberships: creation on signup, switching, invitations."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import audit
from .middleware import SESSION_KEY
from .models import Membership, Role, Workspace


@transaction.atomic
def create_workspace(*, name: str, owner: Any) -> Workspace:
    workspace = Workspace.objects.create(name=name)
    Membership.objects.create(user=owner, workspace=workspace, role=Role.OWNER)
    audit.record(workspace=workspace, actor=owner, verb="create", obj=workspace, changes={"name": name})
    return workspace


def default_workspace_name(user: Any) -> str:
    local = (user.email or "my").split("@")[0]
    return f"{local}'s workspace"


def on_signup(*, request: Any, user: Any) -> None:
    """The first sign-up creates a workspace owned by the new user."""
    if not Membership.objects.filter(user=user).exists():
        workspace = create_workspace(name=default_workspace_name(user), owner=user)
        if request is not None and hasattr(request, "session"):
            request.session[SESSION_KEY] = workspace.pk

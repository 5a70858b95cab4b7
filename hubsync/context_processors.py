from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from .models import Membership


def workspace(request: HttpRequest) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "current_workspace": getattr(request, "workspace", None),
        "current_membership": getattr(request, "membership", None),
        "sandbox_enabled": settings.SANDBOX,
        # First path segment ("" for the dashboard), so the navigation can mark where the user is.
        "nav_section": request.path.strip("/").split("/")[0],
    }
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        ctx["all_memberships"] = Membership.objects.filter(user=request.user).select_related("workspace")
    return ctx

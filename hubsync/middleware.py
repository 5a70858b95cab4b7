from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .models import Membership

SESSION_KEY = "hubsync_workspace_id"


class WorkspaceMiddleware:
    """Sets request.workspace and request.membership from the session's current workspace (falling back to
    the user's first membership). Membership is always re-read, so a removed member loses access at once."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.workspace = None
        request.membership = None
        if request.user.is_authenticated and not request.path.startswith(("/sandbox/", "/static/", "/healthz")):
            memberships = Membership.objects.filter(user=request.user).select_related("workspace")
            wanted = request.session.get(SESSION_KEY)
            membership = None
            if wanted is not None:
                membership = memberships.filter(workspace_id=wanted).first()
            if membership is None:
                membership = memberships.order_by("workspace__name", "workspace_id").first()
                if membership is not None:
                    request.session[SESSION_KEY] = membership.workspace_id
            if membership is not None:
                request.membership = membership
                request.workspace = membership.workspace
        return self.get_response(request)

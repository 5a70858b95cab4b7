"""The one membership/role check every view goes through.

`request.workspace` / `request.membership` are set by WorkspaceMiddleware from the session's current
workspace. Views are decorated with `@workspace_view(role=...)`; objects are fetched with `get_for_workspace`
so another workspace's id is a 404, never a leak.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django_htmx.middleware import HtmxDetails

from .models import ROLE_RANK, Membership, Role, Workspace

M = TypeVar("M", bound=Model)

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class WorkspaceRequest(HttpRequest):
    """The request a `@workspace_view` gets, for type checkers: WorkspaceMiddleware sets `workspace` and
    `membership` (the decorator refuses requests without them), HtmxMiddleware sets `htmx`. Never instantiated."""

    workspace: Workspace
    membership: Membership
    htmx: HtmxDetails


def workspace_view(role: str = Role.VIEWER, *, write_role: str = Role.ADMIN) -> Callable:
    """Require a logged-in member of the current workspace with at least `role` to read and `write_role`
    to send anything but GET/HEAD. Viewers can see everything and change nothing."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return _to_login(request)
            membership = getattr(request, "membership", None)
            if membership is None:
                return redirect("workspace_new")
            needed = role if request.method in SAFE_METHODS else max(role, write_role, key=_rank)
            if not membership.allows(needed):
                raise PermissionDenied(f"Your role ({membership.role}) cannot do this; it needs {needed}.")
            return view(request, *args, **kwargs)

        wrapper.workspace_view = True  # type: ignore[attr-defined]
        wrapper.required_role = role  # type: ignore[attr-defined]
        wrapper.write_role = write_role  # type: ignore[attr-defined]
        return wrapper

    return decorator


def login_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the few views that need a logged-in user but no workspace (create, switch, accept an invitation).
    They must not read or change a workspace's objects; the URL-walk test lists them by name."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return _to_login(request)
        return view(request, *args, **kwargs)

    wrapper.login_view = True  # type: ignore[attr-defined]
    return wrapper


def public_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Marks a view as deliberately reachable without logging in (the URL-walk test lists them by name)."""
    view.public_view = True  # type: ignore[attr-defined]
    return view


def _to_login(request: HttpRequest) -> HttpResponse:
    response = redirect_to_login(request.get_full_path())
    if getattr(request, "htmx", False):
        # An htmx fragment request (e.g. status polling after the session expired) would swap the login page
        # into a fragment; ask htmx to load it as a whole page instead.
        htmx_response = HttpResponse(status=204)
        htmx_response["HX-Redirect"] = response["Location"]
        return htmx_response
    return response


def _rank(role: str) -> int:
    return ROLE_RANK[Role(role)]


def get_for_workspace(request: HttpRequest, model_or_qs: type[M] | QuerySet[M], **lookup: Any) -> M:
    """Fetch one object of the current workspace, or 404. `lookup` may traverse to the workspace
    (e.g. `source__workspace`) via the model's `workspace_path` attribute."""
    qs = model_or_qs if isinstance(model_or_qs, QuerySet) else model_or_qs._default_manager.all()
    path = getattr(qs.model, "workspace_path", "workspace")
    workspace = getattr(request, "workspace", None)
    if workspace is None:
        raise Http404
    return get_object_or_404(qs, **{path: workspace}, **lookup)

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from .models import Membership

SESSION_KEY = "hubsync_workspace_id"


class WorkspaceMiddleware:
    """Sets request.workspace and request.membership from the session's current workspace (falling back to
    the user's first membership). Membership is always re-read, so a removed member loses access at once."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = None
        if request.user.is_authenticated and not request.path.startswith(("/sandbox/", "/static/", "/healthz")):
            memberships = Membership.objects.filter(user=request.user).select_related("workspace")
            wanted = request.session.get(SESSION_KEY)
            if wanted is not None:
                membership = memberships.filter(workspace_id=wanted).first()
            if membership is None:
                membership = memberships.order_by("workspace__name", "workspace_id").first()
                if membership is not None:
                    request.session[SESSION_KEY] = membership.workspace_id
        # HttpRequest has no such attributes: they are added here (views see them typed through WorkspaceRequest).
        request.membership = membership  # type: ignore[attr-defined]
        request.workspace = membership.workspace if membership is not None else None  # type: ignore[attr-defined]
        return self.get_response(request)


class RejectNulMiddleware:
    """A NUL byte in the path, a query or form field (name or value) is a 400 before any view runs.

    No legitimate input of this application contains one, PostgreSQL refuses NUL in text (a DataError, so a 500
    from whichever view first put the value in a query), and e-mail headers and logs treat it specially. One
    check here instead of one in every form and filter; JSON bodies are left to their parsers (a "\\u0000"
    escape is ordinary JSON text and is stored escaped)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or _has_nul(request.GET) or (request.method == "POST" and _form_has_nul(request)):
            return HttpResponseBadRequest(
                "The request contains a NUL character, which no field accepts.", content_type="text/plain"
            )
        return self.get_response(request)


def _has_nul(data) -> bool:
    return any("\x00" in key or any("\x00" in value for value in data.getlist(key)) for key in data)


def _form_has_nul(request: HttpRequest) -> bool:
    # Only form encodings are parsed here; any other body (JSON, bytes) stays unread for its view.
    content_type = request.content_type or ""
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return False
    try:
        # Reading the body first keeps it readable for a view that wants it raw: Django then parses the form
        # from the cached bytes instead of consuming the stream.
        request.body  # noqa: B018
        return _has_nul(request.POST)
    except Exception:  # too big or unparseable: the view (or Django's own handling) answers it
        return False


class SecurityHeadersMiddleware:
    """Content-Security-Policy and Permissions-Policy on every response (settings HUBSYNC_CSP /
    HUBSYNC_PERMISSIONS_POLICY; empty switches one off). Django 5.2 has no CSP support of its own and the policy is
    one static string (no inline script or style is left to allow, so no nonces), so a few lines here rather than
    a dependency. A view may set its own header first: it is kept."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        response = self.get_response(request)
        csp = getattr(settings, "HUBSYNC_CSP", "")
        if csp and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = csp
        permissions = getattr(settings, "HUBSYNC_PERMISSIONS_POLICY", "")
        if permissions and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = permissions
        return response

"""How an API call is let in: a workspace's token (`Authorization: Bearer hs_…`), the workspace in the URL, the
token's role, and a rate limit per token.

The same rules as the pages (hubsync.access): a token reads and changes its own workspace only (another
workspace's id in the URL is a 404, as for pages, so ids of other workspaces cannot be probed); a read-only token
reads like a viewer; an admin token acts like an admin.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from hubsync.models import Membership, Role

from . import services
from .models import ApiToken, hash_token


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the token as `Authorization: Bearer <token>`.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("This is not a hubsync API token.") from None
        token = ApiToken.objects.select_related("workspace", "created_by").filter(token_hash=hash_token(raw)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("This is not a valid hubsync API token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API token was revoked.")
        if token.expired:
            raise exceptions.AuthenticationFailed("This API token has expired.")
        if not creator_may_manage(token):
            raise exceptions.AuthenticationFailed(
                "The member who created this API token is no longer an owner or admin of its workspace, so the token "
                "no longer works: an owner or admin can create a new one."
            )
        services.touch(token)
        return (token.created_by or AnonymousUser(), token)

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="hubsync"'


def creator_may_manage(token: ApiToken) -> bool:
    """A token works only while its creator may still create it (an owner or admin of its workspace): removing or
    demoting a member takes their tokens' access away at once, as it does their pages'."""
    if token.created_by_id is None:
        return False
    return Membership.objects.filter(
        user_id=token.created_by_id, workspace_id=token.workspace_id, role__in=[Role.OWNER, Role.ADMIN]
    ).exists()


def token_of(request: Request) -> ApiToken | None:
    auth = request.auth
    return auth if isinstance(auth, ApiToken) else None


class WorkspaceTokenPermission(BasePermission):
    """A valid token, of the workspace named in the URL, with the role the method needs (reads: any token;
    anything else: an admin token). Sets `request.workspace` for hubsync.access.get_for_workspace."""

    message = "This API token is read-only: changes need a token with the admin role."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = token_of(request)
        if token is None:
            raise exceptions.NotAuthenticated("Send a workspace API token: `Authorization: Bearer <token>`.")
        workspace_id = view.kwargs.get("workspace_id")
        if workspace_id is not None and int(workspace_id) != token.workspace_id:
            raise exceptions.NotFound("No such workspace.")
        request.workspace = token.workspace  # type: ignore[attr-defined]
        request._request.workspace = token.workspace  # type: ignore[attr-defined]
        needed = Role.VIEWER if request.method in SAFE_METHODS else getattr(view, "write_role", Role.ADMIN)
        if needed == Role.OWNER:
            self.message = "Only owners may change this (on the pages); API tokens act at most as admins."
        return _rank(token.member_role) >= _rank(needed)


def _rank(role: str) -> int:
    return {Role.VIEWER: 0, Role.ADMIN: 1, Role.OWNER: 2}[Role(role)]


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (per client address before a token is known), counted in the cache (Redis when
    REDIS_URL is set, so every web process shares the count). Over the limit: 429 with Retry-After."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.HUBSYNC_API_RATE

    def get_cache_key(self, request: Request, view: Any) -> str:
        token = token_of(request)
        ident = f"token:{token.pk}" if token is not None else f"ip:{self.get_ident(request)}"
        return f"hubsync:api:throttle:{ident}"

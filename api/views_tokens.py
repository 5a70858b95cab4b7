"""Settings → API tokens: owners and admins create (the token is shown once), list and revoke the workspace's
API tokens. Viewers cannot see this page: a token's name and role say what automation the workspace runs."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Exists, OuterRef
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.models import Membership, Role

from . import services
from .forms import TokenForm
from .models import ApiToken


def _page(
    request: WorkspaceRequest, form: TokenForm, *, new: ApiToken | None = None, status: int = 200
) -> HttpResponse:
    creator_manages = Membership.objects.filter(
        user_id=OuterRef("created_by_id"), workspace_id=OuterRef("workspace_id"), role__in=[Role.OWNER, Role.ADMIN]
    )
    tokens = (
        ApiToken.objects.filter(workspace=request.workspace)
        .select_related("created_by")
        .annotate(creator_manages=Exists(creator_manages))
    )
    context = {"form": form, "tokens": tokens, "new": new, "nav_section": "settings"}
    response = render(request, "api/tokens.html", context, status=status)
    if new is not None:
        response["Cache-Control"] = "no-store"  # the page holds the token: never keep it in a cache
    return response


@workspace_view(role=Role.ADMIN)
def api_tokens(request: WorkspaceRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request, TokenForm())
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        token = services.create_token(
            workspace=request.workspace,
            name=form.cleaned_data["name"],
            role=form.cleaned_data["role"],
            expires_at=form.expires_at(),
            actor=request.user,
        )
    except services.TokenError as exc:
        form.add_error(None, str(exc))
        return _page(request, form, status=400)
    # Rendered, not redirected: the token is shown on this one response and stored nowhere (not in the session).
    return _page(request, TokenForm(), new=token)


@workspace_view(role=Role.ADMIN)
@require_POST
def api_token_revoke(request: WorkspaceRequest, apitoken_id: int) -> HttpResponse:
    token = get_for_workspace(request, ApiToken, pk=apitoken_id)
    if services.revoke_token(token=token, actor=request.user):
        messages.success(request, f"API token “{token.name}” was revoked: calls with it now fail.")
    return redirect("api_tokens")

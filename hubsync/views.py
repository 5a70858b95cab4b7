from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from .access import workspace_view
from .middleware import SESSION_KEY
from .models import Membership
from .workspaces import create_workspace


@workspace_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "hubsync/dashboard.html", {})


@login_required
def workspace_new(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name:
            error = "Give the workspace a name."
        elif len(name) > 100:
            error = "A workspace name has at most 100 characters."
        else:
            workspace = create_workspace(name=name, owner=request.user)
            request.session[SESSION_KEY] = workspace.pk
            return redirect("dashboard")
    return render(request, "hubsync/workspace_new.html", {"error": error})


@login_required
@require_POST
def workspace_switch(request: HttpRequest) -> HttpResponse:
    membership = Membership.objects.filter(user=request.user, workspace_id=request.POST.get("workspace")).first()
    if membership is not None:
        request.session[SESSION_KEY] = membership.workspace_id
    return redirect("dashboard")


def healthz(request: HttpRequest) -> JsonResponse:
    from .health import check_all

    report, ok = check_all()
    return JsonResponse(report, status=200 if ok else 503)

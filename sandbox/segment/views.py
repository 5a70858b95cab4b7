"""Segment sandbox views: the Tracking API endpoints, the key check, and the public sandbox pages (workspace
list, inbox per write key with its JSON twin, fault knobs, clear). Sandbox pages need no login: the whole
/sandbox/ tree exists only when SANDBOX is on, and it holds nothing but sandbox data."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages as flash
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from sandbox.http import BadBody, json_object

from . import inbox
from .ingest import (
    DISCARD_REASONS,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    REJECT_REASONS,
    basic_auth_write_key,
    find_workspace,
    handle_tracking_request,
    json_error,
)
from .models import SegmentWorkspace, get_default_workspace

VIEWS = ("messages", "discards", "profiles", "accounts", "settings")
PAGE_SIZE = 50


# --- Tracking API ---------------------------------------------------------------------------------------------


@csrf_exempt
def track_endpoint(request: HttpRequest, endpoint: str) -> HttpResponse:
    if request.method != "POST":
        return json_error(405, "method_not_allowed", "Use POST.")
    return handle_tracking_request(request, endpoint)


@csrf_exempt
@require_GET
def check_key(request: HttpRequest) -> JsonResponse:
    """Sandbox-only: is this write key known? Segment's own API answers 200 to any key, so hubsync's "Check
    connection" uses this against the sandbox. Basic auth exactly as the Tracking API takes it."""
    workspace = find_workspace(basic_auth_write_key(request))
    if workspace is None:
        response = JsonResponse({"valid": False, "message": "Unknown write key."}, status=401)
        response["WWW-Authenticate"] = 'Basic realm="segment-sandbox"'
        return response
    return JsonResponse({"valid": True, "workspace": workspace.name})


# --- pages ----------------------------------------------------------------------------------------------------


def _api_base(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("sandbox_segment:index")).rstrip("/")


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    get_default_workspace()
    error = ""
    name = ""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name:
            error = "Give the workspace a name."
        elif len(name) > 100:
            error = "A workspace name has at most 100 characters."
        else:
            workspace = SegmentWorkspace.objects.create(name=name)
            flash.success(request, f"Sandbox workspace “{workspace.name}” created.")
            return redirect("sandbox_segment:inbox", write_key=workspace.write_key)
    workspaces = list(SegmentWorkspace.objects.all())
    for workspace in workspaces:
        workspace.counts = inbox.counts(workspace)
    return render(
        request,
        "sandbox/segment/index.html",
        {
            "workspaces": workspaces,
            "error": error,
            "name": name,
            "api_base": _api_base(request),
            "unknown_keys": inbox.unknown_keys(),
            "limits": {"message": MAX_MESSAGE_BYTES, "batch": MAX_BATCH_BYTES, "messages": MAX_BATCH_MESSAGES},
        },
    )


def _workspace_or_404(write_key: str) -> SegmentWorkspace:
    workspace = find_workspace(write_key)
    if workspace is None:
        raise Http404("No sandbox workspace has this write key.")
    return workspace


def _int_param(request: HttpRequest, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.GET.get(name, default))))
    except ValueError:
        return default


def _view_data(request: HttpRequest, workspace: SegmentWorkspace, view: str, page_size: int) -> dict[str, Any]:
    page = _int_param(request, "page", 1, 1, 10**9)
    offset = (page - 1) * page_size
    data: dict[str, Any] = {"view": view, "page": page, "page_size": page_size}
    if view == "messages":
        rows = inbox.messages_page(workspace, offset=offset, limit=page_size + 1)
        data["results"] = [inbox.message_dict(row) for row in rows[:page_size]]
        has_next = len(rows) > page_size
    elif view == "discards":
        rows = inbox.discards_page(workspace, offset=offset, limit=page_size + 1)
        data["results"] = [inbox.discard_dict(row) for row in rows[:page_size]]
        has_next = len(rows) > page_size
    elif view in ("profiles", "accounts"):
        users, accounts = inbox.build_profiles(workspace)
        items = users if view == "profiles" else accounts
        if view == "profiles" and request.GET.get("user_id"):
            items = [p for p in items if p["userId"] == request.GET["user_id"]]
        if view == "profiles" and request.GET.get("anonymous_id"):
            items = [p for p in items if request.GET["anonymous_id"] in p["anonymousIds"]]
        if view == "accounts" and request.GET.get("group_id"):
            items = [a for a in items if a["groupId"] == request.GET["group_id"]]
        data["results"] = items[offset : offset + page_size]
        data["total"] = len(items)
        data["profile_counts"] = {"users": len(users), "accounts": len(accounts)}
        has_next = offset + page_size < len(items)
    else:
        data["results"] = []
        has_next = False
    data["next_page"] = page + 1 if has_next else None
    data["previous_page"] = page - 1 if page > 1 else None
    return data


def _display_name(profile: dict[str, Any]) -> str:
    traits = profile["traits"]
    full = " ".join(str(traits[k]) for k in ("firstname", "lastname") if traits.get(k))
    for candidate in (traits.get("name"), full, traits.get("email"), profile.get("userId"), profile.get("groupId")):
        if candidate:
            return str(candidate)
    return "Anonymous"


@require_GET
def inbox_page(request: HttpRequest, write_key: str) -> HttpResponse:
    workspace = _workspace_or_404(write_key)
    view = request.GET.get("view", "messages")
    if view not in VIEWS:
        view = "messages"
    data = _view_data(request, workspace, view, PAGE_SIZE)
    for item in data["results"]:
        # Display-only copies; the JSON twin keeps ISO-8601.
        for name in ("receivedAt", "timestamp", "lastSeen"):
            if item.get(name):
                item[f"{name}_display"] = item[name][:19].replace("T", " ")
    if view == "messages":
        for item in data["results"]:
            item["traits_json"] = json.dumps(item["traits"], ensure_ascii=False) if item["traits"] else ""
    if view == "discards":
        for item in data["results"]:
            payload = item["payload"]
            item["payload_text"] = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    for item in data["results"] if view in ("profiles", "accounts") else []:
        item["trait_items"] = sorted(item["traits"].items())
        item["display_name"] = _display_name(item)
        item["initial"] = (item["display_name"][:1] or "?").upper()
    return render(
        request,
        "sandbox/segment/inbox.html",
        {
            "workspace": workspace,
            "view": view,
            "data": data,
            "counts": inbox.counts(workspace),
            "api_base": _api_base(request),
            "reasons": {**DISCARD_REASONS, **REJECT_REASONS},
        },
    )


@require_GET
def inbox_json(request: HttpRequest, write_key: str) -> JsonResponse:
    """The inbox for tests: ?view=messages|discards|profiles|accounts&page=N&page_size=N (up to 5,000), with
    filters user_id / anonymous_id (profiles) and group_id (accounts)."""
    workspace = _workspace_or_404(write_key)
    view = request.GET.get("view", "messages")
    if view not in VIEWS[:-1]:
        return JsonResponse({"error": f"view must be one of {', '.join(VIEWS[:-1])}"}, status=400)
    page_size = _int_param(request, "page_size", PAGE_SIZE, 1, inbox.MAX_PAGE_SIZE)
    data = _view_data(request, workspace, view, page_size)
    data["workspace"] = {"name": workspace.name, "write_key": workspace.write_key, "knobs": _knobs(workspace)}
    data["counts"] = inbox.counts(workspace)
    return JsonResponse(data, json_dumps_params={"ensure_ascii": False})


# --- knobs and clear ------------------------------------------------------------------------------------------

KNOB_FIELDS = {
    "error_rate": (float, 0.0, 1.0),
    "rate_limit_rate": (float, 0.0, 1.0),
    "retry_after": (int, 0, 3600),
    "latency_ms": (int, 0, 60_000),
}


def _knobs(workspace: SegmentWorkspace) -> dict[str, Any]:
    return {name: getattr(workspace, name) for name in KNOB_FIELDS}


def _apply_knobs(workspace: SegmentWorkspace, values: dict[str, Any]) -> list[str]:
    errors = []
    changed = []
    for name, (kind, lo, hi) in KNOB_FIELDS.items():
        if name not in values or values[name] in ("", None):
            continue
        try:
            value = kind(values[name])
        except (TypeError, ValueError):
            errors.append(f"{name} must be a number.")
            continue
        if not lo <= value <= hi:
            errors.append(f"{name} must be between {lo} and {hi}.")
            continue
        setattr(workspace, name, value)
        changed.append(name)
    if not errors and changed:
        workspace.save(update_fields=changed)
    return errors


@require_POST
def knobs_form(request: HttpRequest, write_key: str) -> HttpResponse:
    workspace = _workspace_or_404(write_key)
    errors = _apply_knobs(workspace, request.POST.dict())
    for error in errors:
        flash.error(request, error)
    if not errors:
        flash.success(request, "Fault knobs saved.")
    return redirect(reverse("sandbox_segment:inbox", args=[workspace.write_key]) + "?view=settings")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def knobs_json(request: HttpRequest, write_key: str) -> JsonResponse:
    """Read (GET) or set (POST a JSON object with any of the knob names) the fault knobs, for tests and benches
    that drive a separate sandbox server."""
    workspace = _workspace_or_404(write_key)
    if request.method == "POST":
        try:
            values = json_object(request.body)
        except BadBody as exc:
            return JsonResponse({"errors": [str(exc)]}, status=400)
        errors = _apply_knobs(workspace, values)
        if errors:
            return JsonResponse({"errors": errors}, status=400)
    return JsonResponse(_knobs(workspace))


@require_POST
def clear_form(request: HttpRequest, write_key: str) -> HttpResponse:
    workspace = _workspace_or_404(write_key)
    inbox.clear(workspace)
    flash.success(request, "Inbox cleared.")
    return redirect("sandbox_segment:inbox", write_key=workspace.write_key)


@csrf_exempt
@require_POST
def clear_json(request: HttpRequest, write_key: str) -> JsonResponse:
    workspace = _workspace_or_404(write_key)
    inbox.clear(workspace)
    return JsonResponse({"cleared": True})

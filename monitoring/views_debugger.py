"""The record debugger page: /debug/records/?q=<HubSpot id or email> (see monitoring.debugger)."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from sources.models import Record

from .debugger import explain, look_up


@workspace_view()
def record_debugger(request: WorkspaceRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    record = None
    matches: list[Record] = []
    problem = ""
    deleted = ""
    gone_heading = ""
    record_id = request.GET.get("record", "")
    if record_id.isdigit():
        record = get_for_workspace(request, Record.objects.select_related("source"), pk=int(record_id))
    elif query:
        found = look_up(request.workspace, query, mapping_id=request.GET.get("mapping", ""))
        matches, problem, deleted, gone_heading = found.matches, found.problem, found.gone, found.gone_heading
        if len(matches) == 1:
            record = matches[0]
    context = {"query": query, "matches": matches if record is None else [], "problem": problem, "deleted": deleted}
    context["gone_heading"] = gone_heading
    if record is not None:
        context.update(explain(record))
    return render(request, "hubsync/record_debugger.html", context)

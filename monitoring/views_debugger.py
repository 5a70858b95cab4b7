"""The record debugger page: /debug/records/?q=<HubSpot id or email> (see monitoring.debugger)."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from mappings.models import Mapping
from sources.models import Record

from .debugger import explain, find_records, not_in_mirror


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
        matches, problem = find_records(request.workspace, query)
        mapping_id = request.GET.get("mapping", "")
        if len(matches) > 1 and mapping_id.isdigit():
            # Coming from a mapping's rejected records: the id means a record of that mapping's collection.
            mapping = (
                Mapping.objects.filter(pk=int(mapping_id), destination__workspace=request.workspace)
                .select_related("data_model")
                .first()
            )
            if mapping is not None:
                model = mapping.data_model
                matches = [
                    r for r in matches if r.source_id == model.source_id and r.collection == model.collection
                ] or matches
        if len(matches) == 1:
            record = matches[0]
        elif not matches and not problem:
            why, gone_heading = not_in_mirror(request.workspace, query)
            if gone_heading:
                deleted = why
            else:
                problem = why
    context = {"query": query, "matches": matches if record is None else [], "problem": problem, "deleted": deleted}
    context["gone_heading"] = gone_heading
    if record is not None:
        context.update(explain(record))
    return render(request, "hubsync/record_debugger.html", context)

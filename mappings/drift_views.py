"""Views of schema drift: one mapping's issues as a fragment, and the one-click fixes.

Kept apart from mappings/views.py (the mapping editor) so the two evolve independently; both are wired in
mappings/urls.py.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template import RequestContext, Template
from django.urls import reverse
from django.views.decorators.http import require_POST

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.http import safe_next
from hubsync.models import Role

from .drift import DriftFixError, fix_issue
from .models import Mapping, MappingIssue

_PANEL = Template("{% load drift %}{% drift_panel mapping=mapping %}")


@workspace_view()
def mapping_drift(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    """The open drift issues of one mapping (the fragment the mapping page includes), as a page or for htmx."""
    mapping = get_for_workspace(request, Mapping, pk=mapping_id)
    if request.htmx:
        return HttpResponse(_PANEL.render(RequestContext(request, {"mapping": mapping})))
    # The "nothing to review" line depends on open issues, not on the pause: a flagged (not paused) mapping
    # still has changes to review.
    open_issues = mapping.issues.filter(resolved_at__isnull=True).exists()
    return render(
        request,
        "mappings/drift.html",
        {"mapping": mapping, "open_issues": open_issues, "nav_section": "destinations"},
    )


@workspace_view(role=Role.VIEWER, write_role=Role.ADMIN)
@require_POST
def issue_fix(request: WorkspaceRequest, issue_id: int) -> HttpResponse:
    issue = get_for_workspace(request, MappingIssue.objects.select_related("mapping"), pk=issue_id)
    action = request.POST.get("action", "")
    try:
        fix_issue(issue=issue, action=action, actor=request.user)
    except DriftFixError as exc:
        messages.error(request, str(exc))
    else:
        mapping = Mapping.objects.select_related("data_model").get(pk=issue.mapping_id)
        state = "paused still (other changes are open)" if mapping.paused else "delivering again"
        done = {
            "remove": f"{issue.property_name} was removed from the data model “{mapping.data_model}” and its mappings.",
            "repoint": f"The data model “{mapping.data_model}” and its mappings now use {issue.new_property}.",
            "accept": f"{issue.property_name} is kept with its new type.",
            "resume": "Resumed without changes.",
        }[action]
        messages.success(request, f"{issue.summary} {done} The mapping “{mapping}” is {state}.")
    return HttpResponseRedirect(safe_next(request, reverse("mappings:drift", args=[issue.mapping_id])))

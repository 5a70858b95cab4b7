"""The dashboard: the home page of a workspace."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render

from hubsync.access import WorkspaceRequest, workspace_view

from . import charts
from . import dashboard as board_module


@workspace_view()
def dashboard(request: WorkspaceRequest) -> HttpResponse:
    """Health of every source and mapping, live progress of running work, charts of the last 30 days. A
    constant number of queries whatever the data size (monitoring.dashboard); the workers panel loads lazily."""
    board = board_module.build(request.workspace)
    if not board.sources:
        # Nothing connected yet: the empty state with the first step.
        return render(request, "hubsync/dashboard.html", {"board": board})
    board_module.attach_board_progress(board)
    points = board_module.chart_runs(request.workspace)
    context = {"board": board, "charts": charts.run_charts(points), "chart_days": board_module.CHART_DAYS}
    return render(request, "hubsync/dashboard.html", context)

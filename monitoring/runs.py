"""Run pages (every SyncRun and DeliveryRun has one), their live progress fragments, and the dashboard's live
part and lazy workers panel. Progress fragments and the live part are polled by htmx every 2 s and answer 286
once the work has ended, which stops the polling."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_htmx.http import HTMX_STOP_POLLING

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.redact import redact
from mappings.models import DeliveryRun
from sources.models import SyncRun

from . import charts, dashboard, workers


def _sync_run(request: HttpRequest, source_id: int, sync_run_id: int) -> Any:
    return get_for_workspace(request, SyncRun.objects.select_related("source"), pk=sync_run_id, source_id=source_id)


def _delivery_run(request: HttpRequest, delivery_run_id: int) -> Any:
    qs = DeliveryRun.objects.select_related(
        "mapping__destination", "mapping__data_model__source", "mapping__profile_space", "sync_run"
    )
    return get_for_workspace(request, qs, pk=delivery_run_id)


def _source_secrets(source: Any) -> list[str]:
    # Decrypted only to find and hide them in error texts; never rendered.
    try:
        return [source.token, source.access_token]
    except Exception:  # a key rotation problem must not hide the run page
        return []


def _space_secrets(space: Any) -> list[str]:
    try:
        return [space.write_key]
    except Exception:
        return []


@workspace_view()
def sync_run_detail(request: WorkspaceRequest, source_id: int, sync_run_id: int) -> HttpResponse:
    run = _sync_run(request, source_id, sync_run_id)
    secrets = _source_secrets(run.source)
    collections = dashboard.collection_rows(run.counts)
    for row in collections:
        row["error"] = redact(row["error"], secrets)
    deliveries = list(
        run.delivery_runs.select_related("mapping__data_model", "mapping__destination").order_by("created_at", "id")
    )
    duration = run.finished_at - run.started_at if run.started_at and run.finished_at else None
    context = {
        "run": run,
        "source": run.source,
        "collections": collections,
        "deliveries": deliveries,
        "error": redact(run.error, secrets),
        "duration": dashboard.run_duration(duration) if duration is not None else None,
        "queued_for": dashboard.human_duration(run.started_at - run.created_at) if run.started_at else None,
        "progress": dashboard.sync_progress(run),
        "total_read": dashboard.total_read(run.counts),
        "budget": dashboard.budget_use(run),
    }
    return render(request, "hubsync/sync_run.html", context)


@workspace_view()
def sync_run_progress(request: WorkspaceRequest, source_id: int, sync_run_id: int) -> HttpResponse:
    run = _sync_run(request, source_id, sync_run_id)
    progress = dashboard.sync_progress(run)
    context = {"run": run, "progress": progress, "kind": "sync", "poll_url": request.path}
    return render(request, "hubsync/_progress.html", context, status=HTMX_STOP_POLLING if progress.finished else 200)


@workspace_view()
def delivery_run_detail(request: WorkspaceRequest, delivery_run_id: int) -> HttpResponse:
    run = _delivery_run(request, delivery_run_id)
    mapping = run.mapping
    secrets = _space_secrets(mapping.profile_space) + _source_secrets(mapping.data_model.source)
    duration = run.finished_at - run.started_at if run.started_at and run.finished_at else None
    context = {
        "run": run,
        "mapping": mapping,
        "source": mapping.data_model.source,
        "error": redact(run.error, secrets),
        "duration": dashboard.run_duration(duration) if duration is not None else None,
        "queued_for": dashboard.human_duration(run.started_at - run.created_at) if run.started_at else None,
        "progress": dashboard.delivery_progress(run),
    }
    return render(request, "hubsync/delivery_run.html", context)


@workspace_view()
def delivery_run_progress(request: WorkspaceRequest, delivery_run_id: int) -> HttpResponse:
    run = _delivery_run(request, delivery_run_id)
    progress = dashboard.delivery_progress(run)
    context = {"run": run, "progress": progress, "kind": "delivery", "poll_url": request.path}
    return render(request, "hubsync/_progress.html", context, status=HTMX_STOP_POLLING if progress.finished else 200)


@workspace_view()
def dashboard_live(request: WorkspaceRequest) -> HttpResponse:
    """The dashboard's live part (running panel, source and mapping rows), polled every 2 s while anything runs.
    Once nothing has run for LIVE_GRACE, the answer is a 286: htmx swaps it in and stops polling."""
    board = dashboard.build(request.workspace)
    dashboard.attach_board_progress(board, count_total=True)
    context: dict[str, Any] = {"board": board}
    if not board.live:
        # The work ended: the charts take in the runs that just finished, once (out of band).
        context["charts"] = charts.run_charts(dashboard.chart_runs(request.workspace))
    return render(request, "hubsync/_live.html", context, status=200 if board.live else HTMX_STOP_POLLING)


@workspace_view()
def dashboard_watch(request: WorkspaceRequest) -> HttpResponse:
    """The idle dashboard's question every 10 s: has work started? A 204 either way; when it has, the
    "hubsync-work" event (HX-Trigger) makes the live part fetch itself and follow the work."""
    response = HttpResponse(status=204)
    if dashboard.anything_live(request.workspace):
        response["HX-Trigger"] = "hubsync-work"
    return response


@workspace_view()
def dashboard_workers(request: WorkspaceRequest) -> HttpResponse:
    """The workers panel, loaded after the page (hx-trigger="load"): pinging a silent cluster takes the ping's
    timeout, which the dashboard itself must never wait for."""
    report = workers.workers_report(request.workspace)
    return render(request, "hubsync/_workers.html", {"report": report, "now": timezone.now()})

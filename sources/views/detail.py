"""The source page: Overview (setup checklist, runs), Models, Settings; enable, sync now, full sync, reconnect,
delete."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from django_htmx.http import HTMX_STOP_POLLING

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.models import Role

from .. import oauth, selectors, services
from ..extraction import ids_pass_estimates
from ..forms import (
    BasicSettingsForm,
    DeleteForm,
    SelectiveSyncForm,
)
from ..models import Source, SourceCollection, SyncRun
from .wizard import _oauth_redirect

# --- the source page ----------------------------------------------------------------------------------


def _page(request: WorkspaceRequest, source: Source, tab: str, template: str, **extra: Any) -> HttpResponse:
    allowed, missing = selectors.can_enable(source)
    ctx = {
        "source": source,
        "live_run": source.runs.filter(status__in=SyncRun.ACTIVE).first(),
        "tab": tab,
        "checklist": selectors.checklist(source),
        "can_enable": allowed,
        "enable_missing": missing,
        "can_change": request.membership.allows(Role.ADMIN),
        **extra,
    }
    return render(request, template, ctx)


def _run_rows(source: Source, limit: int = 10) -> list[dict[str, Any]]:
    rows = []
    for run in source.runs.all()[:limit]:
        totals = dict.fromkeys(("read", "new", "updated", "unchanged", "archived", "deleted"), 0)
        errors = []
        for name, counts in (run.counts or {}).items():
            if not isinstance(counts, dict):
                continue
            for key in totals:
                value = counts.get(key)
                if isinstance(value, int):
                    totals[key] += value
            if counts.get("error"):
                errors.append(f"{name}: {counts['error']}")
        rows.append({"run": run, "totals": totals, "errors": errors})
    return rows


@workspace_view()
def source_detail(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source.objects.select_related("last_run"), pk=pk)
    active = source.runs.filter(status__in=SyncRun.ACTIVE).first()
    runs = _run_rows(source)
    collections = list(source.collections.all())
    return _page(
        request,
        source,
        "overview",
        "sources/detail_overview.html",
        runs=runs,
        latest_run=source.last_run or (runs[0]["run"] if runs else None),
        active_run=active,
        collections=collections,
        live=selectors.live_summary(source),
        webhook_url=request.build_absolute_uri(reverse("sources:hubspot_webhook")),
    )


@workspace_view()
def source_runs(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The runs fragment the Overview polls while a run is active; 286 tells htmx to stop polling."""
    source = get_for_workspace(request, Source, pk=pk)
    active = source.runs.filter(status__in=SyncRun.ACTIVE).first()
    ctx = {
        "source": source,
        "runs": _run_rows(source),
        "active_run": active,
        "can_change": request.membership.allows(Role.ADMIN),
    }
    return render(request, "sources/_runs.html", ctx, status=200 if active else HTMX_STOP_POLLING)


@workspace_view()
def source_models(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    # The tab's content (data models and their mappings) comes from the higher apps' template tags.
    return _page(request, source, "models", "sources/detail_models.html")


def _settings_forms(source: Source, basic: Any = None, sync: Any = None) -> dict[str, Any]:
    choices, counts = selectors.collection_choices(source)
    basic = basic or BasicSettingsForm(
        initial={"name": source.name, "label": source.label, "schema_name": source.schema_name}, source=source
    )
    sync = sync or SelectiveSyncForm(
        initial={
            "start_date": source.start_date,
            "sync_interval": str(int(source.sync_interval.total_seconds())),
            "collections": [sc.collection for sc in source.collections.all() if sc.selected],
        },
        collection_choices=choices,
    )
    return {"basic_form": basic, "sync_form": sync, "counts": counts}


@workspace_view()
def source_settings(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    basic = sync = None
    if request.method == "POST":
        section = request.POST.get("section")
        if section == "basic":
            basic = BasicSettingsForm(request.POST, source=source)
            if basic.is_valid():
                changes = services.update_basic(source=source, actor=request.user, **basic.cleaned_data)
                messages.success(request, "Settings saved." if changes else "Nothing changed.")
                return redirect("sources:settings", source.pk)
        elif section == "sync":
            sync = SelectiveSyncForm(request.POST, collection_choices=selectors.collection_choices(source)[0])
            if sync.is_valid():
                changes = services.update_selective_sync(source=source, actor=request.user, **sync.cleaned_data)
                source.refresh_from_db()
                _explain_sync_changes(request, source, changes)
                return redirect("sources:settings", source.pk)
    return _page(request, source, "settings", "sources/detail_settings.html", **_settings_forms(source, basic, sync))


def _explain_sync_changes(request: HttpRequest, source: Source, changes: dict[str, Any]) -> None:
    if not changes:
        messages.info(request, "Nothing changed.")
        return
    messages.success(request, "Selective sync saved. It applies from the next sync on.")
    if "start_date" in changes and source.first_synced_at is not None:
        messages.warning(
            request,
            "The start date changed after the first sync. History is re-read only by a full sync: "
            "start one from the Overview tab when you want it.",
        )
    if changes.get("collections_removed"):
        names = ", ".join(oauth.COLLECTION_LABELS.get(c, c) for c in changes["collections_removed"])
        messages.info(request, f"{names}: no longer synced. The rows already in the mirror stay.")


@workspace_view(role=Role.ADMIN)
@require_POST
def source_enable(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    want = request.POST.get("enabled") == "1"
    done, missing, run = services.set_enabled(source=source, actor=request.user, enabled=want)
    if not done:
        messages.error(
            request,
            "This source cannot be enabled yet: it syncs only once an enabled mapping uses one of its data models. "
            f"Still to do: {', '.join(missing)}.",
        )
    elif want and run is not None:
        # The guide's next step is watching the first sync: link to it while it runs.
        url = reverse("sync_run", args=[source.pk, run.pk])
        messages.success(
            request, format_html('Source enabled. The first sync has started: <a href="{}">follow it</a>.', url)
        )
    elif want:
        messages.success(request, "Source enabled.")
    else:
        messages.success(request, "Source disabled. Scheduled syncs are paused.")
    target = "sources:detail" if request.POST.get("next") == "overview" else "sources:settings"
    return redirect(target, source.pk)


@workspace_view(role=Role.ADMIN)
@require_POST
def source_live(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The "Live updates" switch (owners and admins)."""
    source = get_for_workspace(request, Source, pk=pk)
    want = request.POST.get("live") == "1"
    services.set_live(source=source, actor=request.user, enabled=want)
    messages.success(
        request,
        "Live updates on: HubSpot's webhook events update the mirror within seconds."
        if want
        else "Live updates off: changes arrive with the scheduled syncs.",
    )
    return redirect("sources:detail", source.pk)


@workspace_view(role=Role.ADMIN)
@require_POST
def source_sync(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    if _sync_refused(request, source):
        return redirect("sources:detail", source.pk)
    run = services.start_sync(source=source, actor=request.user, full=False)
    if run is None:
        messages.info(request, "A sync of this source is already queued or running.")
    else:
        messages.success(request, "Sync started.")
    return redirect("sources:detail", source.pk)


def _sync_refused(request: HttpRequest, source: Source) -> bool:
    if source.status == Source.Status.NEEDS_RECONNECT:
        messages.error(request, "Reconnect HubSpot first: the connection no longer works.")
        return True
    if not source.enabled:
        messages.error(request, "Enable the source first: its first sync starts when you enable it.")
        return True
    return False


@workspace_view()
def source_full_sync(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    if request.method == "POST":
        if _sync_refused(request, source):
            return redirect("sources:detail", source.pk)
        run = services.start_sync(source=source, actor=request.user, full=True)
        if run is None:
            messages.info(request, "A sync of this source is already queued or running; try again when it ends.")
        else:
            messages.success(request, "Full sync started.")
        return redirect("sources:detail", source.pk)
    estimate = _deletion_pass_estimate(source) if source.start_date else None
    return _page(request, source, "overview", "sources/confirm_full_sync.html", pass_estimate=estimate)


def _deletion_pass_estimate(source: Source) -> dict[str, Any] | None:
    """What the ids-only pass of a Full sync with a start date costs (sources.extraction.deletions): one request per
    100 live records HubSpot holds in each selected collection, before the start date too. The last pass counted
    them (`listed` in its run's counts); without one, the mirror's count (the window's records only) is a lower
    bound. None when nothing is known (no records in the mirror yet: then the Full sync makes no pass)."""

    selected = list(SourceCollection.objects.filter(source=source, selected=True).values_list("collection", flat=True))
    estimates = ids_pass_estimates(source, selected)
    records = sum(n for n, _measured in estimates.values())
    requests = sum(-(-n // 100) for n, _measured in estimates.values())
    if not records:
        return None
    return {"records": records, "requests": requests, "measured": all(m for _n, m in estimates.values())}


@workspace_view(role=Role.ADMIN)
@require_POST
def source_reconnect(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    return _oauth_redirect(request, purpose="reconnect", source_id=source.pk)


@workspace_view()
def source_delete(request: WorkspaceRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    if request.method == "POST":
        form = DeleteForm(request.POST, source=source)
        if form.is_valid():
            name = source.name
            try:
                services.delete_source(source=source, actor=request.user)
            except ProtectedError as exc:
                # Its data models go with it, and a mapping protects the model it reads: name those mappings.
                blocking = sorted({str(obj) for obj in exc.protected_objects})
                response = _page(
                    request, source, "settings", "sources/confirm_delete.html", form=form, blocking=blocking
                )
                response.status_code = 409
                return response
            messages.success(request, f"{name} was deleted.")
            return redirect("sources:list")
    else:
        form = DeleteForm(source=source)
    return _page(request, source, "settings", "sources/confirm_delete.html", form=form)

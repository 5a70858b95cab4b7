"""Connections → Sources: the list, the catalog, the Add Source wizard and the source page (three tabs).

The wizard keeps its progress in the session under WIZARD_KEY (name, label, the HubSpot connection with its
tokens encrypted, the schema name) and creates the Source only at the last step, so abandoning it leaves
nothing behind.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HTMX_STOP_POLLING
from oauthlib.oauth2 import OAuth2Error

from hubsync.access import get_for_workspace, workspace_view
from hubsync.models import Role

from . import oauth, setup
from .forms import (
    DEFAULT_INTERVAL,
    BasicSettingsForm,
    DeleteForm,
    NameForm,
    SchemaNameForm,
    SelectiveSyncForm,
    unique_schema_name,
)
from .models import Source, SyncRun

WIZARD_KEY = "source_wizard"
WIZARD_STEPS = ["Name", "Log in to HubSpot", "Schema name", "Selective sync"]


# --- list and catalog ---------------------------------------------------------------------------------


@workspace_view()
def source_list(request: HttpRequest) -> HttpResponse:
    sources = (
        Source.objects.filter(workspace=request.workspace)
        .select_related("last_run")
        .annotate(collection_count=Count("collections", filter=Q(collections__selected=True)))
    )
    return render(request, "sources/list.html", {"sources": sources})


@workspace_view()
def catalog(request: HttpRequest) -> HttpResponse:
    return render(request, "sources/catalog.html", {"collections": oauth.COLLECTIONS[:4]})


# --- the wizard ---------------------------------------------------------------------------------------


def _wizard(request: HttpRequest) -> dict[str, Any] | None:
    data = request.session.get(WIZARD_KEY)
    if not data or data.get("workspace_id") != request.workspace.pk:
        return None
    return data


def _save_wizard(request: HttpRequest, data: dict[str, Any]) -> None:
    request.session[WIZARD_KEY] = data  # reassign so the session is saved


def _wizard_ctx(step: int, **extra: Any) -> dict[str, Any]:
    return {"steps": WIZARD_STEPS, "step": step, **extra}


def _restart(request: HttpRequest, why: str = "") -> HttpResponse:
    if why:
        messages.info(request, why)
    return redirect("sources:new")


def _connection_step(wizard: dict[str, Any]) -> str | None:
    """Where to go when the login step is not finished: no login yet, or an unanswered duplicate warning."""
    if not wizard.get("connection"):
        return "sources:wizard_connect"
    if wizard.get("duplicate_of") and not wizard.get("duplicate_ok"):
        return "sources:wizard_duplicate"
    return None


@workspace_view(role=Role.ADMIN)
def wizard_name(request: HttpRequest) -> HttpResponse:
    wizard = _wizard(request) or {}
    if request.method == "POST":
        form = NameForm(request.POST)
        if form.is_valid():
            # A new name restarts the wizard: an earlier HubSpot login is not carried over silently.
            _save_wizard(
                request,
                {
                    "workspace_id": request.workspace.pk,
                    "name": form.cleaned_data["name"],
                    "label": form.cleaned_data["label"],
                },
            )
            return redirect("sources:wizard_connect")
    else:
        form = NameForm(initial={"name": wizard.get("name", "HubSpot"), "label": wizard.get("label", "")})
    return render(request, "sources/wizard_name.html", _wizard_ctx(1, form=form))


@workspace_view(role=Role.ADMIN)
def wizard_connect(request: HttpRequest) -> HttpResponse:
    wizard = _wizard(request)
    if not wizard:
        return _restart(request)
    ctx = _wizard_ctx(
        2,
        wizard=wizard,
        connection=wizard.get("connection"),
        required_scopes=oauth.REQUIRED_SCOPES,
        optional_scopes=oauth.OPTIONAL_SCOPES,
    )
    return render(request, "sources/wizard_connect.html", ctx)


def _oauth_redirect(request: HttpRequest, *, purpose: str, source_id: int | None = None) -> HttpResponse:
    try:
        return redirect(oauth.begin(request, purpose=purpose, source_id=source_id))
    except OAuth2Error:
        # Only a misconfiguration gets here (a plain-http HubSpot URL that is not the local sandbox).
        return render(
            request,
            "sources/oauth_error.html",
            {
                "message": "HubSpot's login page must be reached over https. Check HUBSPOT_AUTHORIZE_URL.",
                "retry_url": "",
                "cancel_url": reverse("sources:list"),
            },
            status=500,
        )


@workspace_view(role=Role.ADMIN)
@require_POST
def oauth_start(request: HttpRequest) -> HttpResponse:
    if not _wizard(request):
        return _restart(request)
    return _oauth_redirect(request, purpose="wizard")


def _oauth_failed(request: HttpRequest, flow: dict[str, Any], message: str) -> HttpResponse:
    if flow.get("purpose") == "reconnect":
        retry_url = reverse("sources:reconnect", args=[flow["source_id"]])
        cancel_url = reverse("sources:settings", args=[flow["source_id"]])
    else:
        retry_url = reverse("sources:oauth_start")
        cancel_url = reverse("sources:wizard_cancel")
    ctx = {"message": message, "retry_url": retry_url, "cancel_url": cancel_url, "purpose": flow.get("purpose")}
    ctx["cancel_post"] = cancel_url == reverse("sources:wizard_cancel")
    if flow.get("purpose") == "wizard":
        ctx.update(_wizard_ctx(2))
    return render(request, "sources/oauth_error.html", ctx)


@workspace_view(role=Role.ADMIN)
def oauth_callback(request: HttpRequest) -> HttpResponse:
    try:
        flow = oauth.take_flow(request)  # only the session that started this login may finish it; single use
    except PermissionDenied as exc:
        ctx = {"message": str(exc), "retry_url": "", "cancel_url": reverse("sources:list")}
        return render(request, "sources/oauth_error.html", ctx, status=403)
    error = request.GET.get("error")
    if error:
        if error == "access_denied":
            message = "You declined the connection on HubSpot's page, so hubsync was not given access."
        else:
            message = "HubSpot did not complete the login"
        description = request.GET.get("error_description", "").strip()
        if description:
            message += f" HubSpot said: “{description[:300].rstrip('.')}”."
        return _oauth_failed(request, flow, message)
    code = request.GET.get("code", "")
    if not code:
        return _oauth_failed(request, flow, "HubSpot sent no login code back. Please try again.")
    try:
        connection = oauth.exchange(flow, code)
    except oauth.ConnectError as exc:
        return _oauth_failed(request, flow, str(exc))

    if flow["purpose"] == "reconnect":
        source = get_for_workspace(request, Source, pk=flow["source_id"])
        if source.hub_id is not None and source.hub_id != connection.hub_id:
            return _oauth_failed(
                request,
                flow,
                f"You logged in to HubSpot account {connection.hub_id}"
                f"{f' ({connection.hub_domain})' if connection.hub_domain else ''}, but this source reads "
                f"account {source.hub_id} ({source.hub_domain}). Log in again and choose that account.",
            )
        setup.apply_connection(source=source, actor=request.user, connection=connection)
        messages.success(request, f"Reconnected to HubSpot account {connection.hub_id}.")
        return redirect("sources:settings", source.pk)

    wizard = _wizard(request)
    if not wizard:
        return _restart(request, "The Add Source wizard had expired, so please start again.")
    wizard["connection"] = connection.to_session()
    wizard.pop("discovered", None)
    wizard["duplicate_ok"] = False
    duplicate = Source.objects.filter(workspace=request.workspace, hub_id=connection.hub_id).first()
    wizard["duplicate_of"] = duplicate.pk if duplicate else None
    _save_wizard(request, wizard)
    if duplicate:
        return redirect("sources:wizard_duplicate")
    return redirect("sources:wizard_schema")


@workspace_view(role=Role.ADMIN)
def wizard_duplicate(request: HttpRequest) -> HttpResponse:
    wizard = _wizard(request)
    if not wizard or not wizard.get("connection"):
        return _restart(request)
    if not wizard.get("duplicate_of"):
        return redirect("sources:wizard_schema")
    if request.method == "POST":
        if request.POST.get("action") == "continue":
            wizard["duplicate_ok"] = True
            _save_wizard(request, wizard)
            return redirect("sources:wizard_schema")
        request.session.pop(WIZARD_KEY, None)
        messages.info(request, "Nothing was added.")
        return redirect("sources:list")
    existing = Source.objects.filter(workspace=request.workspace, pk=wizard["duplicate_of"]).first()
    ctx = _wizard_ctx(2, wizard=wizard, existing=existing, connection=wizard["connection"])
    return render(request, "sources/wizard_duplicate.html", ctx)


@workspace_view(role=Role.ADMIN)
def wizard_schema(request: HttpRequest) -> HttpResponse:
    wizard = _wizard(request)
    if not wizard:
        return _restart(request)
    if step := _connection_step(wizard):
        return redirect(step)
    if request.method == "POST":
        form = SchemaNameForm(request.POST, workspace=request.workspace)
        if form.is_valid():
            wizard["schema_name"] = form.cleaned_data["schema_name"]
            _save_wizard(request, wizard)
            return redirect("sources:wizard_sync")
    else:
        initial = wizard.get("schema_name") or unique_schema_name(request.workspace, wizard["name"])
        form = SchemaNameForm(initial={"schema_name": initial}, workspace=request.workspace)
    ctx = _wizard_ctx(3, form=form, wizard=wizard, connection=wizard["connection"])
    return render(request, "sources/wizard_schema.html", ctx)


@workspace_view(role=Role.ADMIN)
def wizard_sync(request: HttpRequest) -> HttpResponse:
    wizard = _wizard(request)
    if not wizard:
        return _restart(request)
    if step := _connection_step(wizard):
        return redirect(step)
    if not wizard.get("schema_name"):
        return redirect("sources:wizard_schema")
    connection = oauth.Connection.from_session(wizard["connection"])
    if "discovered" not in wizard:
        # Read live once per login; the POST reuses it so a validation error does not re-ask HubSpot.
        wizard["discovered"] = [
            {"name": d.name, "label": d.label, "count": d.property_count, "error": d.error}
            for d in oauth.discover_collections(connection)
        ]
        _save_wizard(request, wizard)
    discovered = wizard["discovered"]
    choices = [(d["name"], d["label"]) for d in discovered]
    if request.method == "POST":
        form = SelectiveSyncForm(request.POST, collection_choices=choices)
        if form.is_valid():
            try:
                source = setup.create_source(
                    workspace=request.workspace,
                    actor=request.user,
                    name=wizard["name"],
                    label=wizard.get("label", ""),
                    connection=connection,
                    schema_name=wizard["schema_name"],
                    start_date=form.cleaned_data["start_date"],
                    sync_interval=form.cleaned_data["sync_interval"],
                    collections=form.cleaned_data["collections"],
                )
            except IntegrityError:
                # Someone took the schema name since step 3.
                wizard.pop("schema_name", None)
                _save_wizard(request, wizard)
                messages.error(request, "That schema name was taken in the meantime. Choose another one.")
                return redirect("sources:wizard_schema")
            request.session.pop(WIZARD_KEY, None)
            oauth.remember_available(
                source, [oauth.DiscoveredCollection(d["name"], d["label"], d["count"], d["error"]) for d in discovered]
            )
            messages.success(request, f"{source.name} was added. It stays disabled until its setup is complete.")
            return redirect("sources:detail", source.pk)
    else:
        initial = [d["name"] for d in discovered if d["name"] in oauth.DEFAULT_COLLECTIONS]
        form = SelectiveSyncForm(
            initial={"sync_interval": DEFAULT_INTERVAL, "collections": initial}, collection_choices=choices
        )
    counts = {d["name"]: d for d in discovered}
    ctx = _wizard_ctx(4, form=form, wizard=wizard, counts=counts, connection=wizard["connection"])
    return render(request, "sources/wizard_sync.html", ctx)


@workspace_view(role=Role.ADMIN)
@require_POST
def wizard_cancel(request: HttpRequest) -> HttpResponse:
    request.session.pop(WIZARD_KEY, None)
    request.session.pop(oauth.FLOW_SESSION_KEY, None)
    return redirect("sources:list")


# --- the source page ----------------------------------------------------------------------------------


def _page(request: HttpRequest, source: Source, tab: str, template: str, **extra: Any) -> HttpResponse:
    allowed, missing = setup.can_enable(source)
    ctx = {
        "source": source,
        "tab": tab,
        "checklist": setup.checklist(source),
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
def source_detail(request: HttpRequest, pk: int) -> HttpResponse:
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
    )


@workspace_view()
def source_runs(request: HttpRequest, pk: int) -> HttpResponse:
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
def source_models(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    # The tab's content (data models and their mappings) comes from the higher apps' template tags.
    return _page(request, source, "models", "sources/detail_models.html")


def _collection_choices(source: Source) -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]]]:
    """(choices, {name: {"count", "error"}}): what HubSpot offers now, plus every collection chosen before (so
    one HubSpot no longer offers can still be removed)."""
    available = {d.name: d for d in oauth.available_collections(source)}
    names = set(available) | {sc.collection for sc in source.collections.all()}
    order = {c.name: i for i, c in enumerate(oauth.COLLECTIONS)}
    ordered = sorted(names, key=lambda n: (order.get(n, len(order)), n))
    counts = {n: {"count": available[n].property_count, "error": available[n].error} for n in available}
    return [(n, oauth.COLLECTION_LABELS.get(n, n)) for n in ordered], counts


def _settings_forms(source: Source, basic: Any = None, sync: Any = None) -> dict[str, Any]:
    choices, counts = _collection_choices(source)
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
def source_settings(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    basic = sync = None
    if request.method == "POST":
        section = request.POST.get("section")
        if section == "basic":
            basic = BasicSettingsForm(request.POST, source=source)
            if basic.is_valid():
                changes = setup.update_basic(source=source, actor=request.user, **basic.cleaned_data)
                messages.success(request, "Settings saved." if changes else "Nothing changed.")
                return redirect("sources:settings", source.pk)
        elif section == "sync":
            sync = SelectiveSyncForm(request.POST, collection_choices=_collection_choices(source)[0])
            if sync.is_valid():
                changes = setup.update_selective_sync(source=source, actor=request.user, **sync.cleaned_data)
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
def source_enable(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    want = request.POST.get("enabled") == "1"
    done, missing, run = setup.set_enabled(source=source, actor=request.user, enabled=want)
    if not done:
        messages.error(
            request,
            "This source cannot be enabled yet: it syncs only once an enabled mapping uses one of its data models. "
            f"Still to do: {', '.join(missing)}.",
        )
    elif want:
        messages.success(request, "Source enabled." + (" The first sync has started." if run else ""))
    else:
        messages.success(request, "Source disabled. Scheduled syncs are paused.")
    target = "sources:detail" if request.POST.get("next") == "overview" else "sources:settings"
    return redirect(target, source.pk)


@workspace_view(role=Role.ADMIN)
@require_POST
def source_sync(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    if _sync_refused(request, source):
        return redirect("sources:detail", source.pk)
    run = setup.start_sync(source=source, actor=request.user, full=False)
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
def source_full_sync(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    if request.method == "POST":
        if _sync_refused(request, source):
            return redirect("sources:detail", source.pk)
        run = setup.start_sync(source=source, actor=request.user, full=True)
        if run is None:
            messages.info(request, "A sync of this source is already queued or running; try again when it ends.")
        else:
            messages.success(request, "Full sync started.")
        return redirect("sources:detail", source.pk)
    estimate = _deletion_pass_estimate(source) if source.start_date else None
    return _page(request, source, "overview", "sources/confirm_full_sync.html", pass_estimate=estimate)


def _deletion_pass_estimate(source: Source) -> dict[str, Any] | None:
    """What the ids-only pass of a Full sync with a start date costs (sources.extract, step 4): one request per
    100 live records HubSpot holds in each selected collection, before the start date too. The last pass counted
    them (`listed` in its run's counts); without one, the mirror's count (the window's records only) is a lower
    bound. None when nothing is known (no records in the mirror yet: then the Full sync makes no pass)."""
    from .extraction import ids_pass_estimates
    from .models import SourceCollection

    selected = list(SourceCollection.objects.filter(source=source, selected=True).values_list("collection", flat=True))
    estimates = ids_pass_estimates(source, selected)
    records = sum(n for n, _measured in estimates.values())
    requests = sum(-(-n // 100) for n, _measured in estimates.values())
    if not records:
        return None
    return {"records": records, "requests": requests, "measured": all(m for _n, m in estimates.values())}


@workspace_view(role=Role.ADMIN)
@require_POST
def source_reconnect(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    return _oauth_redirect(request, purpose="reconnect", source_id=source.pk)


@workspace_view()
def source_delete(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=pk)
    if request.method == "POST":
        form = DeleteForm(request.POST, source=source)
        if form.is_valid():
            name = source.name
            setup.delete_source(source=source, actor=request.user)
            messages.success(request, f"{name} was deleted.")
            return redirect("sources:list")
    else:
        form = DeleteForm(source=source)
    return _page(request, source, "settings", "sources/confirm_delete.html", form=form)

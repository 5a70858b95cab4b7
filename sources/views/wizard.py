"""Connections → Sources: the list, the catalog, the Add Source wizard and the HubSpot login it goes through (also
used to reconnect a source).

The wizard keeps its progress in the session under WIZARD_KEY (name, label, the HubSpot connection with its
tokens encrypted, the schema name) and creates the Source only at the last step, so abandoning it leaves
nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from oauthlib.oauth2 import OAuth2Error

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.models import Role

from .. import oauth, services
from ..forms import (
    DEFAULT_INTERVAL,
    NameForm,
    SchemaNameForm,
    SelectiveSyncForm,
    unique_schema_name,
)
from ..models import Source

WIZARD_KEY = "source_wizard"
WIZARD_STEPS = ["Name", "Log in to HubSpot", "Schema name", "Selective sync"]


# --- list and catalog ---------------------------------------------------------------------------------


@workspace_view()
def source_list(request: WorkspaceRequest) -> HttpResponse:
    sources = (
        Source.objects.filter(workspace=request.workspace)
        .select_related("last_run")
        .annotate(collection_count=Count("collections", filter=Q(collections__selected=True)))
    )
    return render(request, "sources/list.html", {"sources": sources})


@dataclass(frozen=True)
class CatalogItem:
    slug: str
    name: str
    kind: str  # "Source" or "Destination"
    categories: tuple[str, ...]
    summary: str
    action: str  # the button's words
    url_name: str  # by name: destinations belong to a higher app

    def matches(self, query: str) -> bool:
        words = query.lower().split()
        haystack = " ".join((self.name, self.kind, *self.categories, self.summary)).lower()
        return all(word in haystack for word in words)

    @property
    def search_text(self) -> str:
        return " ".join((self.name, self.kind, *self.categories, self.summary)).lower()


def _hubspot_summary() -> str:
    labels = ", ".join(c.label.lower() for c in oauth.COLLECTIONS[:4])
    return (
        f"Reads your HubSpot CRM: {labels} and more. You log in to HubSpot and choose the account; hubsync only "
        "asks to read."
    )


def catalog_items() -> list[CatalogItem]:
    return [
        CatalogItem(
            "hubspot", "HubSpot", "Source", ("CRM", "Cloud app"), _hubspot_summary(), "Add Source", "sources:new"
        ),
        CatalogItem(
            "segment-profiles",
            "Segment Profiles",
            "Destination",
            ("Profiles", "Unify"),
            "Writes users and accounts to a Segment Unify Profile Space with identify and group calls.",
            "Add destination",
            "mappings:destination_new",
        ),
    ]


@workspace_view()
def catalog(request: WorkspaceRequest) -> HttpResponse:
    """Connections → Catalog: search (as you type with JavaScript, by `?q=` without), select a card, then its
    Add button. A search that leaves one card selects it."""
    query = request.GET.get("q", "").strip()[:100]
    items = catalog_items()
    shown = [item for item in items if item.matches(query)] if query else items
    chosen = request.GET.get("selected", "")
    selected = next((item for item in shown if item.slug == chosen), None)
    if selected is None and query and len(shown) == 1:
        selected = shown[0]
    ctx = {
        "query": query,
        "items": items,
        "shown": {item.slug for item in shown},
        "selected": selected,
        "selected_url": reverse(selected.url_name) if selected else "",
    }
    return render(request, "sources/catalog.html", ctx)


# --- the wizard ---------------------------------------------------------------------------------------


def _wizard(request: WorkspaceRequest) -> dict[str, Any] | None:
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
def wizard_name(request: WorkspaceRequest) -> HttpResponse:
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
def wizard_connect(request: WorkspaceRequest) -> HttpResponse:
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


def _oauth_redirect(request: WorkspaceRequest, *, purpose: str, source_id: int | None = None) -> HttpResponse:
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
def oauth_start(request: WorkspaceRequest) -> HttpResponse:
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
def oauth_callback(request: WorkspaceRequest) -> HttpResponse:
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
        services.apply_connection(source=source, actor=request.user, connection=connection)
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
    # Back on the login step, which now shows the account chosen: the guide's "return to Segment and click Next".
    messages.success(request, f"Logged in to HubSpot account {connection.hub_id}. Check it below, then click Next.")
    return redirect("sources:wizard_connect")


@workspace_view(role=Role.ADMIN)
def wizard_duplicate(request: WorkspaceRequest) -> HttpResponse:
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
def wizard_schema(request: WorkspaceRequest) -> HttpResponse:
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
def wizard_sync(request: WorkspaceRequest) -> HttpResponse:
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
            {"name": d.name, "label": d.label, "count": d.property_count, "error": d.error, "schema": d.schema}
            for d in oauth.discover_collections(connection)
        ]
        wizard["discovered_at"] = timezone.now().isoformat()
        _save_wizard(request, wizard)
    discovered = wizard["discovered"]
    choices = [(d["name"], d["label"]) for d in discovered]
    if request.method == "POST":
        form = SelectiveSyncForm(request.POST, collection_choices=choices)
        if form.is_valid():
            try:
                source = services.create_source(
                    workspace=request.workspace,
                    actor=request.user,
                    name=wizard["name"],
                    label=wizard.get("label", ""),
                    connection=connection,
                    schema_name=wizard["schema_name"],
                    start_date=form.cleaned_data["start_date"],
                    sync_interval=form.cleaned_data["sync_interval"],
                    collections=form.cleaned_data["collections"],
                    schemas={d["name"]: d.get("schema") or {} for d in discovered},
                    schema_read_at=parse_datetime(wizard.get("discovered_at") or ""),
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
def wizard_cancel(request: WorkspaceRequest) -> HttpResponse:
    request.session.pop(WIZARD_KEY, None)
    request.session.pop(oauth.FLOW_SESSION_KEY, None)
    return redirect("sources:list")

"""Sandbox pages: portals, realism knobs, data changes; plus JSON twins for tests driving a sandbox process.

These pages belong to the simulator (like HubSpot's own UI), not to a hubsync workspace: they exist only when
SANDBOX is on and need no hubsync login.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from sandbox.http import json_object

from . import data, state, webhooks
from .models import CustomProperty, Knobs, RecordChange
from .mutate import (
    PROPERTY_TYPES,
    MutationError,
    add_property,
    delete_property,
    mutate,
    purge_records,
    restore_records,
    set_properties,
)
from .portals import all_portals, get_portal, seed_portal
from .realism import json_response, reset_rate_limits
from .schema import OBJECT_TYPES

KNOB_FIELDS = {
    "rate_limits": bool,
    "rate_limit_max": int,
    "rate_limit_interval_ms": int,
    "search_rate_limit": int,
    "latency_ms": int,
    "error_rate": float,
    "reset_rate": float,
    "fail_next": int,
    "fail_next_status": str,
    "search_lag_seconds": float,
    "access_token_lifetime": int,
    "opaque_list_after": bool,
}


# Knob values are stored in 32-bit integer columns; latency is slept on every request, so at most a minute.
MAX_INT = 2**31 - 1
KNOB_MAX = {"latency_ms": 60_000, "search_lag_seconds": 3600}
# Records one mutate call may touch (the benchmarks' largest collection is a million).
MAX_MUTATION = 10_000_000


def knobs_dict(k: Knobs) -> dict[str, Any]:
    return {name: getattr(k, name) for name in KNOB_FIELDS}


def apply_knobs(values: dict[str, Any], *, checkbox_form: bool = False) -> Knobs:
    """Validate and save knob values (unknown names are an error)."""
    unknown = set(values) - set(KNOB_FIELDS) - {"csrfmiddlewaretoken"}
    if unknown:
        raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}")
    k = Knobs.load()
    for name, kind in KNOB_FIELDS.items():
        if kind is bool and checkbox_form:
            setattr(k, name, values.get(name) in ("on", "1", "true", True))
            continue
        if name not in values:
            continue
        raw = values[name]
        if kind is bool:
            value: Any = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "on", "yes")
        else:
            try:
                value = kind(raw)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"{name}: {raw!r} is not a valid {kind.__name__}") from exc
        if name in ("error_rate", "reset_rate") and not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1")
        if kind in (int, float) and value < 0 and name != "access_token_lifetime":
            raise ValueError(f"{name} must not be negative")
        if kind in (int, float) and not (math.isfinite(value) and abs(value) <= KNOB_MAX.get(name, MAX_INT)):
            raise ValueError(f"{name} must be at most {KNOB_MAX.get(name, MAX_INT)}")
        if name == "fail_next_status" and value not in ("502", "503", "504", "500", "429", "reset"):
            raise ValueError("fail_next_status must be 500, 502, 503, 504, 429 or reset")
        setattr(k, name, value)
    k.save()
    state.invalidate()
    return k


# What the examples on the sandbox page use: any loopback redirect URI is accepted (oauth.redirect_allowed).
EXAMPLE_REDIRECT_URI = "http://localhost:3000/oauth-callback"
EXAMPLE_SCOPES = "oauth crm.objects.contacts.read"


def developer_app(request: HttpRequest) -> dict[str, str] | None:
    """The sandbox's own HubSpot app, for pointing curl or HubSpot's official SDKs at the sandbox: its client id
    and secret (the sandbox's constants, never the HUBSPOT_CLIENT_SECRET a production installation sets) and its
    URLs. None when SANDBOX is off (the sandbox's URLs are not served then either)."""
    if not settings.SANDBOX:
        return None
    api_root = request.build_absolute_uri(reverse("sandbox_hubspot:index")).rstrip("/")
    authorize_url = api_root + "/oauth/authorize"
    params = {"client_id": settings.SANDBOX_HUBSPOT_CLIENT_ID, "redirect_uri": EXAMPLE_REDIRECT_URI}
    query = urlencode({**params, "scope": EXAMPLE_SCOPES}, quote_via=quote)
    return {
        "client_id": settings.SANDBOX_HUBSPOT_CLIENT_ID,
        "client_secret": settings.SANDBOX_HUBSPOT_CLIENT_SECRET,
        "api_root": api_root,
        "authorize_url": authorize_url,
        "token_url": api_root + "/oauth/v1/token",
        "example_authorize_url": f"{authorize_url}?{query}",
        "redirect_uri": EXAMPLE_REDIRECT_URI,
        "scopes": EXAMPLE_SCOPES,
    }


def index(request: HttpRequest) -> HttpResponse:
    portals = all_portals()
    counts = {
        row["portal_id"]: row
        for row in RecordChange.objects.values("portal_id").annotate(
            changes=Count("id"),
            archived=Count("id", filter=Q(archived=True, purged=False)),
            purged=Count("id", filter=Q(purged=True)),
        )
    }
    return render(
        request,
        "sandbox/hubspot/index.html",
        {
            "portals": [(p, counts.get(p.hub_id, {})) for p in portals],
            "knobs": Knobs.load(),
            "statuses": ["503", "502", "504", "500", "429", "reset"],
            "app": developer_app(request),
        },
    )


@require_POST
def knobs_update(request: HttpRequest) -> HttpResponse:
    try:
        apply_knobs(request.POST.dict(), checkbox_form=True)
        if request.POST.get("reset_counters"):
            reset_rate_limits()
        messages.success(request, "Knobs saved.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("sandbox_hubspot:index"))


@require_POST
def portal_create(request: HttpRequest) -> HttpResponse:
    try:
        hub_id = int(request.POST.get("hub_id", ""))
        sizes = {n: int(request.POST.get(n) or 0) for n in OBJECT_TYPES}
        if get_portal(hub_id) is not None:
            raise ValueError(f"portal {hub_id} exists already")
        seed_portal(
            hub_id=hub_id, name=request.POST.get("name") or None, seed=int(request.POST.get("seed") or hub_id), **sizes
        )
        messages.success(request, f"Portal {hub_id} created.")
        return redirect(reverse("sandbox_hubspot:portal", args=[hub_id]))
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(reverse("sandbox_hubspot:index"))


def portal_page(request: HttpRequest, hub_id: int) -> HttpResponse:
    portal = get_portal(hub_id)
    if portal is None:
        raise Http404("no such portal")
    recent = RecordChange.objects.filter(portal=portal).order_by("-updated_ms", "-object_id")[:25]
    hooks = webhooks.settings_dict(portal)
    if hooks["outbox"]["pending"]:
        webhooks.kick()  # events left from before a restart (or waiting for a retry) get a sender
    custom = CustomProperty.objects.filter(portal=portal).order_by("object_type", "name")
    deletable = {
        name: [p.name for p in data.type_data(portal, otype).props.values() if not p.hubspot_defined]
        for name, otype in OBJECT_TYPES.items()
    }
    return render(
        request,
        "sandbox/hubspot/portal.html",
        {
            "portal": portal,
            "collections": list(OBJECT_TYPES),
            "recent": [(ch, data.iso(ch.updated_ms)) for ch in recent],
            "custom": custom,
            "deletable": deletable,
            "property_types": list(PROPERTY_TYPES),
            "webhooks": hooks,
        },
    )


@require_POST
def portal_seed(request: HttpRequest, hub_id: int) -> HttpResponse:
    if get_portal(hub_id) is None:
        raise Http404("no such portal")
    try:
        sizes = {n: int(request.POST[n]) for n in OBJECT_TYPES if request.POST.get(n, "") != ""}
        seed = int(request.POST["seed"]) if request.POST.get("seed") else None
        seed_portal(hub_id=hub_id, seed=seed, **sizes)
        messages.success(request, "Portal re-seeded; its changes and custom properties were reset.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("sandbox_hubspot:portal", args=[hub_id]))


@require_POST
def portal_mutate(request: HttpRequest, hub_id: int) -> HttpResponse:
    portal = get_portal(hub_id)
    if portal is None:
        raise Http404("no such portal")
    try:
        result = mutate(
            portal=portal,
            collection=request.POST.get("collection", ""),
            create=int(request.POST.get("create") or 0),
            update=int(request.POST.get("update") or 0),
            archive=int(request.POST.get("archive") or 0),
            purge=int(request.POST.get("purge") or 0),
            purge_archived=int(request.POST.get("purge_archived") or 0),
            same_timestamp=bool(request.POST.get("same_timestamp")),
        )
        ids = request.POST.get("purge_ids", "").replace(",", " ").split()
        if ids:
            if not all(i.isdigit() for i in ids):
                raise MutationError("ids to delete permanently are numbers, separated by commas or spaces")
            wanted = [int(i) for i in ids]
            gone = purge_records(portal=portal, collection=request.POST.get("collection", ""), ids=wanted)
            result.purged += [str(i) for i in gone]
            missing = sorted(set(wanted) - set(gone))
            if missing:
                messages.warning(request, f"No such record (or deleted already): {', '.join(map(str, missing))}.")
        restore = request.POST.get("restore_ids", "").replace(",", " ").split()
        if restore:
            if not all(i.isdigit() for i in restore):
                raise MutationError("ids to restore are numbers, separated by commas or spaces")
            back = restore_records(
                portal=portal, collection=request.POST.get("collection", ""), ids=[int(i) for i in restore]
            )
            messages.info(request, f"Restored {len(back)} archived record(s).")
        messages.success(
            request,
            f"Created {len(result.created)}, updated {len(result.updated)}, archived "
            f"{len(result.archived)}, permanently deleted {len(result.purged)} "
            f"{request.POST.get('collection')}.",
        )
    except (MutationError, ValueError) as exc:
        messages.error(request, str(exc))
    return redirect(reverse("sandbox_hubspot:portal", args=[hub_id]))


@require_POST
def portal_property(request: HttpRequest, hub_id: int) -> HttpResponse:
    portal = get_portal(hub_id)
    if portal is None:
        raise Http404("no such portal")
    collection = request.POST.get("collection", "")
    try:
        if request.POST.get("action") == "delete":
            delete_property(portal=portal, collection=collection, name=request.POST.get("name", ""))
            messages.success(request, f"Deleted {request.POST.get('name')} from {collection}.")
        else:
            options = [
                {"label": v.strip(), "value": v.strip()}
                for v in request.POST.get("options", "").split(",")
                if v.strip()
            ]
            prop = add_property(
                portal=portal,
                collection=collection,
                name=request.POST.get("name", ""),
                label=request.POST.get("label", ""),
                type=request.POST.get("type", "string"),
                options=options,
            )
            messages.success(request, f"Added {prop.name} to {collection}.")
    except MutationError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("sandbox_hubspot:portal", args=[hub_id]))


# --- JSON twins (for tests and scripts driving a sandbox_serve process) ------------------------------------------
@csrf_exempt
def knobs_json(request: HttpRequest) -> HttpResponse:
    """GET the knobs; POST a JSON object of knob values to change them (applies at once in this process)."""
    if request.method == "POST":
        try:
            values = json_object(request.body)
            if values.pop("reset_counters", False):
                reset_rate_limits()
            knobs = apply_knobs(values)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response(knobs_dict(knobs))
    return json_response(knobs_dict(Knobs.load()))


@csrf_exempt
@require_POST
def mutate_json(request: HttpRequest, hub_id: int) -> HttpResponse:
    """POST {"collection", "create", "update", "archive", "purge", "purge_archived", "purge_ids",
    "same_timestamp", "seed"} -> the changed ids ("purged": permanently deleted)."""
    portal = get_portal(hub_id)
    if portal is None:
        return json_response({"error": "no such portal"}, status=404)
    try:
        body = json_object(request.body)
        counts = {name: int(body.get(name, 0)) for name in ("create", "update", "archive", "purge", "purge_archived")}
        if max(counts.values()) > MAX_MUTATION:
            raise ValueError(f"at most {MAX_MUTATION:,} records per change")
        result = mutate(
            portal=portal,
            collection=str(body.get("collection", "")),
            **counts,
            same_timestamp=bool(body.get("same_timestamp")),
            seed=body.get("seed"),
        )
        if body.get("purge_ids"):
            gone = purge_records(
                portal=portal, collection=str(body.get("collection", "")), ids=[int(i) for i in body["purge_ids"]]
            )
            result.purged += [str(i) for i in gone]
        restored: list[str] = []
        if body.get("restore_ids"):
            restored = [
                str(i)
                for i in restore_records(
                    portal=portal, collection=str(body.get("collection", "")), ids=[int(i) for i in body["restore_ids"]]
                )
            ]
    except (MutationError, ValueError, TypeError, OverflowError) as exc:
        return json_response({"error": str(exc)}, status=400)
    return json_response({**result.as_dict(), "restored": restored})


@require_POST
def portal_edit(request: HttpRequest, hub_id: int) -> HttpResponse:
    """Edit one property of one record (what a user does in HubSpot's record page)."""
    portal = get_portal(hub_id)
    if portal is None:
        raise Http404("no such portal")
    collection = request.POST.get("collection", "")
    raw_id = request.POST.get("object_id", "").strip()
    name = request.POST.get("property", "").strip()
    try:
        if not raw_id.isdigit() or not name:
            raise MutationError("give the record's id and the property's internal name")
        set_properties(
            portal=portal,
            collection=collection,
            object_id=int(raw_id),
            properties={name: request.POST.get("value", "")},
        )
        messages.success(request, f"Saved {name} of {collection} {raw_id}.")
    except MutationError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("sandbox_hubspot:portal", args=[hub_id]))


@require_POST
def portal_webhooks(request: HttpRequest, hub_id: int) -> HttpResponse:
    """The portal's webhook subscription and delivery knobs (the form on the portal page)."""
    portal = get_portal(hub_id)
    if portal is None:
        raise Http404("no such portal")
    values: dict[str, Any] = {name: request.POST.get(name, "") for name in webhooks.KNOB_FIELDS}
    for flag in ("active", "shuffle", "paused"):
        values[flag] = bool(request.POST.get(flag))
    try:
        webhooks.configure(portal, values)
        if request.POST.get("send_now"):
            webhooks.flush()
        messages.success(request, "Webhook settings saved.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("sandbox_hubspot:portal", args=[hub_id]) + "#webhooks")


@csrf_exempt
def webhooks_json(request: HttpRequest, hub_id: int) -> HttpResponse:
    """GET the portal's webhook settings and outbox counts; POST {knob: value, ..., "flush": true} to change them
    (and send what is due now)."""
    portal = get_portal(hub_id)
    if portal is None:
        return json_response({"error": "no such portal"}, status=404)
    if request.method == "POST":
        try:
            body = json_object(request.body)
            flush = bool(body.pop("flush", False))
            if body:
                webhooks.configure(portal, body)
            if flush:
                webhooks.flush()
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
    return json_response(webhooks.settings_dict(portal))

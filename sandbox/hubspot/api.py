"""The sandbox HubSpot API: OAuth token endpoints, CRM v3 (objects, search, batch read, properties, owners),
token info and account details. Status codes and bodies follow /work/shared/REFERENCE.md."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import data, records, state
from .models import AuthCode, Knobs, Portal, RefreshToken
from .mutate import MutationError, merge_records, purge_records
from .portals import get_portal
from .realism import (
    ARRIVED,
    GENERAL,
    SEARCH,
    correlation_id,
    drop_connection,
    error_response,
    fault_response,
    json_response,
    rate_limited_response,
)
from .schema import ObjectType, resolve_type
from .tokens import (
    APP_ID,
    REFRESH_PREFIX,
    AccessToken,
    decode_access_token,
    mint_access_token,
    new_refresh_token,
)

MAX_URL = 8000
CODE_LIFETIME_MS = 10 * 60 * 1000

AUTH_MISSING = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
AUTH_INVALID = (
    "Authentication credentials are invalid. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class Ctx:
    """What an authenticated API view gets."""

    def __init__(self, portal: Portal, token: AccessToken, knobs: Knobs) -> None:
        self.portal = portal
        self.token = token
        self.knobs = knobs


def _wait_latency(knobs: Knobs, arrived: float) -> None:
    """Answer `latency_ms` after the request arrived (HubSpot's gateway counts a request when it arrives; the
    latency is the work and the way back)."""
    if knobs.latency_ms:
        left = knobs.latency_ms / 1000 - (time.monotonic() - arrived)
        if left > 0:
            time.sleep(left)


def _apply_faults(request: HttpRequest, knobs: Knobs, arrived: float) -> HttpResponse | None:
    fault = _draw_fault(knobs)
    if fault is None:
        return None
    _wait_latency(knobs, arrived)
    return drop_connection(request) if fault == "reset" else fault


def _draw_fault(knobs: Knobs) -> HttpResponse | str | None:
    if knobs.fail_next:
        # Decrement in the database so concurrent requests each take one of the scheduled failures.
        taken = Knobs.objects.filter(pk=1, fail_next__gt=0).update(fail_next=F("fail_next") - 1)
        state.invalidate()
        if taken:
            status = knobs.fail_next_status
            if status == "reset":
                return "reset"
            if status == "429":
                return rate_limited_response(search=False)
            return fault_response(int(status)) if status.isdigit() else fault_response(503)
    if knobs.reset_rate and random.random() < knobs.reset_rate:
        return "reset"
    if knobs.error_rate and random.random() < knobs.error_rate:
        return fault_response(random.choice((502, 503, 504)))
    return None


def _authenticate(request: HttpRequest) -> tuple[AccessToken | None, HttpResponse | None]:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None, error_response(401, "INVALID_AUTHENTICATION", AUTH_MISSING)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None, error_response(401, "INVALID_AUTHENTICATION", AUTH_MISSING)
    token = decode_access_token(value.strip())
    if token is None:
        return None, error_response(401, "INVALID_AUTHENTICATION", AUTH_INVALID)
    remaining = token.expires_in()
    if remaining <= 0:
        ago = max(1, -remaining)
        return None, error_response(
            401,
            "EXPIRED_AUTHENTICATION",
            f"The OAuth token used to make this call expired {ago} second(s) ago.",
            context={"expired_at": [data.iso(int(token.expires_at * 1000))]},
        )
    return token, None


def missing_scopes(required: tuple[str, ...]) -> HttpResponse:
    return error_response(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes "
        "here: https://developers.hubspot.com/scopes.",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(required)},
            }
        ],
        links={"scopes": "https://developers.hubspot.com/scopes"},
    )


def api_view(
    *,
    scopes: Callable[..., tuple[str, ...] | None] | None = None,
    search: bool = False,
    methods: tuple[str, ...] = ("GET",),
):
    """Wrap a CRM view: URL length, faults, bearer token, scopes, rate limits, rate-limit headers.

    `scopes(**kwargs)` returns the scopes any one of which grants access (None: any valid token)."""

    def deco(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs):
            if len(request.get_full_path()) > MAX_URL:
                return HttpResponse(
                    b"<html><body><h1>414 Request-URI Too Large</h1></body></html>",
                    status=414,
                    content_type="text/html",
                )
            if request.method not in methods:
                return error_response(405, "VALIDATION_ERROR", f"Method {request.method} is not allowed here.")
            # When the request reached the server (sandbox_serve notes it before Django handles it), else now.
            arrived = request.META.get(ARRIVED) or time.monotonic()
            knobs = state.knobs()
            fault = _apply_faults(request, knobs, arrived)
            if fault is not None:
                return fault

            def answer(response: HttpResponse) -> HttpResponse:
                _wait_latency(knobs, arrived)
                return response

            token, failure = _authenticate(request)
            if failure is not None:
                return answer(failure)
            portal = state.portal(token.hub_id)
            if portal is None:
                return answer(error_response(401, "INVALID_AUTHENTICATION", AUTH_INVALID))
            if "otype" in kwargs:
                otype = resolve_type(kwargs["otype"])
                if otype is None:
                    return answer(
                        error_response(400, "VALIDATION_ERROR", f"Unable to infer object type from: {kwargs['otype']}")
                    )
                kwargs["otype"] = otype
            required = scopes(**kwargs) if scopes else None
            if required and not set(required) & set(token.scopes):
                return answer(missing_scopes(required))
            headers: dict[str, str] = {}
            if knobs.rate_limits:
                if search:
                    allowed, _ = SEARCH.hit(portal.hub_id, knobs.search_rate_limit, 1.0, at=arrived)
                else:
                    allowed, remaining = GENERAL.hit(
                        portal.hub_id, knobs.rate_limit_max, knobs.rate_limit_interval_ms / 1000, at=arrived
                    )
                    headers = {
                        "X-HubSpot-RateLimit-Max": str(knobs.rate_limit_max),
                        "X-HubSpot-RateLimit-Remaining": str(remaining),
                        "X-HubSpot-RateLimit-Interval-Milliseconds": str(knobs.rate_limit_interval_ms),
                    }
                if not allowed:
                    limited = rate_limited_response(search)
                    for k, v in headers.items():
                        limited[k] = v
                    return answer(limited)
            _wait_latency(knobs, arrived)
            response = view(request, Ctx(portal, token, knobs), **kwargs)
            for k, v in headers.items():
                response[k] = v
            if "X-HubSpot-Correlation-Id" not in response:
                response["X-HubSpot-Correlation-Id"] = correlation_id()
            return response

        return wrapper

    return deco


def object_scopes(otype: ObjectType, **_: Any) -> tuple[str, ...]:
    return otype.scopes


def object_write_scopes(otype: ObjectType, **_: Any) -> tuple[str, ...]:
    # HubSpot's `tickets` scope covers reading and writing tickets; the others have a .write twin.
    return ("tickets",) if otype.name == "tickets" else (f"crm.objects.{otype.name}.write",)


def schema_scopes(otype: ObjectType, **_: Any) -> tuple[str, ...]:
    extra = (f"crm.schemas.{otype.name}.read",) if otype.name != "tickets" else ()
    return (*otype.scopes, *extra)


def _props_from_query(request: HttpRequest) -> list[str]:
    out: list[str] = []
    for raw in request.GET.getlist("properties"):
        out.extend(p.strip() for p in raw.split(",") if p.strip())
    return out


def _bool_param(request: HttpRequest, name: str) -> bool:
    return request.GET.get(name, "false").strip().lower() == "true"


def _json_body(request: HttpRequest) -> tuple[dict | None, HttpResponse | None]:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, error_response(
            400, "VALIDATION_ERROR", "Invalid input JSON on line 1, column 1: Cannot parse JSON body"
        )
    if not isinstance(body, dict):
        return None, error_response(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object")
    return body, None


# --- CRM objects ----------------------------------------------------------------------------------------------
@api_view(scopes=object_scopes)
def objects_list(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    try:
        limit = int(request.GET.get("limit", "10"))
    except ValueError:
        return error_response(400, "VALIDATION_ERROR", "limit must be an integer")
    if limit < 1 or limit > 100:
        return error_response(400, "VALIDATION_ERROR", f"limit must be between 1 and 100 (got {limit}).")
    after_raw = request.GET.get("after", "")
    opaque = ctx.knobs.opaque_list_after
    after = 0
    if after_raw:
        token = _opaque_after(after_raw)
        if token is not None:
            after = token
        elif opaque:
            after = 0  # not one of our tokens: not honoured (the knob's point)
        elif not after_raw.isdigit():
            return error_response(400, "VALIDATION_ERROR", f"Invalid 'after' value: {after_raw}")
        else:
            after = int(after_raw)
    td = data.type_data(ctx.portal, otype)
    wanted = records.wanted_properties(td, _props_from_query(request))
    results, nxt = records.list_page(
        td, after=after, limit=limit, wanted=wanted, archived=_bool_param(request, "archived")
    )
    # Records arrive as JSON texts (generated ones are assembled from pre-encoded fragments): join, don't encode.
    body = b'{"results":[' + b",".join(results) + b"]"
    if nxt is not None:
        token = _opaque_token(nxt) if opaque else str(nxt)
        params = [(k, v) for k in request.GET for v in request.GET.getlist(k) if k != "after"]
        params.append(("after", token))
        paging = {"next": {"after": token, "link": request.build_absolute_uri(request.path + "?" + urlencode(params))}}
        body += b',"paging":' + json.dumps(paging, separators=(",", ":")).encode()
    return HttpResponse(body + b"}", content_type="application/json;charset=utf-8")


_OPAQUE_PREFIX = "sbx:"


def _opaque_token(object_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_OPAQUE_PREFIX}{object_id}".encode()).decode().rstrip("=")


def _opaque_after(raw: str) -> int | None:
    """The id an opaque list token stands for, or None when `raw` is not one."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    rest = text.removeprefix(_OPAQUE_PREFIX)
    return int(rest) if text.startswith(_OPAQUE_PREFIX) and rest.isdigit() else None


def _parse_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


@api_view(scopes=object_scopes)
def object_read(request: HttpRequest, ctx: Ctx, otype: ObjectType, object_id: str) -> HttpResponse:
    id_property = request.GET.get("idProperty")
    if id_property and id_property != "hs_object_id":
        return error_response(400, "VALIDATION_ERROR", f"idProperty {id_property} is not supported by the sandbox")
    td = data.type_data(ctx.portal, otype)
    wanted = records.wanted_properties(td, _props_from_query(request))
    oid = _parse_id(object_id)
    found = records.read_many(td, [oid], wanted, _bool_param(request, "archived")) if oid is not None else {}
    if oid not in found:
        return error_response(404, "OBJECT_NOT_FOUND", "resource not found")
    return json_response(found[oid])


@api_view(scopes=object_scopes, methods=("POST",))
def objects_batch_read(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    started = data.iso(data.now_ms())
    body, failure = _json_body(request)
    if failure:
        return failure
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        return error_response(400, "VALIDATION_ERROR", "Invalid input JSON: 'inputs' is required")
    if len(inputs) > 100:
        return error_response(400, "VALIDATION_ERROR", f"Too many inputs ({len(inputs)}); the limit is 100.")
    id_property = body.get("idProperty")
    if id_property and id_property != "hs_object_id":
        return error_response(400, "VALIDATION_ERROR", f"idProperty {id_property} is not supported by the sandbox")
    td = data.type_data(ctx.portal, otype)
    props = body.get("properties") or []
    if not isinstance(props, list):
        return error_response(400, "VALIDATION_ERROR", "'properties' must be a list")
    wanted = records.wanted_properties(td, [str(p) for p in props])
    raw_ids = [str((i or {}).get("id", "")) for i in inputs]
    ids = [_parse_id(r) for r in raw_ids]
    found = records.read_many(td, [i for i in ids if i is not None], wanted, _bool_param(request, "archived"))
    results = []
    missing: list[str] = []
    seen: set[int] = set()
    for raw, oid in zip(raw_ids, ids, strict=True):
        if oid is not None and oid in found:
            record_id = int(found[oid]["id"])  # an id merged away answers under the merged record's id
            if record_id not in seen:
                seen.add(record_id)
                results.append(found[oid])
        else:
            missing.append(raw)
    out: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": data.iso(data.now_ms()),
    }
    if missing:
        out["numErrors"] = 1
        out["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {otype.object_label} objects, they may be deleted or not exist. "
                "Check that ids are valid.",
                "context": {"ids": missing},
            }
        ]
        return json_response(out, status=207)
    return json_response(out)


@api_view(scopes=object_write_scopes, methods=("POST",))
def objects_gdpr_delete(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    """POST /crm/v3/objects/{type}/gdpr-delete {"objectId": "...", "idProperty": optional} -> 204, no body.

    HubSpot's permanent (GDPR-compliant) delete: the record leaves every endpoint for good. With
    `"idProperty": "email"` the contact is found by e-mail; an e-mail that matches no contact still gets 204
    (HubSpot then blocklists the address, which the sandbox does not model). An id that matches no record: 404."""
    body, failure = _json_body(request)
    if failure:
        return failure
    raw = body.get("objectId")
    if raw is None or (isinstance(raw, str) and not raw.strip()) or isinstance(raw, (dict, list, bool)):
        return error_response(400, "VALIDATION_ERROR", "Invalid input JSON: 'objectId' is required")
    id_property = body.get("idProperty") or "hs_object_id"
    td = data.type_data(ctx.portal, otype)
    if id_property == "email" and otype.name == "contacts":
        oid = records.find_by_email(td, str(raw))
        if oid is None:
            return HttpResponse(status=204)
    elif id_property == "hs_object_id":
        oid = _parse_id(str(raw).strip())
    else:
        return error_response(400, "VALIDATION_ERROR", f"idProperty {id_property} is not supported by the sandbox")
    if oid is None or not purge_records(portal=ctx.portal, collection=otype.name, ids=[oid]):
        return error_response(404, "OBJECT_NOT_FOUND", "resource not found")
    return HttpResponse(status=204)


@api_view(scopes=object_write_scopes, methods=("POST",))
def objects_merge(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    """POST /crm/v3/objects/{type}/merge {"primaryObjectId", "objectIdToMerge"} -> the merged record (200).

    Contacts and companies merge into a record with a new id (HubSpot's current behaviour); both old ids then
    answer reads with it, under its id, and appear in no list. See mutate.merge_records."""
    body, failure = _json_body(request)
    if failure:
        return failure
    primary = _parse_id(str(body.get("primaryObjectId") or "").strip())
    other = _parse_id(str(body.get("objectIdToMerge") or "").strip())
    if primary is None or other is None:
        return error_response(
            400, "VALIDATION_ERROR", "Invalid input JSON: 'primaryObjectId' and 'objectIdToMerge' are required"
        )
    try:
        winner = merge_records(portal=ctx.portal, collection=otype.name, primary_id=primary, merged_id=other)
    except MutationError as exc:
        return error_response(400, "VALIDATION_ERROR", str(exc))
    td = data.type_data(ctx.portal, otype)
    wanted = records.wanted_properties(td, None)
    return json_response(records.read_many(td, [winner], wanted, False)[winner])


@api_view(scopes=object_scopes, search=True, methods=("POST",))
def objects_search(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    if len(request.body) > 3000:
        return error_response(
            400, "VALIDATION_ERROR", f"The request body is {len(request.body)} characters; the maximum is 3000."
        )
    body, failure = _json_body(request)
    if failure:
        return failure
    td = data.type_data(ctx.portal, otype)
    try:
        result = records.search(td, body, lag_seconds=ctx.knobs.search_lag_seconds)
    except records.SearchError as exc:
        return error_response(exc.status, exc.category, exc.message)
    return json_response(result)


# --- properties and owners ---------------------------------------------------------------------------------------
def property_json(info: data.PropInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "updatedAt": data.iso(info.updated_ms),
        "createdAt": data.iso(info.created_ms),
        "name": info.name,
        "label": info.label,
        "type": info.type,
        "fieldType": info.field_type,
        "description": info.description,
        "groupName": info.group,
        "options": [
            {"label": label, "value": value, "displayOrder": n, "hidden": False}
            for n, (label, value) in enumerate(info.options)
        ],
        "displayOrder": info.display_order,
        "calculated": info.calculated,
        "externalOptions": info.name == "hubspot_owner_id",
        "hasUniqueValue": info.has_unique,
        "hidden": False,
        "hubspotDefined": info.hubspot_defined,
        "modificationMetadata": {
            "archivable": not info.hubspot_defined,
            "readOnlyDefinition": info.hubspot_defined,
            "readOnlyValue": info.calculated or info.group == "_system",
        },
        "formField": info.type not in ("datetime",) and not info.calculated,
        "dataSensitivity": "non_sensitive",
    }
    if info.archived:
        out["archived"] = True
        out["archivedAt"] = data.iso(info.updated_ms)
    return out


def _served_properties(td: data.TypeData, owners: list[dict]) -> list[data.PropInfo]:
    props = []
    for info in td.props.values():
        if info.name == "hubspot_owner_id":
            info = data.PropInfo(
                **{
                    **info.__dict__,
                    "options": tuple(
                        (f"{o['firstName']} {o['lastName']}", o["id"]) for o in owners if not o["archived"]
                    ),
                }
            )
        props.append(info)
    return props


@api_view(scopes=schema_scopes)
def properties_list(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    td = data.type_data(ctx.portal, otype)
    if _bool_param(request, "archived"):
        return json_response({"results": [property_json(p) for p in td.archived_props.values()]})
    owners = data.owners_for(ctx.portal.hub_id, ctx.portal.seed)
    return json_response({"results": [property_json(p) for p in _served_properties(td, owners)]})


@api_view(scopes=schema_scopes)
def property_read(request: HttpRequest, ctx: Ctx, otype: ObjectType, name: str) -> HttpResponse:
    td = data.type_data(ctx.portal, otype)
    owners = data.owners_for(ctx.portal.hub_id, ctx.portal.seed)
    for info in _served_properties(td, owners):
        if info.name == name:
            return json_response(property_json(info))
    if _bool_param(request, "archived") and name in td.archived_props:
        return json_response(property_json(td.archived_props[name]))
    return error_response(404, "OBJECT_NOT_FOUND", f"Unable to find property {name} on object type {otype.type_id}")


@api_view(scopes=schema_scopes)
def property_groups(request: HttpRequest, ctx: Ctx, otype: ObjectType) -> HttpResponse:
    from .schema import GROUPS

    td = data.type_data(ctx.portal, otype)
    names = sorted({p.group for p in td.props.values()})
    return json_response(
        {
            "results": [
                {
                    "name": n,
                    "label": GROUPS.get(n, n.replace("_", " ").capitalize()),
                    "displayOrder": k,
                    "archived": False,
                }
                for k, n in enumerate(names)
            ]
        }
    )


def owner_scopes(**_: Any) -> tuple[str, ...]:
    return ("crm.objects.owners.read",)


@api_view(scopes=owner_scopes)
def owners_list(request: HttpRequest, ctx: Ctx) -> HttpResponse:
    try:
        limit = int(request.GET.get("limit", "100"))
        after = int(request.GET.get("after") or 0)
    except ValueError:
        return error_response(400, "VALIDATION_ERROR", "limit and after must be integers")
    if limit < 1 or limit > 500:
        return error_response(400, "VALIDATION_ERROR", f"limit must be between 1 and 500 (got {limit}).")
    archived = _bool_param(request, "archived")
    owners = [o for o in data.owners_for(ctx.portal.hub_id, ctx.portal.seed) if o["archived"] == archived]
    email = request.GET.get("email")
    if email:
        owners = [o for o in owners if o["email"].lower() == email.lower()]
    page = owners[after : after + limit]
    body: dict[str, Any] = {"results": page}
    if after + limit < len(owners):
        nxt = str(after + limit)
        body["paging"] = {
            "next": {
                "after": nxt,
                "link": request.build_absolute_uri(request.path + "?" + urlencode({"after": nxt, "limit": limit})),
            }
        }
    return json_response(body)


@api_view(scopes=owner_scopes)
def owner_read(request: HttpRequest, ctx: Ctx, owner_id: str) -> HttpResponse:
    archived = _bool_param(request, "archived")
    for o in data.owners_for(ctx.portal.hub_id, ctx.portal.seed):
        if o["id"] == owner_id and o["archived"] == archived:
            return json_response(o)
    return error_response(404, "OBJECT_NOT_FOUND", f"No owner found with id {owner_id}")


@api_view()
def account_details(request: HttpRequest, ctx: Ctx) -> HttpResponse:
    p = ctx.portal
    offsets = {"US/Eastern": -18000000, "Europe/Berlin": 3600000, "UTC": 0}
    off = offsets.get(p.time_zone, 0)
    sign = "-" if off < 0 else "+"
    hours, rest = divmod(abs(off) // 60000, 60)
    return json_response(
        {
            "portalId": p.hub_id,
            "accountType": "STANDARD",
            "timeZone": p.time_zone,
            "companyCurrency": p.currency,
            "additionalCurrencies": [],
            "utcOffset": f"{sign}{hours:02d}:{rest:02d}",
            "utcOffsetMilliseconds": off,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }
    )


# --- OAuth --------------------------------------------------------------------------------------------------------
def token_error(status: str, message: str, error: str = "invalid_grant", http_status: int = 400) -> HttpResponse:
    from .realism import correlation_id

    return json_response(
        {
            "status": status,
            "message": message,
            "correlationId": correlation_id(),
            "error": error,
            "error_description": message,
        },
        status=http_status,
    )


def _pkce_ok(code: AuthCode, verifier: str) -> bool:
    if not code.code_challenge:
        return True
    if not verifier:
        return False
    if code.code_challenge_method.upper() == "S256":
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        return digest == code.code_challenge
    return verifier == code.code_challenge


def issue_tokens(
    *, portal: Portal, scopes: list[str], client_id: str, refresh: str | None = None, lifetime: int | None = None
) -> dict[str, Any]:
    """Mint an access token (and store a refresh token unless one is given): the token endpoint's body."""
    if lifetime is None:
        lifetime = Knobs.load().access_token_lifetime
    if refresh is None:
        refresh = new_refresh_token()
        RefreshToken.objects.create(
            token=refresh, portal=portal, client_id=client_id, scopes=list(scopes), created_ms=data.now_ms()
        )
    access = mint_access_token(
        hub_id=portal.hub_id,
        scopes=scopes,
        lifetime=lifetime,
        user_id=portal.user_id,
        user=portal.user_email,
        client_id=client_id,
    )
    return {
        "token_type": "bearer",
        "refresh_token": refresh,
        "access_token": access,
        "expires_in": lifetime,
        "hub_id": portal.hub_id,
        "user_id": portal.user_id,
        "scopes": sorted(set(scopes)),
        "token_use": "access",
    }


@csrf_exempt
def token(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return token_error("BAD_REQUEST", "Method not allowed; use POST", "invalid_request", 405)
    ctype = request.META.get("CONTENT_TYPE", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        return token_error(
            "BAD_REQUEST", "The token endpoint expects application/x-www-form-urlencoded form data", "invalid_request"
        )
    form = request.POST
    grant_type = form.get("grant_type", "")
    client_id = form.get("client_id", "")
    client_secret = form.get("client_secret", "")
    if grant_type not in ("authorization_code", "refresh_token"):
        return token_error(
            "BAD_GRANT_TYPE", f"missing or unsupported grant_type: {grant_type!r}", "unsupported_grant_type"
        )
    # HubSpot reads the client credentials from the form only (an HTTP Basic header is not enough).
    if client_id != settings.SANDBOX_HUBSPOT_CLIENT_ID:
        return token_error("BAD_CLIENT_ID", "missing or invalid client id", "invalid_client")
    if client_secret != settings.SANDBOX_HUBSPOT_CLIENT_SECRET:
        return token_error("BAD_CLIENT_SECRET", "missing or invalid client secret", "invalid_client")

    if grant_type == "authorization_code":
        raw = form.get("code", "")
        with transaction.atomic():
            code = AuthCode.objects.select_for_update().filter(code=raw).select_related("portal").first()
            if code is None or code.used or code.client_id != client_id:
                return token_error("BAD_AUTH_CODE", "missing or unknown auth code")
            if data.now_ms() - code.created_ms > CODE_LIFETIME_MS:
                return token_error("EXPIRED_AUTH_CODE", "auth code expired")
            if form.get("redirect_uri", "") != code.redirect_uri:
                return token_error("BAD_REDIRECT_URI", "redirect_uri does not match initial redirect_uri")
            if not _pkce_ok(code, form.get("code_verifier", "")):
                return token_error("BAD_AUTH_CODE", "code_verifier does not match the code_challenge")
            code.used = True
            code.save(update_fields=["used"])
        return json_response(issue_tokens(portal=code.portal, scopes=code.scopes, client_id=client_id))

    raw = form.get("refresh_token", "")
    rt = RefreshToken.objects.filter(token=raw).select_related("portal").first() if raw else None
    if rt is None or rt.revoked or rt.client_id != client_id:
        return token_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
    return json_response(issue_tokens(portal=rt.portal, scopes=rt.scopes, client_id=client_id, refresh=rt.token))


def _token_info(claims: AccessToken, raw: str) -> dict[str, Any]:
    portal = get_portal(claims.hub_id)
    return {
        "token": raw,
        "user": claims.user,
        "hub_domain": portal.domain if portal else "",
        "scopes": list(claims.scopes),
        "scope_to_scope_group_pks": [],
        "trial_scopes": [],
        "trial_scope_to_scope_group_pks": [],
        "hub_id": claims.hub_id,
        "app_id": APP_ID,
        "expires_in": max(0, claims.expires_in()),
        "user_id": claims.user_id,
        "token_type": "access",
    }


def access_token_info(request: HttpRequest, token_value: str) -> HttpResponse:
    claims = decode_access_token(token_value)
    if claims is None:
        return error_response(404, "OBJECT_NOT_FOUND", "Access token not found")
    if claims.expires_in() <= 0:
        return error_response(
            401,
            "EXPIRED_AUTHENTICATION",
            f"The OAuth token used to make this call expired {-claims.expires_in() or 1} second(s) ago.",
        )
    return json_response(_token_info(claims, token_value))


@csrf_exempt
def refresh_token_info(request: HttpRequest, token_value: str) -> HttpResponse:
    rt = RefreshToken.objects.filter(token=token_value).select_related("portal").first()
    if rt is None or rt.revoked or not token_value.startswith(REFRESH_PREFIX):
        return error_response(404, "OBJECT_NOT_FOUND", "Refresh token not found")
    if request.method == "DELETE":
        rt.revoked = True
        rt.save(update_fields=["revoked"])
        return HttpResponse(status=204)
    if request.method != "GET":
        return error_response(405, "VALIDATION_ERROR", f"Method {request.method} is not allowed here.")
    return json_response(
        {
            "token": rt.token,
            "user": rt.portal.user_email,
            "hub_domain": rt.portal.domain,
            "scopes": rt.scopes,
            "hub_id": rt.portal.hub_id,
            "client_id": rt.client_id,
            "user_id": rt.portal.user_id,
            "token_type": "refresh",
        }
    )


@csrf_exempt
def introspect(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return token_error("BAD_REQUEST", "Method not allowed; use POST", "invalid_request", 405)
    form = request.POST
    if form.get("client_id") != settings.SANDBOX_HUBSPOT_CLIENT_ID:
        return token_error("BAD_CLIENT_ID", "missing or invalid client id", "invalid_client")
    if form.get("client_secret") != settings.SANDBOX_HUBSPOT_CLIENT_SECRET:
        return token_error("BAD_CLIENT_SECRET", "missing or invalid client secret", "invalid_client")
    raw = form.get("token", "")
    claims = decode_access_token(raw)
    if claims is not None and claims.expires_in() > 0:
        return json_response({"active": True, **_token_info(claims, raw), "client_id": claims.client_id})
    rt = RefreshToken.objects.filter(token=raw, revoked=False).select_related("portal").first() if raw else None
    if rt is not None:
        return json_response(
            {
                "active": True,
                "token_type": "refresh",
                "hub_id": rt.portal.hub_id,
                "client_id": rt.client_id,
                "scopes": rt.scopes,
                "user_id": rt.portal.user_id,
            }
        )
    return json_response({"active": False})

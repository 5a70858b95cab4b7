"""The sandbox's OAuth consent screen (what app.hubspot.com/oauth/authorize shows)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from . import data
from .models import AuthCode, Portal
from .portals import all_portals, get_portal
from .schema import KNOWN_SCOPES
from .tokens import new_code

APP_NAME = "hubsync (sandbox app)"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}

SCOPE_TEXT = {
    "oauth": "Basic OAuth access (always included)",
    "crm.objects.contacts.read": "View properties and other details about contacts",
    "crm.objects.companies.read": "View properties and other details about companies",
    "crm.objects.deals.read": "View properties and other details about deals",
    "tickets": "View and manage tickets",
    "crm.objects.owners.read": "View details about users assigned to a CRM record",
}


def redirect_allowed(uri: str) -> bool:
    """Like a HubSpot developer test app for local development: any loopback redirect URI, nothing else."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS and not parts.fragment


def issue_code(
    *,
    portal: Portal,
    client_id: str,
    redirect_uri: str,
    scopes: list[str],
    code_challenge: str = "",
    code_challenge_method: str = "",
) -> str:
    code = new_code()
    AuthCode.objects.create(
        code=code,
        portal=portal,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=sorted(set(scopes)),
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method or ("plain" if code_challenge else ""),
        created_ms=data.now_ms(),
    )
    return code


def _with_params(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _split_scopes(raw: str) -> list[str]:
    return [s for s in raw.replace("+", " ").replace(",", " ").split() if s]


def _error_page(request: HttpRequest, title: str, detail: str, status: int = 400) -> HttpResponse:
    return render(request, "sandbox/hubspot/authorize_error.html", {"title": title, "detail": detail}, status=status)


def authorize(request: HttpRequest) -> HttpResponse:
    params = request.GET if request.method == "GET" else request.POST
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    state = params.get("state")
    if client_id != settings.SANDBOX_HUBSPOT_CLIENT_ID:
        return _error_page(
            request, "Invalid client id", f"No app with client id “{client_id}” is installed in this sandbox."
        )
    if not redirect_allowed(redirect_uri):
        return _error_page(
            request,
            "Redirect URI not allowed",
            f"This app only accepts redirect URIs on localhost or 127.0.0.1 (got “{redirect_uri or 'nothing'}”).",
        )
    scopes = _split_scopes(params.get("scope", ""))
    optional = _split_scopes(params.get("optional_scope", "") + " " + params.get("optional_scopes", ""))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        return _error_page(
            request,
            "Scope mismatch",
            f"The app requested scopes that do not exist or are not allowed: {', '.join(unknown)}.",
        )
    if not scopes:
        return _error_page(request, "Missing scopes", "The authorize URL has no scope parameter.")
    optional = [s for s in dict.fromkeys(optional) if s in KNOWN_SCOPES and s not in scopes]
    portals = all_portals()

    if request.method == "POST":
        if params.get("action") != "connect":
            return HttpResponseRedirect(
                _with_params(
                    redirect_uri,
                    {
                        "error": "access_denied",
                        "error_description": "The user declined to connect the app.",
                        "state": state,
                    },
                )
            )
        try:
            portal = get_portal(int(params.get("portal", "")))
        except ValueError:
            portal = None
        if portal is None:
            return render(
                request,
                "sandbox/hubspot/authorize.html",
                {
                    **_context(client_id, redirect_uri, state, scopes, optional, portals, params),
                    "error": "Choose an account to connect.",
                },
                status=400,
            )
        granted_optional = [s for s in optional if params.get(f"grant_{s}")]
        code = issue_code(
            portal=portal,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=scopes + granted_optional,
            code_challenge=params.get("code_challenge", ""),
            code_challenge_method=params.get("code_challenge_method", ""),
        )
        return HttpResponseRedirect(_with_params(redirect_uri, {"code": code, "state": state}))
    return render(
        request,
        "sandbox/hubspot/authorize.html",
        _context(client_id, redirect_uri, state, scopes, optional, portals, params),
    )


def _context(client_id, redirect_uri, state, scopes, optional, portals, params) -> dict:
    return {
        "app_name": APP_NAME,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "redirect_host": urlsplit(redirect_uri).netloc,
        "state": state,
        "scope": " ".join(scopes),
        "optional_scope": " ".join(optional),
        "scopes": [(s, SCOPE_TEXT.get(s, s)) for s in scopes],
        "optional": [(s, SCOPE_TEXT.get(s, s)) for s in optional],
        "portals": portals,
        "code_challenge": params.get("code_challenge", ""),
        "code_challenge_method": params.get("code_challenge_method", ""),
    }

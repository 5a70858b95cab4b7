"""Connecting a HubSpot account: the OAuth authorization-code flow (with PKCE) and what we learn on return.

Two views use this module (start, callback), for the Add Source wizard and for "Reconnect HubSpot". The
`state` is kept in the session and is single use; a mismatch is a 403. Tokens never enter the session in
plaintext (the session table is not encrypted): `Connection.to_session()` stores them Fernet-encrypted.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient
from requests_oauthlib import OAuth2Session

from hubsync.access import WorkspaceRequest
from hubsync.fields import decrypt, encrypt

from .extraction import normalize_schema
from .hubspot import BadRequest, HubSpotClient, HubSpotError, MissingScopes, NotFound, TransientError
from .hubspot import api_base as api_base
from .hubspot import tokens as hubspot_tokens
from .models import Source

log = logging.getLogger(__name__)

FLOW_SESSION_KEY = "hubspot_oauth_flow"

# Contacts are the minimum a source is useful with; everything else is offered as optional so the admin can
# grant what their HubSpot role allows, and we offer the collections the granted scopes cover.
REQUIRED_SCOPES = ["oauth", "crm.objects.contacts.read"]
OPTIONAL_SCOPES = [
    "crm.objects.companies.read",
    "crm.objects.deals.read",
    "tickets",
    "crm.objects.owners.read",
    "crm.objects.line_items.read",
    "crm.objects.products.read",
    "crm.objects.quotes.read",
    "e-commerce",
]


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    label: str
    scopes: tuple[str, ...]  # any one of these grants read access


# The CRM v3 object types hubsync can sync, in the order the wizard shows them.
COLLECTIONS: tuple[CollectionInfo, ...] = (
    CollectionInfo("contacts", "Contacts", ("crm.objects.contacts.read",)),
    CollectionInfo("companies", "Companies", ("crm.objects.companies.read",)),
    CollectionInfo("deals", "Deals", ("crm.objects.deals.read",)),
    CollectionInfo("tickets", "Tickets", ("tickets",)),
    CollectionInfo("products", "Products", ("crm.objects.products.read", "e-commerce")),
    CollectionInfo("line_items", "Line items", ("crm.objects.line_items.read", "e-commerce")),
    CollectionInfo("quotes", "Quotes", ("crm.objects.quotes.read", "e-commerce")),
    # Engagements are readable with the contacts scope.
    CollectionInfo("calls", "Calls", ("crm.objects.contacts.read",)),
    CollectionInfo("emails", "Emails", ("crm.objects.contacts.read",)),
    CollectionInfo("meetings", "Meetings", ("crm.objects.contacts.read",)),
    CollectionInfo("notes", "Notes", ("crm.objects.contacts.read",)),
    CollectionInfo("tasks", "Tasks", ("crm.objects.contacts.read",)),
)
COLLECTION_LABELS = {c.name: c.label for c in COLLECTIONS}
DEFAULT_COLLECTIONS = ("contacts", "companies", "deals", "tickets")


def collections_for_scopes(scopes: list[str] | tuple[str, ...]) -> list[CollectionInfo]:
    granted = set(scopes)
    return [c for c in COLLECTIONS if granted.intersection(c.scopes)]


# --- endpoints ----------------------------------------------------------------------------------------


def authorize_url() -> str:
    return settings.HUBSPOT_AUTHORIZE_URL or f"{settings.BASE_URL.rstrip('/')}/sandbox/hubspot/oauth/authorize"


def redirect_uri() -> str:
    # Fixed (not taken from the request's Host header): it must equal the URI registered with the HubSpot app.
    return settings.BASE_URL.rstrip("/") + reverse("sources:oauth_callback")


def _is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_env_lock = threading.RLock()  # re-entrant: a nested use must not deadlock


@contextmanager
def _oauthlib_env(*urls: str, relax_scope: bool = False) -> Iterator[None]:
    """oauthlib reads two switches from the environment at call time. Plain http is refused unless
    OAUTHLIB_INSECURE_TRANSPORT is set: we set it only around a call whose URLs are all https or loopback http
    (the sandbox on this machine), so a real HubSpot never turns it on. HubSpot grants optional scopes, so the
    granted set legitimately differs from the requested one: OAUTHLIB_RELAX_TOKEN_SCOPE stops oauthlib from
    treating that as an error (we read the granted scopes from the token info call)."""
    plain = [u for u in urls if not u.startswith("https://")]
    wanted = {}
    if plain and all(_is_loopback_http(u) for u in plain):
        wanted["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    if relax_scope:
        wanted["OAUTHLIB_RELAX_TOKEN_SCOPE"] = "1"
    if not wanted:
        yield
        return
    with _env_lock:
        previous = {k: os.environ.get(k) for k in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# --- the flow -----------------------------------------------------------------------------------------


class ConnectError(Exception):
    """The HubSpot login did not give us a usable connection; the message is shown to the admin."""


@dataclass
class Connection:
    """What a successful HubSpot login gives us. Tokens are plaintext here, encrypted in `to_session`."""

    hub_id: int
    hub_domain: str = ""
    user: str = ""
    scopes: list[str] = field(default_factory=list)
    access_token: str = ""
    refresh_token: str = ""
    expires_at: datetime | None = None
    account: dict[str, Any] = field(default_factory=dict)

    def to_session(self) -> dict[str, Any]:
        data = asdict(self)
        data["access_token"] = encrypt(self.access_token) if self.access_token else ""
        data["refresh_token"] = encrypt(self.refresh_token) if self.refresh_token else ""
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return data

    @classmethod
    def from_session(cls, data: dict[str, Any]) -> Connection:
        data = dict(data)
        data["access_token"] = decrypt(data["access_token"]) if data.get("access_token") else ""
        data["refresh_token"] = decrypt(data["refresh_token"]) if data.get("refresh_token") else ""
        data["expires_at"] = datetime.fromisoformat(data["expires_at"]) if data.get("expires_at") else None
        return cls(**data)


def begin(request: WorkspaceRequest, *, purpose: str, source_id: int | None = None) -> str:
    """Start a login: remember state + PKCE verifier in the session, return HubSpot's authorize URL."""
    client = WebApplicationClient(settings.HUBSPOT_CLIENT_ID)
    verifier = client.create_code_verifier(64)
    challenge = client.create_code_challenge(verifier, "S256")
    oauth = OAuth2Session(settings.HUBSPOT_CLIENT_ID, client=client, redirect_uri=redirect_uri(), scope=REQUIRED_SCOPES)
    with _oauthlib_env(authorize_url()):
        url, state = oauth.authorization_url(
            authorize_url(),
            optional_scope=" ".join(OPTIONAL_SCOPES),
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    request.session[FLOW_SESSION_KEY] = {
        "state": state,
        "verifier": verifier,
        "purpose": purpose,
        "source_id": source_id,
        "workspace_id": request.workspace.pk,
    }
    return url


def take_flow(request: WorkspaceRequest) -> dict[str, Any]:
    """The pending login this callback belongs to, removed from the session (single use). 403 when there is
    none, or when `state` does not match: the request was not started by this browser session."""
    flow = request.session.get(FLOW_SESSION_KEY)
    state = request.GET.get("state", "")
    # Compared before anything is dropped: a forged callback (another state) must not throw away the login this
    # session is really waiting for.
    if not flow or not state or not secrets.compare_digest(state.encode(), str(flow.get("state", "")).encode()):
        raise PermissionDenied("This HubSpot login does not belong to your session. Start again from hubsync.")
    request.session.pop(FLOW_SESSION_KEY, None)
    if flow.get("workspace_id") != request.workspace.pk:
        raise PermissionDenied("This HubSpot login was started in another workspace.")
    return flow


def _normalize_token_error(response: requests.Response) -> requests.Response:
    """oauthlib understands RFC 6749 error bodies only. HubSpot's older ones carry just `status` / `message`
    (BAD_AUTH_CODE, EXPIRED_AUTH_CODE, ...) and a 5xx may not be JSON: turn those into `error` /
    `error_description` so the admin reads HubSpot's reason instead of "missing access token"."""
    if response.status_code < 400:
        return response
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict) or "error" not in body:
        body = body if isinstance(body, dict) else {}
        response._content = json.dumps(
            {
                "error": str(body.get("status") or f"http_{response.status_code}"),
                "error_description": str(body.get("message") or response.reason or ""),
            }
        ).encode()
    return response


def _describe_token_error(exc: Exception) -> str:
    if isinstance(exc, OAuth2Error):
        detail = exc.description if exc.description and exc.description != exc.error else ""
        reason = f"{exc.error}: {detail}" if detail else exc.error
        return (
            f"HubSpot refused the login code ({reason}). This happens when the login took too long or was "
            "used twice; please try again."
        )
    if isinstance(exc, requests.RequestException):
        return "HubSpot could not be reached to finish the login. Check the connection and try again."
    return "HubSpot's answer to the login could not be read."


def exchange(flow: dict[str, Any], code: str) -> Connection:
    """Exchange the code for tokens, then read who and what we are connected to. Raises ConnectError."""
    oauth = OAuth2Session(settings.HUBSPOT_CLIENT_ID, redirect_uri=redirect_uri(), scope=REQUIRED_SCOPES)
    oauth.register_compliance_hook("access_token_response", _normalize_token_error)
    try:
        with _oauthlib_env(hubspot_tokens.token_url(), relax_scope=True):
            token = oauth.fetch_token(
                hubspot_tokens.token_url(),
                code=code,
                client_secret=settings.HUBSPOT_CLIENT_SECRET,
                include_client_id=True,
                code_verifier=flow["verifier"],
                timeout=20,
            )
    except (OAuth2Error, requests.RequestException, ValueError) as exc:
        # Never log the exception's request: it carries the code and client secret.
        log.warning("HubSpot token exchange failed: %s", type(exc).__name__)
        raise ConnectError(_describe_token_error(exc)) from None
    access_token = token.get("access_token", "")
    expires_in = token.get("expires_in")
    expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if expires_in else None
    info = token_info(access_token)
    try:
        hub_id = int(info.get("hub_id") or token.get("hub_id"))
    except (TypeError, ValueError):
        raise ConnectError("HubSpot did not say which account this login belongs to.") from None
    account = account_details(access_token, hub_id)
    scopes = info.get("scopes") or token.get("scopes") or []
    return Connection(
        hub_id=hub_id,
        hub_domain=info.get("hub_domain") or "",
        user=info.get("user") or "",
        scopes=sorted(scopes),
        access_token=access_token,
        refresh_token=token.get("refresh_token", ""),
        expires_at=expires_at,
        account=account,
    )


def _client(access_token: str, hub_id: int | None = None) -> HubSpotClient:
    # An admin is waiting on the page: a couple of quick retries, not a worker's patient backoff.
    return HubSpotClient(access_token=access_token, hub_id=hub_id, max_retries=2, timeout=20)


def token_info(access_token: str) -> dict[str, Any]:
    """Hub id, domain, installing user and granted scopes of an access token."""
    try:
        with _client(access_token) as client:
            return client.token_info() or {}
    except HubSpotError as exc:
        log.warning("HubSpot token info call failed: %s", exc)
        raise ConnectError("HubSpot did not tell us which account was connected. Please try again.") from None


def account_details(access_token: str, hub_id: int | None = None) -> dict[str, Any]:
    """Time zone, currency and UI domain of the account. Nice to have: a failure is not fatal."""
    try:
        with _client(access_token, hub_id) as client:
            data = client.account_details() or {}
    except HubSpotError as exc:
        log.warning("HubSpot account details call failed: %s", exc)
        return {}
    keep = ("portalId", "timeZone", "companyCurrency", "uiDomain", "dataHostingLocation", "accountType")
    return {k: data[k] for k in keep if k in data}


@dataclass(frozen=True)
class DiscoveredCollection:
    name: str
    label: str
    property_count: int | None  # None: HubSpot would not list the properties (see error)
    error: str = ""
    # The property schema read for the count, as SourceCollection.properties keeps it: the wizard stores it on the
    # collections it creates (so the schema is not read twice). Not cached with the rest (remember_available).
    schema: dict[str, dict] = field(default_factory=dict, compare=False, hash=False, repr=False)


def _discover(client: HubSpotClient, scopes: list[str]) -> list[DiscoveredCollection]:
    out: list[DiscoveredCollection] = []
    for info in collections_for_scopes(scopes):
        try:
            raw = client.get_properties(info.name)
        except (MissingScopes, NotFound, BadRequest):
            continue  # not available to this account or app (403 / 404 / unknown object type): not offered
        except HubSpotError as exc:
            out.append(DiscoveredCollection(info.name, info.label, None, _short_error(exc)))
            continue
        out.append(DiscoveredCollection(info.name, info.label, len(raw), schema=normalize_schema(raw)))
    return out


def discover_collections(connection: Connection) -> list[DiscoveredCollection]:
    """The collections the granted scopes allow, each with its property count read live from HubSpot.
    A collection HubSpot refuses (403 / 404 / 400) is left out; a transient failure is shown, not fatal."""
    with _client(connection.access_token, connection.hub_id) as client:
        return _discover(client, connection.scopes)


AVAILABLE_CACHE_SECONDS = 600


def _available_key(source: Source) -> str:
    stamp = int(source.created_at.timestamp()) if source.created_at else 0
    return f"sources:available:{source.pk}:{stamp}:{','.join(sorted(source.scopes))}"


def remember_available(source: Source, discovered: list[DiscoveredCollection]) -> None:
    kept = [{k: v for k, v in asdict(d).items() if k != "schema"} for d in discovered]
    cache.set(_available_key(source), kept, AVAILABLE_CACHE_SECONDS)


def available_collections(source: Source) -> list[DiscoveredCollection]:
    """What the Settings tab offers: like the wizard, read live (cached for a few minutes). When HubSpot cannot
    be asked (needs reconnect, down), fall back to what the granted scopes allow, without counts."""
    cached = cache.get(_available_key(source))
    if cached is not None:
        return [DiscoveredCollection(**d) for d in cached]
    fallback = [DiscoveredCollection(c.name, c.label, None) for c in collections_for_scopes(source.scopes)]
    if source.status != source.Status.OK or not source.token:
        return fallback
    try:
        with HubSpotClient(source, max_retries=1, timeout=10) as client:
            discovered = _discover(client, source.scopes)
    except (HubSpotError, requests.RequestException) as exc:
        log.warning("HubSpot collections of source %s could not be read: %s", source.pk, type(exc).__name__)
        return fallback
    remember_available(source, discovered)
    return discovered


def _short_error(exc: HubSpotError) -> str:
    if isinstance(exc, TransientError):
        return "HubSpot did not answer; try again later"
    return f"HubSpot answered {exc.status}" if exc.status else "HubSpot could not be read"


# --- connections made without this server's login pages (the REST API) -------------------------------------


def connection_of(source: Source) -> Connection:
    """The HubSpot login an existing source reads with, for another source on the same account (as the wizard
    allows a second source on an account already connected). Tokens stay as they are: the source's refresh
    token keeps working for both."""
    if source.status != Source.Status.OK or not source.token or source.hub_id is None:
        raise ConnectError(f"{source.name} must be reconnected to HubSpot before its login can be reused.")
    try:
        hubspot_tokens.refresh_access_token(source)  # only when the stored one is (nearly) expired
    except HubSpotError:
        raise ConnectError(
            f"HubSpot did not renew the login of {source.name} (reconnect it, or try again in a minute)."
        ) from None
    return Connection(
        hub_id=source.hub_id,
        hub_domain=source.hub_domain,
        user=source.installing_user,
        scopes=list(source.scopes),
        access_token=source.access_token,
        refresh_token=source.token,
        expires_at=source.access_token_expires_at,
    )


def connection_from_refresh_token(refresh_token: str) -> Connection:
    """A login done elsewhere (a script went through HubSpot's consent page with this server's app): its refresh
    token is exchanged for an access token at HubSpot's token endpoint, then the account is described as after
    the callback. Raises ConnectError with a message for the user."""
    try:
        payload = hubspot_tokens.exchange_refresh_token(refresh_token, timeout=20)
    except HubSpotError:
        raise ConnectError("HubSpot refused this refresh token (revoked, or not issued to this app).") from None
    access_token = str(payload.get("access_token") or "")
    if not access_token:
        raise ConnectError("HubSpot's token endpoint answered without an access token.")
    info = token_info(access_token)
    try:
        hub_id = int(info.get("hub_id") or payload.get("hub_id") or "")
    except (TypeError, ValueError):
        raise ConnectError("HubSpot did not say which account this login belongs to.") from None
    return Connection(
        hub_id=hub_id,
        hub_domain=info.get("hub_domain") or "",
        user=info.get("user") or "",
        scopes=sorted(info.get("scopes") or payload.get("scopes") or []),
        access_token=access_token,
        # HubSpot may omit refresh_token on a refresh: the one given stays valid then.
        refresh_token=str(payload.get("refresh_token") or refresh_token),
        expires_at=timezone.now() + timedelta(seconds=int(payload.get("expires_in") or 1800)),
        account=account_details(access_token, hub_id),
    )

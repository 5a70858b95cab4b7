"""OAuth token upkeep: refresh from the stored expiry under the source's row lock; a revoked refresh token marks
the source "needs reconnect"."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Source
from .wire import (
    NETWORK_ERRORS,
    AuthError,
    HubSpotError,
    NeedsReconnect,
    TransientError,
    _json_or_empty,
    _retry_after,
    api_base,
    backoff_delay,
)

log = logging.getLogger("sources.hubspot")

# --- tokens ---------------------------------------------------------------------------------------------


def token_url() -> str:
    """HubSpot's OAuth token endpoint (the code exchange of the connect flow and every refresh)."""
    return api_base() + "/" + settings.HUBSPOT_TOKEN_PATH.lstrip("/")


def _fresh(source: Source, margin: timedelta | None = None) -> bool:
    """The stored access token has more than the refresh margin (5 minutes) left."""
    if margin is None:
        margin = timedelta(seconds=settings.HUBSPOT_TOKEN_REFRESH_MARGIN_SECONDS)
    return bool(
        source.access_token
        and source.access_token_expires_at
        and source.access_token_expires_at - timezone.now() > margin
    )


def _mark_needs_reconnect(source: Source, detail: str) -> None:
    """Stop the schedule (enabled stays, next_sync_at cleared) and tell the admin on the source page."""
    Source.objects.filter(pk=source.pk).update(
        status=Source.Status.NEEDS_RECONNECT, status_detail=detail, next_sync_at=None, updated_at=timezone.now()
    )
    source.status = Source.Status.NEEDS_RECONNECT
    source.status_detail = detail
    source.next_sync_at = None
    log.warning("source %s needs reconnect: %s", source.pk, detail)


def post_token(data: dict[str, str], *, session: requests.Session | None = None, timeout: float = 30) -> dict:
    """POST the token form, retrying transient failures a few times. Raises HubSpotError subclasses (a refused
    refresh token: NeedsReconnect)."""
    http = session or requests
    attempts = 4
    for attempt in range(1, attempts + 1):
        try:
            response = http.post(
                token_url(),
                data=data,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                timeout=timeout,
            )
        except NETWORK_ERRORS as exc:
            if attempt == attempts:
                raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
            time.sleep(backoff_delay(attempt, base=settings.HUBSPOT_RETRY_BASE_SECONDS, cap=10))
            continue
        if response.status_code == 429 or response.status_code >= 500:
            if attempt == attempts:
                raise TransientError.from_response(response, "token endpoint failed")
            time.sleep(
                _retry_after(response) or backoff_delay(attempt, base=settings.HUBSPOT_RETRY_BASE_SECONDS, cap=10)
            )
            continue
        if response.status_code != 200:
            error = HubSpotError.from_response(response, "token request refused")
            body = _json_or_empty(response)
            codes = {str(body.get("error", "")).lower(), str(body.get("status", "")).upper()}
            if "invalid_grant" in codes or "BAD_REFRESH_TOKEN" in codes:
                raise NeedsReconnect(
                    error.message,
                    status=error.status,
                    category="BAD_REFRESH_TOKEN",
                    correlation_id=error.correlation_id,
                    body=body,
                )
            raise AuthError(
                error.message,
                status=error.status,
                category=error.category,
                correlation_id=error.correlation_id,
                body=body,
            )
        return _json_or_empty(response)
    raise AssertionError("unreachable")


def exchange_refresh_token(refresh_token: str, *, session: requests.Session | None = None, timeout: float = 30) -> dict:
    """HubSpot's answer to a refresh token of this server's HubSpot app: a new access token (and maybe a new
    refresh token). Stores nothing. Raises as post_token."""
    return post_token(
        {
            "grant_type": "refresh_token",
            "client_id": settings.HUBSPOT_CLIENT_ID,
            "client_secret": settings.HUBSPOT_CLIENT_SECRET,
            "refresh_token": refresh_token,
        },
        session=session,
        timeout=timeout,
    )


def refresh_access_token(
    source: Source, *, force: bool = False, stale_token: str | None = None, session: requests.Session | None = None
) -> str:
    """Return a fresh access token for `source`, refreshing it if needed; updates `source` in place.

    Runs under a row lock on the Source: after acquiring it, the stored token is re-read, and if another worker
    refreshed meanwhile (still fresh, or different from `stale_token`, the one that just got a 401) it is used
    as is, so concurrent workers make exactly one token request. `force` refreshes even a fresh token (after a
    401). A revoked or invalid refresh token marks the source needs_reconnect and raises NeedsReconnect.
    """
    reconnect: NeedsReconnect | None = None
    with transaction.atomic():
        locked = Source.objects.select_for_update().get(pk=source.pk)
        already_new = stale_token is not None and locked.access_token and locked.access_token != stale_token
        if (_fresh(locked) and not force) or (already_new and _fresh(locked, timedelta(0))):
            _copy_tokens(locked, source)
            return locked.access_token
        if not locked.token:
            reconnect = NeedsReconnect("No refresh token is stored for this source.", category="NO_REFRESH_TOKEN")
        else:
            try:
                payload = exchange_refresh_token(locked.token, session=session)
            except NeedsReconnect as exc:
                reconnect = exc
            else:
                access = payload.get("access_token")
                if not access:
                    raise AuthError("token response without access_token", category="BAD_TOKEN_RESPONSE")
                locked.access_token = access
                locked.access_token_expires_at = timezone.now() + timedelta(
                    seconds=int(payload.get("expires_in") or 1800)
                )
                fields = ["access_token", "access_token_expires_at", "updated_at"]
                # HubSpot may omit refresh_token on a refresh: keep the old one then.
                if payload.get("refresh_token") and payload["refresh_token"] != locked.token:
                    locked.token = payload["refresh_token"]
                    fields.append("token")
                if locked.status != Source.Status.OK:
                    locked.status, locked.status_detail = Source.Status.OK, ""
                    fields += ["status", "status_detail"]
                locked.save(update_fields=fields)
                log.info("source %s: access token refreshed (expires in %ss)", source.pk, payload.get("expires_in"))
                _copy_tokens(locked, source)
                source.status, source.status_detail = locked.status, locked.status_detail
                return access
    # Outside the transaction, so the mark is committed even though we raise.
    detail = (
        "HubSpot refused the stored refresh token (it was revoked or the app was uninstalled). "
        "Reconnect HubSpot in the source's settings to resume syncing."
    )
    if reconnect.message:
        detail += f" HubSpot said: {reconnect.message}"
    _mark_needs_reconnect(source, detail)
    raise reconnect


def _copy_tokens(src: Source, dst: Source) -> None:
    dst.access_token = src.access_token
    dst.access_token_expires_at = src.access_token_expires_at
    dst.token = src.token

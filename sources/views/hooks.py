"""HubSpot's webhook receiver: `POST /hooks/hubspot/` (outside the workspace pages: no login, no CSRF token; the
v3 signature is the authentication). What it checks and stores: sources.live."""

from __future__ import annotations

import hashlib
import json
import logging
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import live

logger = logging.getLogger(__name__)


def _error(status: int, error: str, message: str) -> JsonResponse:
    return JsonResponse({"status": "error", "error": error, "message": message}, status=status)


def _uris(request: HttpRequest) -> list[str]:
    """The URLs HubSpot may have signed: the configured public URL of this path (behind a reverse proxy), and the
    URL as Django sees it."""
    uris = []
    if settings.HUBSYNC_PUBLIC_URL:
        uris.append(settings.HUBSYNC_PUBLIC_URL + request.get_full_path())
    try:
        uris.append(request.build_absolute_uri())
    except Exception:  # DisallowedHost: the configured URL may still match
        logger.info("webhook: the Host header is not allowed; checking against HUBSYNC_PUBLIC_URL only")
    return uris


@csrf_exempt
@require_POST
def hubspot_webhook(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error(400, "bad_request", "Content-Length is not a number.")
    limit = settings.HUBSYNC_WEBHOOK_MAX_BYTES
    if length > limit:
        return _error(413, "too_large", f"The body is larger than {limit} bytes.")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "too_large", f"The body is larger than {limit} bytes.")
    if len(body) > limit:
        return _error(413, "too_large", f"The body is larger than {limit} bytes.")
    signature = request.headers.get("X-HubSpot-Signature-v3")
    try:
        live.verify(
            secret=settings.HUBSPOT_CLIENT_SECRET,
            method=request.method or "POST",
            uris=_uris(request),
            body=body,
            timestamp=request.headers.get("X-HubSpot-Request-Timestamp"),
            signature=signature,
            now_ms=int(time.time() * 1000),
        )
    except live.SignatureError as exc:
        logger.warning("webhook refused: %s", exc)
        return _error(401, "invalid_signature", str(exc))
    if live.seen_before(hashlib.sha256((signature or "").encode()).hexdigest()):
        return _error(409, "replayed", "This signed request was received already.")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return _error(400, "bad_request", "The body is not valid JSON.")
    if not isinstance(payload, list | dict):
        return _error(400, "bad_request", "The body must be a JSON array of events.")
    received = live.store_events(payload)
    return JsonResponse({"status": "ok", **received.as_dict()})

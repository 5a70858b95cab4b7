"""Sandbox OAuth tokens.

Access tokens are self-contained and signed (HMAC over a key derived from SECRET_KEY and a sandbox-only salt),
so checking one costs no database query. They carry the `sbx-hs-at-` prefix (refresh tokens `sbx-hs-rt-`,
codes `sbx-hs-code-`): recognisable in logs, and the salt means no other part of hubsync (and no real HubSpot)
would ever accept them. Refresh tokens are stored so they can be revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from django.conf import settings

ACCESS_PREFIX = "sbx-hs-at-"
REFRESH_PREFIX = "sbx-hs-rt-"
CODE_PREFIX = "sbx-hs-code-"
APP_ID = 4242424


def _key() -> bytes:
    return hashlib.sha256(b"hubsync-sandbox-hubspot-tokens:" + settings.SECRET_KEY.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class AccessToken:
    hub_id: int
    scopes: tuple[str, ...]
    expires_at: float  # epoch seconds
    user_id: int
    user: str
    client_id: str

    def expires_in(self, now: float | None = None) -> int:
        return int(self.expires_at - (time.time() if now is None else now))


def mint_access_token(
    *, hub_id: int, scopes: list[str] | tuple[str, ...], lifetime: int, user_id: int, user: str, client_id: str
) -> str:
    payload = {
        "h": hub_id,
        "s": sorted(set(scopes)),
        "e": int(time.time()) + int(lifetime),
        "u": user_id,
        "m": user,
        "c": client_id,
        "n": secrets.token_hex(8),
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    sig = _b64(hmac.new(_key(), body.encode(), hashlib.sha256).digest())
    return f"{ACCESS_PREFIX}{body}.{sig}"


_VERIFIED: dict[str, AccessToken] = {}


def decode_access_token(token: str) -> AccessToken | None:
    """The token's claims if it is a genuine sandbox access token (expired or not), else None."""
    cached = _VERIFIED.get(token)
    if cached is not None:
        return cached
    if not token.startswith(ACCESS_PREFIX):
        return None
    try:
        body, sig = token[len(ACCESS_PREFIX) :].rsplit(".", 1)
        expected = _b64(hmac.new(_key(), body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sig, expected):
            return None
        p = json.loads(_unb64(body))
        claims = AccessToken(int(p["h"]), tuple(p["s"]), float(p["e"]), int(p["u"]), str(p["m"]), str(p["c"]))
    except (ValueError, KeyError, TypeError):
        return None
    if len(_VERIFIED) > 10_000:
        _VERIFIED.clear()
    _VERIFIED[token] = claims
    return claims


def is_sandbox_token(token: str) -> bool:
    """True for any sandbox credential (access token, refresh token or code): lets production code refuse to
    send one to a real HubSpot."""
    return token.startswith((ACCESS_PREFIX, REFRESH_PREFIX, CODE_PREFIX))


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_hex(4) + "-" + secrets.token_hex(2) + "-" + secrets.token_hex(16)


def new_code() -> str:
    return CODE_PREFIX + secrets.token_urlsafe(24)

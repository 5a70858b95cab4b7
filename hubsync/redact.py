"""Credentials out of stored text: the one place that cuts them out of error messages.

HubSpot and Segment sometimes echo a request back in an error (headers, form fields, JSON), and requests' own
exceptions quote URLs. Errors are redacted when they are *stored* (`RedactedTextField` in hubsync/fields.py on
every error column, and the extraction engine's per-collection errors), so every page, alert e-mail, webhook
body and log line built from them is clean, whoever renders it. Pages may redact again with the secrets they
know (the source's tokens, the space's write key): `redact` is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_SECRET_PATTERNS = [
    # Authorization headers (HubSpot: Bearer; Segment: Basic base64("<write key>:")), in any quoting.
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)(?!\[redacted\])[A-Za-z0-9._~+/=-]{8,}"),
    # JSON / form / query fields that carry credentials. The look-behind keeps "status_code" and the like.
    re.compile(
        r"(?i)((?<![A-Za-z0-9_])[\"']?(?:access_token|refresh_token|id_token|client_secret|code_verifier|writeKey|"
        r"write_key|api_key|apikey|password|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\"'&,\s}]+"
    ),
    # An OAuth authorization code in a form or query string; "error code: 429" stays readable.
    re.compile(r"(?i)((?<![A-Za-z0-9_])code=)[^\"'&,\s}]+"),
    # Credentials in URLs: scheme://user:password@host
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"),
]


def redact(text: str | None, secrets: Iterable[str] = ()) -> str:
    """The text with known secret values and anything shaped like a credential replaced by "[redacted]"."""
    if not text:
        return ""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)
        else:
            text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text

"""The HubSpot API client: OAuth token upkeep, the shared rate limiter, bounded retries, typed errors.

One `HubSpotClient` per sync run (or per wizard request). It keeps one `requests.Session` (pooled keep-alive
connections), counts `api_calls` and `retries` for the run, and never logs a token: log lines carry the method,
the path (secrets masked), the status and HubSpot's correlationId.

Tokens: with a `Source`, the access token is refreshed from the stored expiry (less than 5 minutes left), not on
a 401, because HubSpot says a 401 is not a reliable signal. A 401 still gets exactly one refresh and one retry.
The refresh runs under a row lock on the Source (select_for_update inside a transaction, expiry re-checked
after the lock is taken), so two workers never refresh at once. A revoked refresh token marks the source
"needs reconnect" and stops its schedule.

Long property lists (`list_page`): HubSpot answers 414 when the GET URL is too long. The client puts as many
properties in the URL as fit in HUBSPOT_MAX_URL_LENGTH, and reads the rest for the same page of ids in one
`batch/read` POST per page (no URL limit), merging the properties per record. Two requests per page whatever the
number of properties; the list request alone decides the ids and the paging, so the page stays consistent. (A
record archived between the two requests keeps only the first half of its properties on that page; it is then
read as archived on the next run.) `search_page` does the same for search bodies over HubSpot's 3,000 characters.
"""

from __future__ import annotations

from .client import HubSpotClient
from .meter import MeterReading, RequestMeter
from .tokens import refresh_access_token
from .wire import (
    BATCH_SIZE,
    REDACTED,
    SECRET_KEYS,
    AuthError,
    BadRequest,
    HubSpotError,
    MissingScopes,
    NeedsReconnect,
    NotFound,
    TransientError,
    _retry_after,
    api_base,
    backoff_delay,
    redact,
    safe_url,
)

__all__ = [
    "BATCH_SIZE",
    "REDACTED",
    "SECRET_KEYS",
    "AuthError",
    "BadRequest",
    "HubSpotClient",
    "HubSpotError",
    "MeterReading",
    "MissingScopes",
    "NeedsReconnect",
    "NotFound",
    "RequestMeter",
    "TransientError",
    "_retry_after",
    "api_base",
    "backoff_delay",
    "redact",
    "refresh_access_token",
    "safe_url",
]

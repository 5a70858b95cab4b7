"""The HubSpot API client (see the package docstring)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from hubsync.jsoncodec import loads

from ..models import Source
from ..ratelimit import GENERAL, GUARD_MAX_MS, KINDS, SEARCH, RateLimiter, account_key, get_rate_limiter
from .meter import RequestMeter
from .tokens import _fresh, refresh_access_token
from .wire import (
    _BY_STATUS,
    BATCH_SIZE,
    NETWORK_ERRORS,
    HubSpotError,
    NotFound,
    TransientError,
    _dumps,
    _retry_after,
    api_base,
    backoff_delay,
    safe_url,
)

log = logging.getLogger("sources.hubspot")

# --- the client -----------------------------------------------------------------------------------------


class HubSpotClient:
    """HubSpot CRM v3 for one connection. Not thread-safe: one client per thread (they share the limiter, and the
    clients of one run share its `RequestMeter`, which is)."""

    def __init__(
        self,
        source: Source | None = None,
        *,
        access_token: str | None = None,
        hub_id: int | None = None,
        timeout: float = 30,
        max_retries: int = 6,
        limiter: RateLimiter | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        session: requests.Session | None = None,
        meter: RequestMeter | None = None,
    ) -> None:
        if source is None and not access_token:
            raise ValueError("HubSpotClient needs a source or an access_token")
        self.source = source
        self._access_token = access_token
        self.hub_id = hub_id if hub_id is not None else (source.hub_id if source is not None else None)
        self.timeout = timeout
        self.max_retries = max_retries
        self.limiter = limiter or get_rate_limiter()
        self.backoff_base = settings.HUBSPOT_RETRY_BASE_SECONDS if backoff_base is None else backoff_base
        self.backoff_cap = settings.HUBSPOT_RETRY_CAP_SECONDS if backoff_cap is None else backoff_cap
        self.base = api_base()
        self.api_calls = 0
        self.retries = 0
        self.token_refreshes = 0
        self.session = session or self._new_session()
        self.meter = meter if meter is not None else RequestMeter()
        for kind in KINDS:
            self.meter.budget_seen(kind, self.limiter.budget(self.account, kind))

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # Keep-alive pool; retries are ours (urllib3's would bypass the limiter and the counters).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": "hubsync"})
        return session

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HubSpotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def account(self) -> str:
        return account_key(self.hub_id)

    # --- tokens -------------------------------------------------------------------------------------------
    def _token(self) -> str:
        if self.source is None:
            return self._access_token or ""
        if not _fresh(self.source):
            before = self.source.access_token
            token = refresh_access_token(self.source, session=self.session)
            if token != before:
                self.token_refreshes += 1
            return token
        return self.source.access_token

    def _refresh_after_401(self, stale: str) -> bool:
        if self.source is None:
            return False
        token = refresh_access_token(self.source, force=True, stale_token=stale, session=self.session)
        if token != stale:
            self.token_refreshes += 1
        return True

    # --- the request loop ---------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        json: Any = None,
        kind: str = GENERAL,
        auth: bool = True,
        ok: tuple[int, ...] = (200, 201, 207),
    ) -> Any:
        """One API call with the limiter, retries and typed errors; returns the decoded JSON (or None)."""
        url = self.base + path + (f"?{query}" if query else "")
        # Compact JSON: what search_page measures against HubSpot's 3,000-character body limit.
        data = None if json is None else _dumps(json)
        attempt = 0
        refreshed = False
        while True:
            token = self._token() if auth else None
            try:
                response = self._send(method, url, data, token, kind)
            except NETWORK_ERRORS as exc:
                reason = type(exc).__name__
                log.warning("HubSpot %s %s failed: %s (attempt %s)", method, safe_url(url), reason, attempt + 1)
                error = TransientError(f"{reason} after {attempt + 1} attempts", category="NETWORK")
                attempt = self._again(attempt, error)
                continue
            status = response.status_code
            if status in ok:
                if not response.content:
                    return None
                try:
                    return loads(response.content)
                except ValueError:
                    # A body cut short (a proxy or a reset mid-response): as transient as a 5xx.
                    log.warning("HubSpot %s %s -> %s with a body that is not JSON", method, safe_url(url), status)
                    error = TransientError("HubSpot returned a body that is not JSON", status=status)
                    attempt = self._again(attempt, error)
                    continue
            if status == 401 and token is not None and not refreshed and self._refresh_after_401(token):
                refreshed = True
                self.retries += 1
                log.info("HubSpot %s %s -> 401: refreshed the token, retrying once", method, safe_url(url))
                continue
            if status == 429 or status >= 500:
                attempt = self._after_transient(response, method, url, attempt, kind)
                continue
            refused = _BY_STATUS.get(status, HubSpotError).from_response(response)
            log.warning(
                "HubSpot %s %s -> %s %s (correlationId %s)",
                method,
                safe_url(url),
                status,
                refused.category,
                refused.correlation_id,
            )
            raise refused

    def _send(self, method: str, url: str, data: bytes | None, token: str | None, kind: str) -> requests.Response:
        """One HTTP request within the account's budget; what the response says of the budget is learned."""
        headers = {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        flight = uuid.uuid4().hex
        self.limiter.acquire(self.account, kind, flight=flight)  # in flight from its slot on (one round trip)
        self.api_calls += 1
        started = time.monotonic()
        self.meter.started(kind)
        try:
            response = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout)
        finally:
            self.limiter.answered(self.account, flight)
            self.meter.finished()
        log.debug(
            "HubSpot %s %s -> %s in %.0f ms %s",
            method,
            safe_url(url),
            response.status_code,
            (time.monotonic() - started) * 1000,
            response.headers.get("X-HubSpot-Correlation-Id", ""),
        )
        self.limiter.observe(self.account, response.headers, kind)
        self.meter.budget_seen(kind, self.limiter.budget(self.account, kind))
        if response.status_code == 429:
            self.meter.rate_limited()
        return response

    def _again(self, attempt: int, error: HubSpotError, delay: float | None = None) -> int:
        """Wait before the next attempt (backoff unless `delay` is given) and return its number, or raise `error`
        when the attempts are spent."""
        if attempt >= self.max_retries:
            raise error from None
        attempt += 1
        self.retries += 1
        time.sleep(backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_cap) if delay is None else delay)
        return attempt

    def _after_transient(self, response: requests.Response, method: str, url: str, attempt: int, kind: str) -> int:
        """A 429 or 5xx: retried after HubSpot's Retry-After (capped) or a backoff."""
        error = TransientError.from_response(response)
        log.warning(
            "HubSpot %s %s -> %s %s (correlationId %s, attempt %s)",
            method,
            safe_url(url),
            response.status_code,
            error.category,
            error.correlation_id,
            attempt + 1,
        )
        delay = None
        if attempt < self.max_retries:
            delay = _retry_after(response)
            if response.status_code == 429 and delay is None and self._at_the_edge(kind):
                # Our own requests fill the window and one arrived early: the limiter learns of it (its guard
                # widens when this recurs), and the request goes again when a slot frees (the window is full
                # anyway; nobody else needs to wait).
                self.limiter.edge_429(self.account, kind)
                delay = 0.0
            elif delay is None:
                delay = backoff_delay(attempt + 1, base=self.backoff_base, cap=self.backoff_cap)
            else:
                delay = min(delay, max(self.backoff_cap, 1.0))
            if response.status_code == 429 and delay:
                # Every worker on this account backs off, not just this one.
                self.limiter.penalize(self.account, delay, kind)
        return self._again(attempt, error, delay)

    def _at_the_edge(self, kind: str) -> bool:
        """A 429 the guard can answer: this limiter's own slots fill the window and the guard can still grow."""
        return self.limiter.guard_ms(self.account, kind) < GUARD_MAX_MS and self.limiter.at_edge(self.account, kind)

    # --- CRM v3 -------------------------------------------------------------------------------------------
    def get_properties(self, collection: str) -> list[dict]:
        """Every property definition of the collection (HubSpot does not page this)."""
        return self.request("GET", f"/crm/v3/properties/{quote(collection)}")["results"]

    def _list_query(self, properties: list[str], after: str | None, limit: int, archived: bool) -> str:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        if after:
            params.append(("after", after))
        if archived:
            params.append(("archived", "true"))
        if properties:
            # Comma-joined (HubSpot accepts both forms) and commas left unescaped: the shortest URL.
            params.append(("properties", ",".join(properties)))
        return urlencode(params, safe=",", quote_via=quote)

    def _split_for_url(
        self, path: str, properties: list[str], after: str | None, limit: int, archived: bool
    ) -> tuple[list[str], list[str]]:
        """The longest prefix of `properties` whose list URL fits HUBSPOT_MAX_URL_LENGTH, and the rest."""
        room = settings.HUBSPOT_MAX_URL_LENGTH - len(
            self.base + path + "?" + self._list_query([], after, limit, archived)
        )
        room -= len("&properties=")
        used = 0
        for index, name in enumerate(properties):
            cost = len(quote(name, safe="")) + (1 if index else 0)
            if used + cost > room:
                return properties[:index], properties[index:]
            used += cost
        return properties, []

    def list_page(
        self,
        collection: str,
        *,
        properties: list[str],
        after: str | None = None,
        limit: int = 100,
        archived: bool = False,
    ) -> dict:
        """One page of the list endpoint: HubSpot's JSON ({"results": [...], "paging": ...}).

        Never a 414: properties that do not fit in the URL are read for the page's ids through batch/read and
        merged into each record (see the module docstring).
        """
        path = f"/crm/v3/objects/{quote(collection)}"
        in_url, rest = self._split_for_url(path, list(properties), after, limit, archived)
        page = self.request("GET", path, query=self._list_query(in_url, after, limit, archived))
        results = page.get("results") or []
        if rest and results:
            extra = {
                str(r["id"]): r.get("properties") or {}
                for r in self.batch_read(collection, [str(r["id"]) for r in results], rest, archived=archived)
            }
            for record in results:
                record.setdefault("properties", {}).update(extra.get(str(record["id"]), {}))
        return page

    def iter_list(
        self,
        collection: str,
        *,
        properties: list[str],
        after: str | None = None,
        limit: int = 100,
        archived: bool = False,
    ) -> Iterator[tuple[dict, str | None]]:
        """Every list page from `after` on, yielded one at a time with the `after` that reads the next one (None
        on the last page): store that value with the page to resume exactly there."""
        while True:
            page = self.list_page(collection, properties=properties, after=after, limit=limit, archived=archived)
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            yield page, after
            if not after:
                return

    def search_page(self, collection: str, body: dict) -> dict:
        """One search request (POST), under the separate 5/s search budget. 400 past 10,000 -> BadRequest.

        HubSpot refuses search bodies over 3,000 characters: when the requested properties make it longer, the
        search asks for the properties that fit and the rest are read for the page's ids through batch/read.
        """
        path = f"/crm/v3/objects/{quote(collection)}/search"
        properties = list(body.get("properties") or [])
        limit = settings.HUBSPOT_SEARCH_MAX_BODY
        if not properties or len(_dumps(body)) <= limit:
            return self.request("POST", path, json=body, kind=SEARCH)
        fit: list[str] = []
        bare = len(_dumps({**body, "properties": []}))
        used = bare
        for name in properties:
            cost = len(json.dumps(name)) + (1 if fit else 0)
            if used + cost > limit:
                break
            fit.append(name)
            used += cost
        rest = properties[len(fit) :]
        page = self.request("POST", path, json={**body, "properties": fit}, kind=SEARCH)
        results = page.get("results") or []
        if rest and results:
            extra = {
                str(r["id"]): r.get("properties") or {}
                for r in self.batch_read(collection, [str(r["id"]) for r in results], rest)
            }
            for record in results:
                record.setdefault("properties", {}).update(extra.get(str(record["id"]), {}))
        return page

    def read_record(
        self, collection: str, object_id: str, properties: list[str], *, archived: bool = False
    ) -> dict | None:
        """One record by id, None when HubSpot does not find it. The answer may carry another id than the one
        asked for: HubSpot answers a read of an id merged into another record with that record."""
        path = f"/crm/v3/objects/{quote(collection)}/{quote(str(object_id), safe='')}"
        params = [("archived", "true")] if archived else []
        if properties:
            params.append(("properties", ",".join(properties)))
        try:
            return self.request("GET", path, query=urlencode(params, safe=",", quote_via=quote))
        except NotFound as exc:
            if exc.category != "OBJECT_NOT_FOUND":
                raise
            return None

    def batch_read(
        self, collection: str, ids: list[str], properties: list[str], *, archived: bool = False
    ) -> list[dict]:
        """Records by id, 100 per request. Ids HubSpot cannot find (207 errors) are left out."""
        records, missing = self.batch_read_found(collection, ids, properties, archived=archived)
        if missing:
            log.info("batch read %s: %s ids not returned", collection, len(missing))
        return records

    def batch_read_found(
        self, collection: str, ids: list[str], properties: list[str], *, archived: bool = False
    ) -> tuple[list[dict], set[str]]:
        """(records, ids HubSpot *reported* missing), 100 ids per request.

        Missing means named in a 207's `errors[]` of category OBJECT_NOT_FOUND (`context.ids`), or a 404
        OBJECT_NOT_FOUND for the whole request (none found). An id that was neither returned nor reported is in
        neither set: the deletion check deletes only what HubSpot said is not there."""
        out: list[dict] = []
        missing: set[str] = set()
        path = f"/crm/v3/objects/{quote(collection)}/batch/read"
        query = "archived=true" if archived else ""
        for start in range(0, len(ids), BATCH_SIZE):
            chunk = ids[start : start + BATCH_SIZE]
            body = {"inputs": [{"id": str(i)} for i in chunk], "properties": list(properties)}
            try:
                data = self.request("POST", path, query=query, json=body) or {}
            except NotFound as exc:
                if exc.category != "OBJECT_NOT_FOUND":
                    raise
                missing.update(str(i) for i in chunk)
                continue
            for error in data.get("errors") or []:
                if isinstance(error, dict) and error.get("category") == "OBJECT_NOT_FOUND":
                    missing.update(str(i) for i in ((error.get("context") or {}).get("ids") or []))
            out.extend(data.get("results") or [])
        return out, missing

    def get_owners(self) -> Iterator[dict]:
        """Every owner, page by page (yielded, not accumulated)."""
        after: str | None = None
        while True:
            query = urlencode([("limit", "100")] + ([("after", after)] if after else []))
            page = self.request("GET", "/crm/v3/owners", query=query)
            yield from page.get("results") or []
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    # --- account ------------------------------------------------------------------------------------------
    def token_info(self) -> dict:
        """hub_id, hub_domain, user, scopes, ... of the current access token (the token sits in the path, so
        safe_url masks it in every log line)."""
        token = self._token()
        return self.request("GET", f"/oauth/v1/access-tokens/{quote(token, safe='')}", auth=False)

    def account_details(self) -> dict:
        return self.request("GET", "/account-info/v3/details")

"""Pure parts of the HubSpot client: error parsing, redaction, log-safe URLs, backoff, URL splitting."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.test import override_settings
from django.utils import timezone

from sources.hubspot import (
    AuthError,
    BadRequest,
    HubSpotClient,
    HubSpotError,
    MissingScopes,
    NeedsReconnect,
    NotFound,
    RequestMeter,
    TransientError,
    api_base,
    backoff_delay,
    redact,
    safe_url,
)
from sources.models import Source
from sources.ratelimit import Budget, LocalRateLimiter, get_rate_limiter
from tests.factories import SourceFactory
from tests.sources.test_ratelimit import max_in_window


def _response(status: int, body: bytes, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    return response


def test_api_base_defaults_to_the_sandbox_on_this_server():
    with override_settings(HUBSPOT_API_BASE="", BASE_URL="http://127.0.0.1:8123"):
        assert api_base() == "http://127.0.0.1:8123/sandbox/hubspot"
    with override_settings(HUBSPOT_API_BASE="https://api.hubapi.com/"):
        assert api_base() == "https://api.hubapi.com"


def test_error_from_hubspot_body():
    body = (
        b'{"status":"error","message":"This app hasn\'t been granted all required scopes",'
        b'"correlationId":"c0ffee","category":"MISSING_SCOPES","errors":[]}'
    )
    error = MissingScopes.from_response(_response(403, body))
    assert (error.status, error.category, error.correlation_id) == (403, "MISSING_SCOPES", "c0ffee")
    assert "granted" in error.message
    assert str(error) == "403 MISSING_SCOPES: This app hasn't been granted all required scopes (correlationId c0ffee)"


def test_error_from_html_gateway_body():
    error = HubSpotError.from_response(
        _response(502, b"<html>502 Bad Gateway</html>", {"X-HubSpot-Correlation-Id": "x1"})
    )
    assert error.status == 502 and error.correlation_id == "x1" and error.body == {}


def test_error_body_secrets_are_redacted():
    body = {"message": "m", "refresh_token": "sbx-hs-rt-secret", "context": {"access_token": ["at"], "ok": ["v"]}}
    error = BadRequest("m", status=400, body=body)
    assert "sbx-hs-rt-secret" not in repr(error.body)
    assert error.body["context"] == {"access_token": "•••", "ok": ["v"]}
    assert redact([{"client_secret": "s"}]) == [{"client_secret": "•••"}]


def test_safe_url_masks_tokens():
    url = "https://api.hubapi.com/oauth/v1/access-tokens/CJT2-secret-token?refresh_token=abc&code=xyz&limit=1"
    masked = safe_url(url)
    assert "CJT2" not in masked and "abc" not in masked and "xyz" not in masked
    assert masked.endswith("limit=1")


def test_backoff_is_full_jitter_and_capped():
    rng_state = random.getstate()
    try:
        delays = [backoff_delay(attempt, base=0.5, cap=4) for attempt in range(1, 10) for _ in range(50)]
    finally:
        random.setstate(rng_state)
    assert min(delays) >= 0 and max(delays) <= 4
    assert max(backoff_delay(1, base=0.5, cap=4) for _ in range(200)) <= 0.5


@override_settings(HUBSPOT_API_BASE="https://api.hubapi.com", HUBSPOT_MAX_URL_LENGTH=300)
def test_long_property_lists_are_split_to_fit_the_url():
    client = HubSpotClient(
        access_token="t", limiter=LocalRateLimiter({"general": Budget(0, 1), "search": Budget(0, 1)})
    )
    props = [f"custom_property_{i:03d}" for i in range(40)]
    in_url, rest = client._split_for_url("/crm/v3/objects/contacts", props, "12345", 100, False)
    assert in_url and rest and in_url + rest == props
    url = client.base + "/crm/v3/objects/contacts?" + client._list_query(in_url, "12345", 100, False)
    assert len(url) <= 300
    # One more property would not have fit.
    longer = client.base + "/crm/v3/objects/contacts?" + client._list_query(in_url + rest[:1], "12345", 100, False)
    assert len(longer) > 300
    assert client._split_for_url("/crm/v3/objects/contacts", props[:3], None, 100, False) == (props[:3], [])


def test_a_body_decodes_exactly_as_the_json_module_decodes_it():
    """The client decodes with orjson and falls back to the json module for what orjson refuses: either way the
    records are what the json module would make of the body, and a body that is not JSON raises ValueError."""
    from hubsync.jsoncodec import loads

    bodies = [
        '{"results":[{"id":"1","properties":{"firstname":"Zoë","note":"a\\u2028b\\u0000c","x":null}}]}',
        '{"results":[{"id":"2","properties":{"firstname":"\\ud800 lone"}}],"total":2}',  # orjson refuses
        '{"total":NaN,"results":[]}',  # json's extension: orjson refuses
        '{"results":[{"id":"3","properties":{"emoji":"😀","quote":"\\"\\\\/"}}]}',
    ]
    for text in bodies:
        decoded = loads(_response(200, text.encode("utf-8")).content)
        expected = json.loads(text)
        assert json.dumps(decoded, sort_keys=True) == json.dumps(expected, sort_keys=True), text
    assert loads(_response(200, '{"firstname":"Zoë"}'.encode()).content)["firstname"] == "Zoë"
    for broken in (b'{"results":[{"id":"1","propert', b"<html>502</html>", b"\xff\xfe{}"):
        with pytest.raises(ValueError):
            loads(_response(200, broken).content)


def test_a_200_with_a_body_cut_short_is_retried(monkeypatch):
    client = HubSpotClient(access_token="t", hub_id=PORTAL)
    answers = [_response(200, b'{"results":[{"id":"1"'), _response(200, b'{"results":[{"id":"1"}]}')]
    monkeypatch.setattr(client, "_send", lambda *args, **kwargs: answers.pop(0))
    monkeypatch.setattr("sources.hubspot.client.time.sleep", lambda seconds: None)
    assert client.request("GET", "/crm/v3/objects/contacts") == {"results": [{"id": "1"}]}
    assert answers == []


def test_client_needs_a_source_or_a_token():
    with pytest.raises(ValueError):
        HubSpotClient()


# --- against the sandbox over real HTTP -------------------------------------------------------------------

PORTAL = 1001  # the default sandbox portal: 300 contacts, 120 companies, 150 deals, 80 tickets


@pytest.fixture
def sandbox(hubspot_sandbox, settings):
    settings.HUBSPOT_API_BASE = hubspot_sandbox.base_url
    # Fast retries: the tests prove the retry logic, not the patience.
    settings.HUBSPOT_RETRY_BASE_SECONDS = 0.05
    settings.HUBSPOT_RETRY_CAP_SECONDS = 0.5
    get_rate_limiter().reset(str(PORTAL))
    yield hubspot_sandbox
    get_rate_limiter().reset(str(PORTAL))


def make_source(sandbox, workspace, *, scopes=None, lifetime=None, expires_at=None) -> Source:
    tok = sandbox.token(PORTAL, scopes, lifetime)
    return SourceFactory(
        workspace=workspace,
        name="HubSpot",
        schema_name="hubspot",
        hub_id=PORTAL,
        token=tok["refresh_token"],
        access_token=tok["access_token"],
        access_token_expires_at=expires_at or timezone.now() + timedelta(seconds=tok["expires_in"]),
        enabled=True,
        next_sync_at=timezone.now(),
    )


def add_custom_properties(count: int) -> list[str]:
    """Custom properties in bulk (sandbox.add_property one by one takes ~0.1 s each)."""
    from django.db.models import F

    from sandbox.hubspot import state
    from sandbox.hubspot.models import CustomProperty, Portal

    names = [f"custom_field_with_a_rather_long_name_{i:03d}" for i in range(count)]
    now_ms = int(time.time() * 1000)
    CustomProperty.objects.bulk_create(
        CustomProperty(
            portal_id=PORTAL,
            object_type="contacts",
            name=name,
            label=name.replace("_", " "),
            type="string",
            field_type="text",
            created_ms=now_ms,
            updated_ms=now_ms,
        )
        for name in names
    )
    Portal.objects.filter(pk=PORTAL).update(schema_version=F("schema_version") + 1)
    state.invalidate()
    return names


def read_all(client: HubSpotClient, collection: str, properties: list[str], limit: int = 100) -> list[dict]:
    return [r for page, _ in client.iter_list(collection, properties=properties, limit=limit) for r in page["results"]]


def test_list_paging_returns_every_record(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    records = read_all(client, "contacts", ["email", "firstname"])
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == sandbox.portal(PORTAL).contacts == 300
    assert all("email" in r["properties"] for r in records)
    assert client.api_calls == 3 and client.retries == 0


def test_properties(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    props = client.get_properties("contacts")
    names = {p["name"] for p in props}
    assert {"email", "lastmodifieddate", "createdate", "hs_object_id"} <= names
    assert 40 <= len(props) <= 400
    assert {p["type"] for p in props} >= {"string", "datetime", "enumeration", "number"}


def test_search(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    body = {
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate"],
        "limit": 200,
    }
    first = client.search_page("contacts", body)
    assert first["total"] == 300 and len(first["results"]) == 200
    second = client.search_page("contacts", {**body, "after": first["paging"]["next"]["after"]})
    ids = [int(r["id"]) for r in first["results"] + second["results"]]
    assert len(set(ids)) == 300 and ids == sorted(ids)
    assert "paging" not in second


def test_search_with_a_long_property_list_stays_under_the_body_limit(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    add_custom_properties(80)
    real = [p["name"] for p in client.get_properties("contacts")]
    body = {
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": real,
        "limit": 20,
    }
    assert len(json.dumps(body)) > 3000  # HubSpot (and the sandbox) would answer 400
    page = client.search_page("contacts", body)
    by_id = {r["id"]: r for r in client.batch_read("contacts", [r["id"] for r in page["results"]], real)}
    assert len(page["results"]) == 20
    for record in page["results"]:
        assert record["properties"] == by_id[record["id"]]["properties"]


def test_batch_read(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    ids = [r["id"] for r in read_all(client, "contacts", ["email"])][:150]
    calls = client.api_calls
    records = client.batch_read("contacts", ids + ["999999999999"], ["email", "firstname"])
    assert sorted(r["id"] for r in records) == sorted(ids)  # the unknown id is left out
    assert client.api_calls - calls == 2  # chunks of 100
    assert all("firstname" in r["properties"] for r in records)


def test_batch_read_found_reports_the_ids_hubspot_says_are_missing(sandbox, workspace, monkeypatch):
    """The deletion check's question: which ids does HubSpot *say* it does not have (207 errors, or a 404 for the
    whole request), live and archived. Anything else (another 404, an error without ids) reports nothing."""
    client = HubSpotClient(make_source(sandbox, workspace))
    ids = [r["id"] for r in read_all(client, "contacts", ["email"])][:5]
    sandbox.purge([ids[0]], portal=PORTAL)
    archived = sandbox.mutate(PORTAL, "contacts", archive=1, seed=2).archived[0]
    asked = [*ids, archived]
    live, missing = client.batch_read_found("contacts", asked, ["hs_object_id"])
    assert {r["id"] for r in live} == set(ids[1:]) - {archived} and missing == {ids[0], archived}
    held, held_missing = client.batch_read_found("contacts", asked, ["hs_object_id"], archived=True)
    assert [r["id"] for r in held] == [archived] and held[0]["archived"] is True
    assert held_missing == set(asked) - {archived}

    answers = iter(
        [
            _response(404, b'{"status":"error","message":"resource not found","category":"OBJECT_NOT_FOUND"}'),
            _response(404, b"<html>Not Found</html>"),
        ]
    )
    monkeypatch.setattr(client.session, "request", lambda *args, **kwargs: next(answers))
    assert client.batch_read_found("contacts", ["7", "8"], ["hs_object_id"]) == ([], {"7", "8"})
    with pytest.raises(NotFound):  # not HubSpot's "these ids do not exist": an error, never "all missing"
        client.batch_read_found("contacts", ["7", "8"], ["hs_object_id"])


def test_owners_token_info_and_account_details(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    owners = list(client.get_owners())
    assert owners and all("email" in o for o in owners)
    info = client.token_info()
    assert info["hub_id"] == PORTAL and "crm.objects.contacts.read" in info["scopes"]
    assert client.account_details()["portalId"] == PORTAL


def test_access_token_only_client(sandbox):
    client = HubSpotClient(access_token=sandbox.access_token(PORTAL), hub_id=PORTAL)
    assert client.token_info()["hub_id"] == PORTAL
    assert len(client.get_properties("deals")) > 10


def test_429_storm_completes_with_retries_counted(sandbox, workspace):
    """A tiny budget at HubSpot and no limiter of ours: many 429s, every one retried, nothing lost."""
    sandbox.set_knobs(rate_limit_max=5, rate_limit_interval_ms=1000)
    unlimited = LocalRateLimiter({"general": Budget(0, 1000), "search": Budget(0, 1000)})
    client = HubSpotClient(make_source(sandbox, workspace), limiter=unlimited, max_retries=12)
    records = read_all(client, "contacts", ["email"], limit=20)
    assert len({r["id"] for r in records}) == 300
    print(f"429 storm: {client.api_calls} calls, {client.retries} retries")
    assert client.retries > 0
    assert client.api_calls == 15 + client.retries
    # Every retry here answered a 429: the run's meter counts each one.
    assert client.meter.snapshot().rate_limited == client.retries


def test_limiter_learns_the_announced_budget(sandbox, workspace):
    """Our own limiter adopts X-HubSpot-RateLimit-Max and keeps 429s rare under the same tiny budget."""
    sandbox.set_knobs(rate_limit_max=5, rate_limit_interval_ms=1000)
    client = HubSpotClient(make_source(sandbox, workspace), max_retries=12)
    records = read_all(client, "contacts", ["email"], limit=20)
    assert len({r["id"] for r in records}) == 300
    assert client.limiter.budget(str(PORTAL)) == Budget(5, 1000)
    print(f"learned budget: {client.api_calls} calls, {client.retries} retries")
    assert client.retries <= 2


@pytest.mark.parametrize("fault", ["503", "502", "504", "reset"])
def test_5xx_and_resets_are_retried(sandbox, workspace, fault):
    sandbox.set_knobs(fail_next=3, fail_next_status=fault)
    client = HubSpotClient(make_source(sandbox, workspace))
    page = client.list_page("contacts", properties=["email"])
    assert len(page["results"]) == 100
    assert (client.retries, client.api_calls) == (3, 4)


def test_timeouts_are_retried_then_raised(sandbox, workspace):
    sandbox.set_knobs(latency_ms=400)
    client = HubSpotClient(make_source(sandbox, workspace), timeout=0.1, max_retries=2)
    with pytest.raises(TransientError) as caught:
        client.get_properties("contacts")
    assert caught.value.category == "NETWORK" and "Timeout" in caught.value.message
    assert (client.retries, client.api_calls) == (2, 3)


def test_retries_exhausted_raise_transient_error(sandbox, workspace):
    sandbox.set_knobs(fail_next=10, fail_next_status="503")
    client = HubSpotClient(make_source(sandbox, workspace), max_retries=2)
    with pytest.raises(TransientError) as caught:
        client.list_page("contacts", properties=["email"])
    assert caught.value.status == 503
    assert (client.retries, client.api_calls) == (2, 3)


def test_token_refreshed_from_the_stored_expiry_once_mid_run(sandbox, workspace, settings):
    # The sandbox (like HubSpot) counts the lifetime in whole seconds: a margin of 2 s on a 6 s token refreshes
    # at 4 s, safely before the sandbox's expiry (5-6 s), and the new token would be refreshed at 8 s.
    settings.HUBSPOT_TOKEN_REFRESH_MARGIN_SECONDS = 2
    sandbox.set_knobs(access_token_lifetime=6)
    source = make_source(sandbox, workspace, lifetime=6)
    first_token, refresh_token = source.access_token, source.token
    client = HubSpotClient(source)
    started = time.monotonic()
    pages = 0
    while time.monotonic() - started < 5.5:  # crosses the refresh point (4 s) once, not the next one (8 s)
        assert client.list_page("contacts", properties=["email"], limit=10)["results"]
        pages += 1
        time.sleep(0.3)
    assert client.token_refreshes == 1 and client.retries == 0  # refreshed before expiry: no 401 seen
    source.refresh_from_db()
    assert source.access_token != first_token and source.token == refresh_token
    assert source.access_token_expires_at > timezone.now()


def test_401_gets_one_refresh_and_one_retry(sandbox, workspace):
    # The stored expiry says fresh, HubSpot says expired: one refresh, one retry, success.
    source = make_source(sandbox, workspace, lifetime=-10, expires_at=timezone.now() + timedelta(hours=1))
    client = HubSpotClient(source)
    assert client.list_page("contacts", properties=["email"], limit=5)["results"]
    assert (client.token_refreshes, client.retries, client.api_calls) == (1, 1, 2)


def test_401_without_a_refresh_token_is_an_auth_error(sandbox):
    client = HubSpotClient(access_token=sandbox.access_token(PORTAL, lifetime=-10), hub_id=PORTAL)
    with pytest.raises(AuthError) as caught:
        client.list_page("contacts", properties=["email"])
    assert caught.value.status == 401 and caught.value.category == "EXPIRED_AUTHENTICATION"
    assert client.api_calls == 1


def test_revoked_refresh_token_marks_the_source_needs_reconnect(sandbox, workspace):
    from sandbox.hubspot.models import RefreshToken

    source = make_source(sandbox, workspace, lifetime=-10, expires_at=timezone.now() - timedelta(seconds=10))
    RefreshToken.objects.filter(token=source.token).update(revoked=True)
    client = HubSpotClient(source)
    with pytest.raises(NeedsReconnect) as caught:
        client.list_page("contacts", properties=["email"])
    assert caught.value.category == "BAD_REFRESH_TOKEN"
    assert source.token not in repr(caught.value.body) and source.token not in str(caught.value)
    source.refresh_from_db()
    assert source.status == Source.Status.NEEDS_RECONNECT
    assert source.next_sync_at is None and source.enabled  # schedule stopped, switch left as the admin set it
    assert "Reconnect HubSpot" in source.status_detail


def test_missing_scope_is_permanent_for_that_collection_only(sandbox, workspace):
    scopes = ["oauth", "crm.objects.contacts.read", "crm.objects.companies.read"]
    client = HubSpotClient(make_source(sandbox, workspace, scopes=scopes))
    with pytest.raises(MissingScopes) as caught:
        client.list_page("tickets", properties=["subject"])
    assert caught.value.status == 403 and caught.value.category == "MISSING_SCOPES"
    assert client.retries == 0
    assert client.list_page("contacts", properties=["email"])["results"]


def test_not_found_and_bad_request(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    with pytest.raises(NotFound):
        client.request("GET", "/crm/v3/objects/contacts/999999999999")
    with pytest.raises(BadRequest):
        client.search_page("contacts", {"filterGroups": [], "limit": 200, "after": "10000"})


def test_long_property_list_never_gives_414(sandbox, workspace):
    client = HubSpotClient(make_source(sandbox, workspace))
    custom = add_custom_properties(300)
    short = ["email", "firstname", "lastmodifieddate"]
    # The built-in properties go last, so they are among those that do not fit in the URL.
    names = custom + short
    long_url = sandbox.base_url + "/crm/v3/objects/contacts?limit=100&properties=" + ",".join(names)
    assert len(long_url) > 8000
    raw = requests.get(long_url, headers={"Authorization": f"Bearer {client.source.access_token}"}, timeout=30)
    assert raw.status_code == 414  # what a naive client gets
    calls = client.api_calls
    page = client.list_page("contacts", properties=names, limit=100)
    assert client.api_calls - calls == 2  # the list, plus one batch/read for the properties beyond the URL
    reference = {r["id"]: r for r in client.list_page("contacts", properties=short, limit=100)["results"]}
    assert [r["id"] for r in page["results"]] == list(reference)
    for record in page["results"]:
        for name in short:
            assert record["properties"][name] == reference[record["id"]]["properties"][name]


@pytest.mark.django_db(transaction=True)
def test_two_workers_refreshing_at_once_make_one_token_request(sandbox, workspace, monkeypatch):
    from sources.hubspot import tokens

    source = make_source(sandbox, workspace, expires_at=timezone.now() - timedelta(seconds=1))
    calls = []
    real_post = tokens.post_token

    def counting_post(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)  # widen the race window
        return real_post(*args, **kwargs)

    monkeypatch.setattr(tokens, "post_token", counting_post)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            client = HubSpotClient(Source.objects.get(pk=source.pk))  # each worker loads its own row
            barrier.wait()
            results.append((client.list_page("contacts", properties=["email"], limit=5), client.source.access_token))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(calls) == 1
    assert len({token for _, token in results}) == 1


def test_limiter_shared_by_two_clients_keeps_the_budget(sandbox, workspace, settings):
    """Two clients (two workers) on one account share one budget: scaled to 20 per 2 s on both sides."""
    settings.HUBSPOT_RATE_LIMIT = 20
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 2000
    sandbox.set_knobs(rate_limit_max=20, rate_limit_interval_ms=2000)
    source = make_source(sandbox, workspace)
    stamps: list[float] = []
    lock = threading.Lock()
    clients = [HubSpotClient(Source.objects.get(pk=source.pk)) for _ in range(2)]

    def worker(client):
        after = None
        for _ in range(25):
            page = client.list_page("contacts", properties=["email"], after=after, limit=10)
            with lock:
                stamps.append(time.monotonic())
            after = ((page.get("paging") or {}).get("next") or {}).get("after")

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert len(stamps) == 50
    # 50 requests at 20 per 2 s: at least two full windows must pass; a few 429s at the window edges
    # (the sandbox counts at arrival, we count at departure) are tolerated and retried.
    print(
        f"shared limiter: 50 requests in {elapsed:.2f}s, max {max_in_window(stamps, 2.0)} per 2 s window, "
        f"{sum(c.retries for c in clients)} retries"
    )
    assert elapsed >= 3.9
    assert sum(c.retries for c in clients) <= 3
    # The stamps are taken when responses come back, not when requests leave, so a busy machine can bunch a few
    # completions into one window; the server-side proof is the retry count above (each 429 is a retry).
    assert max_in_window(stamps, 2.0 - 0.05) <= 20 + 3


def test_no_token_in_logs_or_errors(sandbox, workspace, caplog):
    """Refresh, token info, a 401 retry and a failure: no access or refresh token in any log line."""
    caplog.set_level(logging.DEBUG)
    source = make_source(sandbox, workspace, lifetime=-10, expires_at=timezone.now() + timedelta(hours=1))
    secrets = {source.token, source.access_token}
    client = HubSpotClient(source)
    client.list_page("contacts", properties=["email"], limit=5)  # 401 -> refresh -> retry
    secrets.add(source.access_token)
    client.token_info()
    sandbox.set_knobs(fail_next=2, fail_next_status="503")
    with pytest.raises(TransientError) as caught:
        HubSpotClient(source, max_retries=1).account_details()
    text = "\n".join(r.getMessage() for r in caplog.records) + str(caught.value) + repr(caught.value.body)
    assert "/access-tokens/•••" in text or "access-tokens" not in text
    for secret in secrets:
        assert secret[:40] not in text


def test_retry_after_is_read_in_seconds_or_as_a_date():
    from sources.hubspot import _retry_after

    assert _retry_after(_response(429, b"", {"Retry-After": "3"})) == 3.0
    assert _retry_after(_response(429, b"", {})) is None
    later = (timezone.now() + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= _retry_after(_response(429, b"", {"Retry-After": later})) <= 31


def test_archived_list_and_resume_from_after(sandbox, workspace):
    sandbox.mutate(PORTAL, "contacts", archive=7, seed=3)
    client = HubSpotClient(make_source(sandbox, workspace))
    archived = [
        r for page, _ in client.iter_list("contacts", properties=["email"], archived=True) for r in page["results"]
    ]
    assert len(archived) == 7 and all(r["archived"] for r in archived)
    live = read_all(client, "contacts", ["email"])
    assert len(live) == 293 and not {r["id"] for r in live} & {r["id"] for r in archived}
    # Resuming from a stored `after` continues exactly where the previous page ended.
    pages = client.iter_list("contacts", properties=["email"], limit=50)
    _, after = next(pages)
    resumed = [
        r["id"]
        for page, _ in client.iter_list("contacts", properties=["email"], after=after, limit=50)
        for r in page["results"]
    ]
    assert resumed == [r["id"] for r in live][50:]


def test_refresh_response_without_refresh_token_keeps_the_old_one(sandbox, workspace, monkeypatch):
    """HubSpot may omit refresh_token on a refresh: the stored one must survive (the response is the sandbox's,
    with that field dropped as HubSpot may drop it)."""
    from sources.hubspot import tokens

    real_post = tokens.post_token

    def without_refresh_token(*args, **kwargs):
        payload = real_post(*args, **kwargs)
        payload.pop("refresh_token", None)
        return payload

    monkeypatch.setattr(tokens, "post_token", without_refresh_token)
    source = make_source(sandbox, workspace, expires_at=timezone.now() - timedelta(seconds=1))
    old_refresh, old_access = source.token, source.access_token
    client = HubSpotClient(source)
    assert client.list_page("contacts", properties=["email"], limit=5)["results"]
    source.refresh_from_db()
    assert source.token == old_refresh and source.access_token != old_access
    assert client.token_refreshes == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_meter_peak_is_the_busiest_rolling_window_not_an_average():
    """30 requests in the first 2 s, then one every 2 s for a minute: the busiest 10 s hold 30 + 4 of them (the
    burst plus those at 2, 4, 6, 8 s after it began), whatever the run's length; search is counted per second."""
    clock = FakeClock()
    meter = RequestMeter(clock=clock)
    for i in range(30):
        clock.now = 1000.0 + i * (2.0 / 30)
        meter.started()
        meter.finished()
    for i in range(1, 31):
        clock.now = 1000.0 + i * 2.0
        meter.started()
        meter.finished()
    for i in range(7):  # 7 searches, 4 of them inside one second
        clock.now = 1100.0 + (i * 0.25 if i < 4 else 1.5 + i)
        meter.started("search")
        meter.finished()
    reading = meter.snapshot()
    assert reading.peak_requests_10s == 34
    assert reading.peak_search_1s == 4
    assert reading.rate_limited == 0 and reading.in_flight == 0 and reading.peak_in_flight == 1
    assert reading.budget_10s is None  # no budget told: no limit to compare with


def test_meter_budgets_in_flight_and_429s():
    meter = RequestMeter(clock=FakeClock())
    meter.budget_seen("general", Budget(110, 10_000))
    meter.budget_seen("search", Budget(5, 1000))
    meter.started()
    meter.started("search")
    meter.rate_limited()
    reading = meter.snapshot()
    assert (reading.in_flight, reading.peak_in_flight, reading.rate_limited) == (2, 2, 1)
    assert (reading.budget_10s, reading.search_budget_1s) == (110, 5)
    # A budget HubSpot announces over another interval is expressed per 10 s and per second.
    meter.budget_seen("general", Budget(50, 5000))
    meter.budget_seen("search", Budget(0, 1000))
    assert (meter.snapshot().budget_10s, meter.snapshot().search_budget_1s) == (100, None)


def test_clients_of_one_run_share_its_meter(sandbox, workspace, settings):
    """Two clients in two threads note into one meter: 2 x 6 list pages and 3 searches, well inside 10 s, give a
    peak of 12 list requests per 10 s and the account's budget from the limiter."""
    settings.HUBSPOT_RATE_LIMIT = 110
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 10_000
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 5
    settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 1000
    source = make_source(sandbox, workspace)
    meter = RequestMeter()
    clients = [HubSpotClient(Source.objects.get(pk=source.pk), meter=meter) for _ in range(2)]

    def worker(client):
        after = None
        for _ in range(6):
            page = client.list_page("contacts", properties=["email"], after=after, limit=10)
            after = ((page.get("paging") or {}).get("next") or {}).get("after")

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    body = {"filterGroups": [], "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}], "limit": 10}
    for _ in range(3):
        clients[0].search_page("contacts", {**body, "properties": ["email"]})
    reading = meter.snapshot()
    assert sum(c.api_calls for c in clients) == 15
    assert reading.peak_requests_10s == 12
    assert 1 <= reading.peak_search_1s <= 3
    assert (reading.budget_10s, reading.search_budget_1s) == (110, 5)
    assert reading.in_flight == 0 and reading.rate_limited == 0


def test_a_429_at_the_windows_edge_widens_the_guard_and_pauses_nobody(sandbox, workspace, settings, monkeypatch):
    """Our search window is looser than HubSpot's (5 per 900 ms against 5 per second) and holds no guard: requests
    arrive at HubSpot too early at the window's edge and meet 429s. Each goes again as soon as our limiter frees a
    slot (no backoff, no worker paused), and each after the first widens the account's guard by 25 ms, until
    slots are held a whole second and the 429s stop."""
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 5
    settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 900
    settings.HUBSPOT_RATE_LIMIT_GUARD_MS = 0
    sandbox.set_knobs(rate_limits=True, search_rate_limit=5)
    client = HubSpotClient(make_source(sandbox, workspace), max_retries=12)
    paused: list[float] = []
    monkeypatch.setattr(client.limiter, "penalize", lambda account, seconds, kind="general": paused.append(seconds))
    body = {
        "limit": 10,
        "properties": ["email"],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "filterGroups": [],
    }
    for _ in range(30):
        assert len(client.search_page("contacts", body)["results"]) == 10
    limited = client.meter.snapshot().rate_limited
    guard = client.limiter.guard_ms(str(PORTAL), "search")
    print(f"edge 429s: {limited}, guard {guard} ms, {client.api_calls} calls")
    assert paused == []
    assert 100 <= guard <= 150  # 900 + 100 ms is HubSpot's second; a little more for the arrival jitter
    assert 5 <= limited <= 8 and client.retries == limited


def test_a_request_in_flight_is_seen_by_every_worker_on_the_account(sandbox, workspace):
    """While the client waits for HubSpot, the shared limiter counts its request in flight for any other worker
    (the run page's figure); once answered, it no longer does."""
    sandbox.set_knobs(latency_ms=400)
    client = HubSpotClient(make_source(sandbox, workspace))
    other = get_rate_limiter()  # another worker's view of the same windows
    thread = threading.Thread(target=lambda: client.get_properties("contacts"))
    thread.start()
    deadline = time.monotonic() + 5
    seen = 0
    while time.monotonic() < deadline and not seen:
        seen = other.in_flight(str(PORTAL)) or 0
        time.sleep(0.02)
    thread.join(timeout=10)
    assert seen == 1
    assert other.in_flight(str(PORTAL)) == 0

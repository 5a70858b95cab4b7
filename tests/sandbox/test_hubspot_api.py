"""Raw-HTTP tests of the HubSpot sandbox: error bodies, limits and every realism knob."""

from __future__ import annotations

import time

import pytest
import requests
from django.db.models import F

from sandbox.hubspot.models import RecordChange

pytestmark = pytest.mark.django_db(transaction=True)


def get(sandbox, path: str, token: str | None = None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(sandbox.base_url + path, params=params, headers=headers, timeout=30)


def search(sandbox, token: str, body: dict, collection: str = "contacts"):
    return requests.post(
        f"{sandbox.base_url}/crm/v3/objects/{collection}/search",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


# --- authentication and scopes ---------------------------------------------------------------------------------
def test_401_bodies_for_missing_invalid_and_expired_tokens(hubspot_sandbox):
    missing = get(hubspot_sandbox, "/crm/v3/objects/contacts")
    assert missing.status_code == 401
    body = missing.json()
    assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION" and body["correlationId"]

    invalid = get(hubspot_sandbox, "/crm/v3/objects/contacts", token="sbx-hs-at-forged.signature")
    assert invalid.status_code == 401 and invalid.json()["category"] == "INVALID_AUTHENTICATION"

    expired = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=hubspot_sandbox.access_token(lifetime=-30))
    assert expired.status_code == 401
    body = expired.json()
    assert body["category"] == "EXPIRED_AUTHENTICATION"
    assert "expired" in body["message"] and "second(s) ago" in body["message"]


def test_token_lifetime_knob_expires_tokens(hubspot_sandbox):
    hubspot_sandbox.set_knobs(access_token_lifetime=1)
    token = hubspot_sandbox.token()
    assert token["expires_in"] == 1
    time.sleep(2.1)
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token["access_token"]).status_code == 401


def test_missing_scope_is_403_on_that_collection_only(hubspot_sandbox):
    token = hubspot_sandbox.access_token(scopes=["oauth", "crm.objects.contacts.read"])
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token).status_code == 200
    denied = get(hubspot_sandbox, "/crm/v3/objects/tickets", token=token)
    assert denied.status_code == 403
    body = denied.json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["tickets"]
    assert get(hubspot_sandbox, "/crm/v3/owners/", token=token).status_code == 403


def test_object_type_aliases(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    by_name = get(hubspot_sandbox, "/crm/v3/objects/companies", token=token, limit=3).json()
    for alias in ("company", "0-2"):
        page = get(hubspot_sandbox, f"/crm/v3/objects/{alias}", token=token, limit=3).json()
        assert page["results"] == by_name["results"]
    assert get(hubspot_sandbox, "/crm/v3/objects/widgets", token=token).status_code == 400


# --- list ------------------------------------------------------------------------------------------------------
def test_list_properties_repeated_or_comma_joined_and_limits(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    url = hubspot_sandbox.base_url + "/crm/v3/objects/contacts"
    headers = {"Authorization": f"Bearer {token}"}
    repeated = requests.get(url + "?limit=2&properties=email&properties=vip_customer", headers=headers).json()
    joined = requests.get(url + "?limit=2&properties=email,vip_customer", headers=headers).json()
    assert repeated["results"] == joined["results"]
    props = repeated["results"][0]["properties"]
    assert set(props) == {"email", "vip_customer", "createdate", "hs_object_id", "lastmodifieddate"}
    assert all(isinstance(v, str) or v is None for v in props.values())
    default = requests.get(url, headers=headers).json()
    assert len(default["results"]) == 10
    assert set(default["results"][0]["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    assert requests.get(url + "?limit=101", headers=headers).status_code == 400
    last = requests.get(url, params={"limit": 100, "after": default["paging"]["next"]["after"]}, headers=headers)
    assert last.json()["results"][0]["id"] == default["paging"]["next"]["after"]


def test_414_for_very_long_urls(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    names = ",".join(f"custom_property_number_{n}" for n in range(400))
    assert len(names) > 8000
    resp = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, properties=names)
    assert resp.status_code == 414


def test_hundreds_of_properties_force_splitting_or_post(hubspot_sandbox):
    added = hubspot_sandbox.add_properties(300)
    token = hubspot_sandbox.access_token()
    names = [p["name"] for p in get(hubspot_sandbox, "/crm/v3/properties/contacts", token=token).json()["results"]]
    assert len(names) == 65 + 300 and set(added) <= set(names)
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, properties=",".join(names)).status_code == 414
    half = len(names) // 2
    first = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, properties=",".join(names[:half]), limit=5)
    assert first.status_code == 200 and added[0] in first.json()["results"][0]["properties"]
    batch = requests.post(
        f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts/batch/read",
        json={"inputs": [{"id": "1"}], "properties": names},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    assert set(batch["results"][0]["properties"]) == set(names)


def test_archived_visible_in_list_with_archived_true_never_in_search(hubspot_sandbox):
    result = hubspot_sandbox.mutate(collection="contacts", archive=3, seed=5)
    archived_ids = set(result.archived)
    token = hubspot_sandbox.access_token()
    live_ids = set()
    after = None
    while True:
        page = get(
            hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=100, **({"after": after} if after else {})
        ).json()
        live_ids |= {r["id"] for r in page["results"]}
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
    assert len(live_ids) == 297 and not live_ids & archived_ids
    arch = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, archived="true", limit=100).json()
    assert {r["id"] for r in arch["results"]} == archived_ids
    assert all(r["archived"] is True and r["archivedAt"] for r in arch["results"])
    one = next(iter(archived_ids))
    assert get(hubspot_sandbox, f"/crm/v3/objects/contacts/{one}", token=token).status_code == 404
    assert get(hubspot_sandbox, f"/crm/v3/objects/contacts/{one}", token=token, archived="true").status_code == 200
    found = search(
        hubspot_sandbox,
        token,
        {
            "filterGroups": [
                {"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": sorted(archived_ids)}]}
            ]
        },
    ).json()
    assert found["total"] == 0
    assert search(hubspot_sandbox, token, {"limit": 1}).json()["total"] == 297


def test_list_read_batch_and_search_agree_after_changes(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limits=False)
    result = hubspot_sandbox.mutate(collection="contacts", create=7, update=9, archive=4, seed=11)
    token = hubspot_sandbox.access_token()
    listed: dict[str, dict] = {}
    after = None
    while True:
        page = get(
            hubspot_sandbox,
            "/crm/v3/objects/contacts",
            token=token,
            limit=37,
            properties="jobtitle,email",
            **({"after": after} if after else {}),
        ).json()
        for r in page["results"]:
            listed[r["id"]] = r
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
    ids = list(listed)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert len(ids) == 300 + 7 - 4
    assert set(result.created) <= set(ids) and not set(result.archived) & set(ids)
    for oid in result.updated:
        assert listed[oid]["properties"]["jobtitle"].startswith("Edited ")
        assert listed[oid]["updatedAt"] > listed[oid]["createdAt"]
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        batch = requests.post(
            f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts/batch/read",
            json={"inputs": [{"id": i} for i in chunk], "properties": ["jobtitle", "email"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
        assert {r["id"]: r for r in batch["results"]} == {i: listed[i] for i in chunk}
    found = search(
        hubspot_sandbox,
        token,
        {
            "limit": 200,
            "properties": ["jobtitle", "email"],
            "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
        },
    )
    body = found.json()
    assert body["total"] == len(ids)
    assert [r["id"] for r in body["results"]] == sorted(ids, key=int, reverse=True)[:200]
    assert all(r == listed[r["id"]] for r in body["results"])


# --- changes -----------------------------------------------------------------------------------------------------
def test_updates_bump_modified_date_and_move_records_in_date_search(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    before = int(time.time() * 1000) - 1
    result = hubspot_sandbox.mutate(collection="deals", create=2, update=3, seed=9)
    changed = set(result.created) | set(result.updated)
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(before)}]}
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": ["dealname"],
    }
    res = search(hubspot_sandbox, token, body, "deals").json()
    assert {r["id"] for r in res["results"]} == changed and res["total"] == 5
    ids = [int(r["id"]) for r in res["results"]]
    assert ids == sorted(ids)
    for r in res["results"]:
        assert r["updatedAt"] == r["properties"]["hs_lastmodifieddate"]
    read = get(
        hubspot_sandbox, f"/crm/v3/objects/deals/{result.updated[0]}", token=token, properties="hs_next_step"
    ).json()
    assert read["properties"]["hs_next_step"].startswith("Edited ")


def test_custom_property_add_and_delete(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    hubspot_sandbox.add_property(
        "renewal_risk",
        collection="companies",
        type="enumeration",
        options=[{"label": "Low", "value": "low"}, {"label": "High", "value": "high"}],
    )
    props = get(hubspot_sandbox, "/crm/v3/properties/companies", token=token).json()["results"]
    added = next(p for p in props if p["name"] == "renewal_risk")
    assert added["hubspotDefined"] is False and [o["value"] for o in added["options"]] == ["low", "high"]
    page = get(hubspot_sandbox, "/crm/v3/objects/companies", token=token, properties="renewal_risk").json()
    assert page["results"][0]["properties"]["renewal_risk"] is None

    hubspot_sandbox.delete_property("customer_tier", collection="companies")
    names = {p["name"] for p in get(hubspot_sandbox, "/crm/v3/properties/companies", token=token).json()["results"]}
    assert "customer_tier" not in names and "renewal_risk" in names
    archived = get(hubspot_sandbox, "/crm/v3/properties/companies", token=token, archived="true").json()["results"]
    assert [p["name"] for p in archived] == ["customer_tier"]
    page = get(hubspot_sandbox, "/crm/v3/objects/companies", token=token, properties="customer_tier,name").json()
    assert "customer_tier" not in page["results"][0]["properties"]


# --- search -------------------------------------------------------------------------------------------------------
def test_search_validation(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limits=False)
    token = hubspot_sandbox.access_token()
    assert search(hubspot_sandbox, token, {"limit": 201}).status_code == 400
    two_sorts = {"sorts": [{"propertyName": "createdate"}, {"propertyName": "hs_object_id"}]}
    assert search(hubspot_sandbox, token, two_sorts).status_code == 400
    six_groups = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}] * 6}
    assert search(hubspot_sandbox, token, six_groups).status_code == 400
    unknown = {"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "1"}]}]}
    resp = search(hubspot_sandbox, token, unknown)
    assert resp.status_code == 400 and resp.json()["category"] == "VALIDATION_ERROR"
    big = {"query": "x" * 3100}
    assert search(hubspot_sandbox, token, big).status_code == 400


def test_search_operators(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limits=False)
    token = hubspot_sandbox.access_token()

    def ids(filters, **extra):
        body = {
            "filterGroups": [{"filters": filters}],
            "limit": 200,
            "properties": ["interests", "loyalty_points", "email", "vip_customer"],
        }
        body.update(extra)
        res = search(hubspot_sandbox, token, body).json()
        return res

    between = ids([{"propertyName": "hs_object_id", "operator": "BETWEEN", "value": "5", "highValue": "150"}])
    assert {int(r["id"]) for r in between["results"]} == {
        5,
        6,
        7,
        8,
        9,
        10,
        101,
        104,
        107,
        110,
        113,
        116,
        119,
        122,
        125,
        128,
        131,
        134,
        137,
        140,
        143,
        146,
        149,
    }
    multi = ids([{"propertyName": "interests", "operator": "IN", "values": ["crm"]}])
    assert multi["total"] > 0 and all("crm" in r["properties"]["interests"].split(";") for r in multi["results"])
    numeric = ids([{"propertyName": "loyalty_points", "operator": "LT", "value": "500"}])
    assert numeric["total"] > 0 and all(float(r["properties"]["loyalty_points"]) < 500 for r in numeric["results"])
    no_email = ids([{"propertyName": "email", "operator": "NOT_HAS_PROPERTY"}])
    assert all(r["properties"]["email"] is None for r in no_email["results"])
    token_hit = ids([{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@example.org"}])
    assert token_hit["total"] > 0 and all(
        r["properties"]["email"].endswith("@example.org") for r in token_hit["results"]
    )
    some = get(hubspot_sandbox, "/crm/v3/objects/contacts/20012", token=token).json()["properties"]["email"]
    hubspot_sandbox.set_properties(104, {"email": some.upper()})  # a second record with that address, edited
    by_email = ids([{"propertyName": "email", "operator": "EQ", "value": some}])
    assert sorted(r["id"] for r in by_email["results"]) == ["104", "20012"]
    either = search(
        hubspot_sandbox,
        token,
        {
            "filterGroups": [
                {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "1"}]},
                {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "20001"}]},
            ]
        },
    ).json()
    assert sorted(r["id"] for r in either["results"]) == ["1", "20001"] and either["total"] == 2


def test_search_cannot_page_past_10000(hubspot_sandbox):
    hubspot_sandbox.seed(3100, contacts=12_000)
    token = hubspot_sandbox.access_token(portal=3100)
    ok = search(hubspot_sandbox, token, {"limit": 200, "after": "9800"})
    assert ok.status_code == 200 and ok.json()["total"] == 12_000
    assert ok.json()["paging"]["next"]["after"] == "10000"
    capped = search(hubspot_sandbox, token, {"limit": 200, "after": "10000"})
    assert capped.status_code == 400 and capped.json()["category"] == "VALIDATION_ERROR"


def test_more_than_10000_changes_with_one_timestamp_are_reachable_by_id_restart(hubspot_sandbox):
    """The production strategy from REFERENCE.md works against the sandbox: sort by id, restart at 10,000."""
    hubspot_sandbox.seed(3200, contacts=20)
    hubspot_sandbox.set_knobs(rate_limits=False)
    result = hubspot_sandbox.mutate(3200, "contacts", create=10_250, same_timestamp=True, seed=1)
    stamp = RecordChange.objects.filter(portal_id=3200).values_list("updated_ms", flat=True).first()
    assert RecordChange.objects.filter(portal_id=3200, updated_ms=stamp).count() == 10_250
    token = hubspot_sandbox.access_token(portal=3200)
    seen: list[str] = []
    last_id = 0
    while True:
        after = 0
        restarted = False
        while True:
            body = {
                "filterGroups": [
                    {
                        "filters": [
                            {"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(stamp)},
                            {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)},
                        ]
                    }
                ],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "limit": 200,
                "after": str(after),
                "properties": ["email"],
            }
            page = search(hubspot_sandbox, token, body).json()
            seen.extend(r["id"] for r in page["results"])
            if "paging" not in page:
                break
            after = int(page["paging"]["next"]["after"])
            if after + 200 > 10_000:
                last_id = int(seen[-1])
                restarted = True
                break
        if not restarted:
            break
    assert sorted(seen, key=int) == sorted(result.created, key=int)


# --- realism knobs ---------------------------------------------------------------------------------------------------
RATE_HEADERS = ("X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Remaining", "X-HubSpot-RateLimit-Interval-Milliseconds")


def test_rate_limit_headers_and_429_body(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limit_max=5, rate_limit_interval_ms=10_000)
    token = hubspot_sandbox.access_token()
    remaining = []
    for _ in range(5):
        resp = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=1)
        assert resp.status_code == 200
        assert resp.headers["X-HubSpot-RateLimit-Max"] == "5"
        assert resp.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        remaining.append(int(resp.headers["X-HubSpot-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    limited = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=1)
    assert limited.status_code == 429
    assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    body = limited.json()
    assert body == {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": body["correlationId"],
        "policyName": "TEN_SECONDLY_ROLLING",
        "category": "RATE_LIMITS",
    }
    # Limits are per portal: another account is unaffected.
    other = hubspot_sandbox.access_token(portal=1002)
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=other, limit=1).status_code == 200


def test_default_limit_is_110_per_10_seconds(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    resp = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=1)
    assert resp.headers["X-HubSpot-RateLimit-Max"] == "110"
    assert resp.headers["X-HubSpot-RateLimit-Remaining"] == "109"


def test_search_rate_limit_is_separate_and_per_second(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limit_max=2)
    token = hubspot_sandbox.access_token()
    statuses = [search(hubspot_sandbox, token, {"limit": 1}).status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    limited = search(hubspot_sandbox, token, {"limit": 1})
    if limited.status_code == 429:
        assert limited.json()["category"] == "RATE_LIMITS" and limited.json()["errorType"] == "RATE_LIMIT"
    # Searching did not use the general budget.
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=1).status_code == 200
    time.sleep(1.1)
    assert search(hubspot_sandbox, token, {"limit": 1}).status_code == 200


def test_rate_limits_off(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limits=False, rate_limit_max=1)
    token = hubspot_sandbox.access_token()
    for _ in range(4):
        resp = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=1)
        assert resp.status_code == 200 and "X-HubSpot-RateLimit-Max" not in resp.headers


def test_random_5xx_and_scheduled_failures(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    hubspot_sandbox.set_knobs(error_rate=1.0)
    codes = {get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token).status_code for _ in range(12)}
    assert codes <= {502, 503, 504} and len(codes) >= 2
    hubspot_sandbox.set_knobs(error_rate=0.0, fail_next=2, fail_next_status="504")
    codes = [get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token).status_code for _ in range(3)]
    assert codes == [504, 504, 200]
    hubspot_sandbox.set_knobs(fail_next=1, fail_next_status="429")
    limited = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token)
    assert limited.status_code == 429 and limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"


def test_connection_reset_is_a_connection_error(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    hubspot_sandbox.set_knobs(fail_next=1, fail_next_status="reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token)
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token).status_code == 200
    hubspot_sandbox.set_knobs(reset_rate=1.0)
    with requests.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
        session.get(
            hubspot_sandbox.base_url + "/crm/v3/objects/contacts",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


def test_latency_knob(hubspot_sandbox):
    token = hubspot_sandbox.access_token()
    hubspot_sandbox.set_knobs(latency_ms=300)
    started = time.monotonic()
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, limit=1).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_search_index_lag_hides_recent_changes_from_search_only(hubspot_sandbox):
    hubspot_sandbox.set_knobs(search_lag_seconds=2)
    token = hubspot_sandbox.access_token()
    before = int(time.time() * 1000) - 1
    created = hubspot_sandbox.mutate(collection="tickets", create=1, seed=3).created[0]
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(before)}]}
        ]
    }
    assert search(hubspot_sandbox, token, body, "tickets").json()["total"] == 0
    assert get(hubspot_sandbox, f"/crm/v3/objects/tickets/{created}", token=token).status_code == 200
    time.sleep(2.2)
    found = search(hubspot_sandbox, token, body, "tickets").json()
    assert [r["id"] for r in found["results"]] == [created]


# --- OAuth --------------------------------------------------------------------------------------------------------
def oauth_post(sandbox, path="/oauth/v1/token", **form):
    return requests.post(sandbox.base_url + path, data=form, timeout=30)


def test_token_endpoint_errors_and_paths(hubspot_sandbox):
    sb = hubspot_sandbox
    redirect = "http://127.0.0.1:8000/cb"
    code = sb.auth_code(redirect_uri=redirect)
    bad_client = oauth_post(
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        client_id="someone-else",
        client_secret=sb.client_secret,
    )
    assert bad_client.status_code == 400 and bad_client.json()["status"] == "BAD_CLIENT_ID"
    mismatch = oauth_post(
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1:9/x",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
    )
    assert mismatch.status_code == 400 and mismatch.json()["status"] == "BAD_REDIRECT_URI"
    ok = oauth_post(
        sb,
        "/oauth/2026-03/token",
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        client_id=sb.client_id,
        client_secret=sb.client_secret,
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 1800 and body["hub_id"] == 1001
    reused = oauth_post(
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        client_id=sb.client_id,
        client_secret=sb.client_secret,
    )
    assert reused.status_code == 400
    assert reused.json()["status"] == "BAD_AUTH_CODE" and reused.json()["error"] == "invalid_grant"
    bad_refresh = oauth_post(
        sb,
        "/oauth/v3/token",
        grant_type="refresh_token",
        refresh_token="sbx-hs-rt-nope",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
    )
    assert bad_refresh.status_code == 400 and bad_refresh.json()["status"] == "BAD_REFRESH_TOKEN"
    as_json = requests.post(sb.token_url, json={"grant_type": "refresh_token"}, timeout=10)
    assert as_json.status_code == 400


def test_expired_auth_code(hubspot_sandbox):
    from sandbox.hubspot.models import AuthCode

    code = hubspot_sandbox.auth_code(redirect_uri="http://localhost/cb")
    AuthCode.objects.filter(code=code).update(created_ms=F("created_ms") - 11 * 60 * 1000)
    resp = oauth_post(
        hubspot_sandbox,
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://localhost/cb",
        client_id=hubspot_sandbox.client_id,
        client_secret=hubspot_sandbox.client_secret,
    )
    assert resp.status_code == 400 and resp.json()["status"] == "EXPIRED_AUTH_CODE"


def test_pkce(hubspot_sandbox):
    import base64
    import hashlib

    sb = hubspot_sandbox
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = sb.auth_code(redirect_uri="http://localhost/cb", code_challenge=challenge, code_challenge_method="S256")
    wrong = oauth_post(
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://localhost/cb",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
        code_verifier="w" * 50,
    )
    assert wrong.status_code == 400
    right = oauth_post(
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://localhost/cb",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
        code_verifier=verifier,
    )
    assert right.status_code == 200


def test_token_info_and_account_details(hubspot_sandbox):
    token = hubspot_sandbox.access_token(portal=1002)
    info = get(hubspot_sandbox, f"/oauth/v1/access-tokens/{token}").json()
    assert info["hub_id"] == 1002 and info["hub_domain"] == "globex-demo.example" and info["token_type"] == "access"
    assert 1700 < info["expires_in"] <= 1800 and info["user"].startswith("sandbox-admin@")
    details = get(hubspot_sandbox, "/account-info/v3/details", token=token).json()
    assert details["portalId"] == 1002 and details["timeZone"] == "Europe/Berlin"
    assert details["companyCurrency"] == "EUR" and details["uiDomain"]


# --- permanent deletion (GDPR delete) ------------------------------------------------------------------------------
WRITE_SCOPES = ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write", "tickets"]


def gdpr_delete(sandbox, token: str, body: dict, collection: str = "contacts"):
    return requests.post(
        f"{sandbox.base_url}/crm/v3/objects/{collection}/gdpr-delete",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def listed_ids(sandbox, token: str, collection: str = "contacts", archived: bool = False) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        params = {"limit": 100, "archived": "true" if archived else "false", **({"after": after} if after else {})}
        page = get(sandbox, f"/crm/v3/objects/{collection}", token=token, **params).json()
        ids += [r["id"] for r in page["results"]]
        if "paging" not in page:
            return ids
        after = page["paging"]["next"]["after"]


def batch_read(sandbox, token: str, ids: list[str], archived: bool = False):
    return requests.post(
        f"{sandbox.base_url}/crm/v3/objects/contacts/batch/read",
        params={"archived": "true"} if archived else {},
        json={"inputs": [{"id": i} for i in ids], "properties": ["email"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_gdpr_delete_removes_a_record_from_every_endpoint_for_good(hubspot_sandbox):
    """Live generated, created and archived records alike: 204 with no body, then the id behaves exactly like one
    that never existed (404 on read, a 207 error on batch read, absent from both lists and from search)."""
    hubspot_sandbox.set_knobs(rate_limits=False)
    read_token = hubspot_sandbox.access_token()
    token = hubspot_sandbox.access_token(scopes=WRITE_SCOPES)
    changed = hubspot_sandbox.mutate(collection="contacts", create=3, archive=2, seed=21)
    generated = listed_ids(hubspot_sandbox, read_token)[:2]
    victims = [generated[1], changed.created[-1], changed.archived[0]]  # middle, highest id, archived
    for object_id in victims:
        deleted = gdpr_delete(hubspot_sandbox, token, {"objectId": object_id})
        assert deleted.status_code == 204 and deleted.content == b""

    never = get(hubspot_sandbox, "/crm/v3/objects/contacts/999999999999", token=read_token)
    assert never.status_code == 404
    for object_id in victims:
        for archived in ("false", "true"):
            gone = get(hubspot_sandbox, f"/crm/v3/objects/contacts/{object_id}", token=read_token, archived=archived)
            assert gone.status_code == 404
            assert {k: v for k, v in gone.json().items() if k != "correlationId"} == {
                k: v for k, v in never.json().items() if k != "correlationId"
            }
    for archived in (False, True):
        batch = batch_read(hubspot_sandbox, read_token, [generated[0], *victims], archived=archived)
        assert batch.status_code == 207
        assert set(batch.json()["errors"][0]["context"]["ids"]) >= set(victims)
        assert batch.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    live = listed_ids(hubspot_sandbox, read_token)
    archived_now = listed_ids(hubspot_sandbox, read_token, archived=True)
    assert not set(victims) & set(live) and not set(victims) & set(archived_now)
    assert generated[0] in live and changed.archived[1] in archived_now
    assert len(live) == 300 + 3 - 2 - 2 and len(archived_now) == 1
    found = search(
        hubspot_sandbox,
        read_token,
        {"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": victims}]}]},
    ).json()
    assert found["total"] == 0
    assert search(hubspot_sandbox, read_token, {"limit": 1}).json()["total"] == len(live)

    # Gone for good: a second delete is a 404, the record cannot be edited, and its id is never given again.
    assert gdpr_delete(hubspot_sandbox, token, {"objectId": victims[0]}).status_code == 404
    with pytest.raises(ValueError, match="permanently deleted"):
        hubspot_sandbox.set_properties(victims[1], {"jobtitle": "back"})
    newer = hubspot_sandbox.mutate(collection="contacts", create=1, seed=22).created[0]
    assert int(newer) > int(changed.created[-1])
    # The tombstone keeps no personal data.
    assert RecordChange.objects.get(object_id=int(changed.created[-1])).properties == {}


def test_gdpr_delete_by_email(hubspot_sandbox):
    hubspot_sandbox.set_knobs(rate_limits=False)
    read_token = hubspot_sandbox.access_token()
    token = hubspot_sandbox.access_token(scopes=WRITE_SCOPES)
    created = hubspot_sandbox.mutate(collection="contacts", create=1, seed=3).created[0]
    page = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=read_token, limit=5, properties="email").json()
    generated = next(r for r in page["results"] if r["properties"]["email"])
    created_email = get(
        hubspot_sandbox, f"/crm/v3/objects/contacts/{created}", token=read_token, properties="email"
    ).json()["properties"]["email"]
    for object_id, email in ((generated["id"], generated["properties"]["email"].upper()), (created, created_email)):
        assert gdpr_delete(hubspot_sandbox, token, {"objectId": email, "idProperty": "email"}).status_code == 204
        assert get(hubspot_sandbox, f"/crm/v3/objects/contacts/{object_id}", token=read_token).status_code == 404
    # An unknown address: 204 all the same (HubSpot blocklists it), and nothing else is touched.
    total = search(hubspot_sandbox, read_token, {"limit": 1}).json()["total"]
    unknown = gdpr_delete(hubspot_sandbox, token, {"objectId": "nobody@nowhere.test", "idProperty": "email"})
    assert unknown.status_code == 204
    assert search(hubspot_sandbox, read_token, {"limit": 1}).json()["total"] == total == 300 + 1 - 2


def test_gdpr_delete_needs_a_write_scope_and_a_valid_body(hubspot_sandbox):
    read_only = hubspot_sandbox.access_token()
    denied = gdpr_delete(hubspot_sandbox, read_only, {"objectId": "1"})
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["context"]["requiredGranularScopes"] == ["crm.objects.contacts.write"]
    token = hubspot_sandbox.access_token(scopes=WRITE_SCOPES)
    assert gdpr_delete(hubspot_sandbox, token, {"objectId": "1"}, "companies").status_code == 403
    assert gdpr_delete(hubspot_sandbox, token, {"objectId": "1"}, "tickets").status_code == 204  # `tickets` writes
    assert gdpr_delete(hubspot_sandbox, token, {}).json()["category"] == "VALIDATION_ERROR"
    assert gdpr_delete(hubspot_sandbox, token, {"objectId": "1", "idProperty": "phone"}).status_code == 400
    assert gdpr_delete(hubspot_sandbox, token, {"objectId": "99999999999999"}).status_code == 404
    as_get = get(hubspot_sandbox, "/crm/v3/objects/contacts/gdpr-delete", token=token)
    assert as_get.status_code == 405
    assert get(hubspot_sandbox, "/crm/v3/objects/contacts/1", token=read_only).status_code == 200  # untouched


def test_purge_mutations_pick_live_or_archived_records(hubspot_sandbox):
    """`purge` deletes live records for good, `purge_archived` archived ones (HubSpot's recycle bin after 90 days);
    neither is picked again by later mutations."""
    token = hubspot_sandbox.access_token()
    hubspot_sandbox.set_knobs(rate_limits=False)
    archived = hubspot_sandbox.mutate(collection="contacts", archive=4, seed=1).archived
    result = hubspot_sandbox.mutate(collection="contacts", update=2, purge=3, purge_archived=2, seed=2)
    assert len(result.purged) == 5 and not set(result.purged) & set(result.updated)
    assert len(set(result.purged) & set(archived)) == 2
    live, held = listed_ids(hubspot_sandbox, token), listed_ids(hubspot_sandbox, token, archived=True)
    assert len(live) == 300 - 4 - 3 and len(held) == 2
    assert not set(result.purged) & (set(live) | set(held))
    # Update everything that is left: never a purged record.
    again = hubspot_sandbox.mutate(collection="contacts", update=len(live), seed=5)
    assert not set(again.updated) & set(result.purged)
    with pytest.raises(ValueError, match="only 2 archived"):
        hubspot_sandbox.mutate(collection="contacts", purge_archived=3)


# --- archived records keep their last values; merges --------------------------------------------------------------
def test_archived_list_returns_the_requested_properties_as_the_record_was_archived(hubspot_sandbox):
    """REFERENCE: the list with archived=true returns archived records (with archivedAt) and the properties asked
    for, like the live list: an update made just before the archive is in the archived record."""
    from sandbox.hubspot.mutate import archive_records

    token = hubspot_sandbox.access_token()
    hubspot_sandbox.set_properties(7, {"jobtitle": "Last title", "firstname": "Final"})
    archive_records(portal=hubspot_sandbox.portal(), collection="contacts", ids=[7])
    page = get(
        hubspot_sandbox, "/crm/v3/objects/contacts", token=token, archived="true", properties="jobtitle,firstname,email"
    ).json()
    [record] = [r for r in page["results"] if r["id"] == "7"]
    assert record["archived"] is True and record["archivedAt"]
    assert record["properties"]["jobtitle"] == "Last title" and record["properties"]["firstname"] == "Final"
    # Asked-for properties only, plus those HubSpot always adds; repeated `properties` parameters work too.
    assert set(record["properties"]) == {
        "jobtitle",
        "firstname",
        "email",
        "createdate",
        "hs_object_id",
        "lastmodifieddate",
    }
    repeated = requests.get(
        f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts",
        params=[("archived", "true"), ("properties", "jobtitle"), ("properties", "firstname")],
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    assert next(r for r in repeated["results"] if r["id"] == "7")["properties"]["firstname"] == "Final"
    # Without `properties`: the default ones.
    default = get(hubspot_sandbox, "/crm/v3/objects/contacts", token=token, archived="true").json()
    assert "firstname" in next(r for r in default["results"] if r["id"] == "7")["properties"]
    assert "jobtitle" not in next(r for r in default["results"] if r["id"] == "7")["properties"]


def test_merge_makes_a_new_record_and_old_ids_answer_with_it(hubspot_sandbox):
    """HubSpot's merge of two contacts: a record with a new id, the primary's values (the other's where the primary
    has none), `hs_merged_object_ids` naming both old ids; a read of an old id answers with the merged record under
    its new id; the old ids appear in no list, archived list or search."""
    hubspot_sandbox.set_knobs(rate_limits=False)
    token = hubspot_sandbox.access_token(scopes=WRITE_SCOPES)
    a, b, c, d = listed_ids(hubspot_sandbox, token)[10:14]
    hubspot_sandbox.set_properties(a, {"jobtitle": "Primary title", "salutation": None})
    hubspot_sandbox.set_properties(b, {"jobtitle": "Other title", "salutation": "Dr."})
    answer = requests.post(
        f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts/merge",
        json={"primaryObjectId": a, "objectIdToMerge": b},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    new_id = answer.json()["id"]
    assert new_id not in (a, b)
    merged = get(
        hubspot_sandbox,
        f"/crm/v3/objects/contacts/{new_id}",
        token=token,
        properties="jobtitle,salutation,hs_merged_object_ids",
    ).json()
    assert merged["properties"]["jobtitle"] == "Primary title" and merged["properties"]["salutation"] == "Dr."
    assert merged["properties"]["hs_merged_object_ids"] == f"{a};{b}"
    for old in (a, b):
        read = get(hubspot_sandbox, f"/crm/v3/objects/contacts/{old}", token=token, properties="jobtitle").json()
        assert read["id"] == new_id and read["properties"]["jobtitle"] == "Primary title"
    batch = requests.post(
        f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts/batch/read",
        json={"inputs": [{"id": a}, {"id": b}, {"id": c}], "properties": ["jobtitle"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert batch.status_code == 200 and sorted(r["id"] for r in batch.json()["results"]) == sorted([new_id, c])
    live, held = listed_ids(hubspot_sandbox, token), listed_ids(hubspot_sandbox, token, archived=True)
    assert new_id in live and not {a, b} & (set(live) | set(held)) and len(live) == 300 - 2 + 1
    found = search(
        hubspot_sandbox,
        token,
        {"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": [a, b, new_id]}]}]},
    ).json()
    assert [r["id"] for r in found["results"]] == [new_id]
    # The properties list is unchanged (the sandbox serves hs_merged_object_ids when asked for by name).
    names = {p["name"] for p in get(hubspot_sandbox, "/crm/v3/properties/contacts", token=token).json()["results"]}
    assert "hs_merged_object_ids" not in names and len(names) == 65
    # Merged records can be merged again: the old ids follow.
    again = hubspot_sandbox_merge(hubspot_sandbox, int(new_id), int(d))
    assert get(hubspot_sandbox, f"/crm/v3/objects/contacts/{a}", token=token).json()["id"] == str(again)
    ids = get(
        hubspot_sandbox, f"/crm/v3/objects/contacts/{again}", token=token, properties="hs_merged_object_ids"
    ).json()["properties"]["hs_merged_object_ids"]
    assert ids.split(";") == [a, b, new_id, d]


def hubspot_sandbox_merge(sandbox, primary: int, other: int, **kwargs) -> int:
    from sandbox.hubspot.mutate import merge_records

    return merge_records(portal=sandbox.portal(), collection="contacts", primary_id=primary, merged_id=other, **kwargs)


def test_merge_keeping_the_primary_id_and_what_cannot_be_merged(hubspot_sandbox):
    from sandbox.hubspot.mutate import MutationError

    token = hubspot_sandbox.access_token(scopes=WRITE_SCOPES)
    a, b, c = (int(i) for i in listed_ids(hubspot_sandbox, token)[20:23])
    kept = hubspot_sandbox_merge(hubspot_sandbox, a, b, keep_id=True)
    assert kept == a
    record = get(hubspot_sandbox, f"/crm/v3/objects/contacts/{b}", token=token, properties="hs_merged_object_ids")
    assert record.json()["id"] == str(a) and record.json()["properties"]["hs_merged_object_ids"] == str(b)
    hubspot_sandbox.mutate(collection="contacts", archive=1, seed=4)
    archived = listed_ids(hubspot_sandbox, token, archived=True)[0]
    for primary, other in ((a, a), (a, b), (a, int(archived)), (a, 99999999)):
        with pytest.raises(MutationError):
            hubspot_sandbox_merge(hubspot_sandbox, primary, other)
    bad = requests.post(
        f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts/merge",
        json={"primaryObjectId": str(a)},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert bad.status_code == 400 and bad.json()["category"] == "VALIDATION_ERROR"
    read_only = hubspot_sandbox.access_token()
    denied = requests.post(
        f"{hubspot_sandbox.base_url}/crm/v3/objects/contacts/merge",
        json={"primaryObjectId": str(a), "objectIdToMerge": str(c)},
        headers={"Authorization": f"Bearer {read_only}"},
        timeout=30,
    )
    assert denied.status_code == 403


def test_the_doubles_json_is_the_json_modules_for_what_orjson_refuses():
    import json

    from sandbox.hubspot.realism import json_response

    for data in (
        {"results": [{"id": "1", "properties": {"firstname": "Zoë", "note": '\u2028 "q" \\ 😀'}}], "total": 1},
        {"total": 2**70, "results": []},  # beyond 64 bits: orjson refuses
        {1: "a key that is not a string"},
    ):
        response = json_response(data)
        assert response["Content-Type"] == "application/json;charset=utf-8"
        assert response.content == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

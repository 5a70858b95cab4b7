"""Drive the HubSpot sandbox with HubSpot's official Python SDK: every response must parse."""

from __future__ import annotations

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.tickets.exceptions import ApiException as TicketsApiException

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(sandbox, token: str) -> HubSpot:
    return HubSpot(access_token=token, host=sandbox.server_url + "/sandbox/hubspot")


def test_oauth_token_exchange_and_refresh(hubspot_sandbox):
    redirect = "http://localhost:8000/sources/oauth/callback"
    code = hubspot_sandbox.auth_code(redirect_uri=redirect)
    api = HubSpot(host=hubspot_sandbox.base_url)
    tokens = api.oauth.tokens_api.create(
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        client_id=hubspot_sandbox.client_id,
        client_secret=hubspot_sandbox.client_secret,
    )
    assert tokens.access_token.startswith("sbx-hs-at-")
    assert tokens.refresh_token.startswith("sbx-hs-rt-")
    assert tokens.expires_in == 1800
    assert tokens.token_type == "bearer"

    info = api.oauth.access_tokens_api.get(tokens.access_token)
    assert info.hub_id == 1001
    assert "crm.objects.contacts.read" in info.scopes
    assert info.hub_domain == "acme-sandbox.example"

    refreshed = api.oauth.tokens_api.create(
        grant_type="refresh_token",
        refresh_token=tokens.refresh_token,
        client_id=hubspot_sandbox.client_id,
        client_secret=hubspot_sandbox.client_secret,
    )
    assert refreshed.access_token != tokens.access_token
    rt_info = api.oauth.refresh_tokens_api.get(tokens.refresh_token)
    assert rt_info.hub_id == 1001 and rt_info.client_id == hubspot_sandbox.client_id

    # The code is single use.
    from hubspot.oauth.exceptions import ApiException as OAuthApiException

    with pytest.raises(OAuthApiException) as exc:
        api.oauth.tokens_api.create(
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect,
            client_id=hubspot_sandbox.client_id,
            client_secret=hubspot_sandbox.client_secret,
        )
    assert exc.value.status == 400 and "BAD_AUTH_CODE" in exc.value.body

    # Revoking the refresh token makes it unusable.
    api.oauth.refresh_tokens_api.archive(tokens.refresh_token)
    with pytest.raises(OAuthApiException) as exc:
        api.oauth.tokens_api.create(
            grant_type="refresh_token",
            refresh_token=tokens.refresh_token,
            client_id=hubspot_sandbox.client_id,
            client_secret=hubspot_sandbox.client_secret,
        )
    assert "BAD_REFRESH_TOKEN" in exc.value.body


def test_list_pages_through_all_contacts(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token())
    seen: list[str] = []
    after = None
    while True:
        page = api.crm.contacts.basic_api.get_page(
            limit=100, after=after, properties=["email", "firstname", "interests", "signup_date"]
        )
        seen.extend(r.id for r in page.results)
        for r in page.results:
            assert r.properties["hs_object_id"] == r.id
            assert r.created_at <= r.updated_at
            assert r.properties["createdate"] == r.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            assert r.properties["lastmodifieddate"] == r.updated_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            )
            assert "interests" in r.properties
        if page.paging is None:
            break
        after = page.paging.next.after
    assert len(seen) == 300 == len(set(seen))
    assert [int(x) for x in seen] == sorted(int(x) for x in seen)
    assert {len(x) for x in seen} >= {1, 2, 3, 4, 5}  # ids of different lengths


def test_companies_deals_tickets_list_and_read(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token())
    companies = api.crm.companies.basic_api.get_page(limit=5)
    assert len(companies.results) == 5 and companies.paging.next.after
    deal = api.crm.deals.basic_api.get_page(limit=1).results[0]
    again = api.crm.deals.basic_api.get_by_id(deal.id, properties=["dealname", "amount"])
    assert again.properties["dealname"] == api.crm.deals.basic_api.get_by_id(deal.id).properties["dealname"]
    tickets = api.crm.tickets.basic_api.get_page(limit=100)
    assert len(tickets.results) == 80 and tickets.paging is None


def test_search_with_filters_and_sort(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token())
    everything = api.crm.contacts.search_api.do_search(PublicObjectSearchRequest(limit=1))
    assert everything.total == 300
    request = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(
                filters=[
                    Filter(property_name="lastmodifieddate", operator="GTE", value="1751328000000"),  # 2025-07-01
                ]
            )
        ],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        properties=["email", "lastmodifieddate"],
        limit=50,
    )
    res = api.crm.contacts.search_api.do_search(request)
    assert 0 < res.total < 300
    stamps = [r.updated_at for r in res.results]
    assert stamps == sorted(stamps)
    assert all(r.updated_at.timestamp() * 1000 >= 1751328000000 for r in res.results)

    lifecycle = api.crm.contacts.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(filters=[Filter(property_name="lifecyclestage", operator="EQ", value="customer")])
            ],
            properties=["lifecyclestage"],
            limit=200,
        )
    )
    assert lifecycle.total > 0
    assert all(r.properties["lifecyclestage"] == "customer" for r in lifecycle.results)


def test_batch_read_with_a_missing_id(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token())
    ids = [r.id for r in api.crm.contacts.basic_api.get_page(limit=3).results]
    res = api.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids], properties=["email"], properties_with_history=[]
        )
    )
    assert sorted(r.id for r in res.results) == sorted(ids)
    assert res.status == "COMPLETE"
    partial = api.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=ids[0]), SimplePublicObjectId(id="999999999999")],
            properties=["email"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in partial.results] == [ids[0]]
    assert partial.errors[0].category == "OBJECT_NOT_FOUND"


def test_properties_and_owners(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token())
    props = api.crm.properties.core_api.get_all("contacts").results
    assert 40 <= len(props) <= 80
    types = {p.type for p in props}
    assert {"string", "number", "bool", "enumeration", "date", "datetime", "phone_number"} <= types
    assert any(not p.hubspot_defined for p in props)
    assert any(p.field_type == "checkbox" for p in props)
    for object_type in ("companies", "deals", "tickets"):
        assert 40 <= len(api.crm.properties.core_api.get_all(object_type).results) <= 80
    owners = api.crm.owners.owners_api.get_page(limit=5)
    assert len(owners.results) == 5 and owners.paging.next.after
    everyone = api.crm.owners.owners_api.get_page(limit=100).results
    assert {o.type for o in everyone} == {"PERSON", "QUEUE"}


def test_scopes_are_enforced(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token(scopes=["oauth", "crm.objects.contacts.read"]))
    api.crm.contacts.basic_api.get_page(limit=1)
    with pytest.raises(TicketsApiException) as exc:
        api.crm.tickets.basic_api.get_page(limit=1)
    assert exc.value.status == 403 and "MISSING_SCOPES" in exc.value.body


def test_expired_token_is_401(hubspot_sandbox):
    api = sdk(hubspot_sandbox, hubspot_sandbox.access_token(lifetime=-5))
    with pytest.raises(ContactsApiException) as exc:
        api.crm.contacts.basic_api.get_page(limit=1)
    assert exc.value.status == 401 and "EXPIRED_AUTHENTICATION" in exc.value.body

"""The Segment sandbox's inbox: profiles merged like a Profile Space, paging, the JSON twin, the public pages,
knobs and clear forms, and the sandbox's absence when SANDBOX is off."""

from __future__ import annotations

import importlib
import json

import pytest
from django.test import Client, override_settings
from django.urls import NoReverseMatch, clear_url_caches, reverse

from sandbox.segment.models import DEFAULT_WRITE_KEY, SegmentMessage, SegmentWorkspace, get_default_workspace
from tests.fixtures_segment import basic_auth

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client: Client):
    get_default_workspace()

    def send(messages: list[dict], key: str = DEFAULT_WRITE_KEY):
        response = client.post(
            "/sandbox/segment/v1/batch",
            data=json.dumps({"batch": messages}),
            content_type="application/json",
            HTTP_AUTHORIZATION=basic_auth(key),
        )
        assert response.status_code == 200, response.content
        return response

    return send


def inbox(client: Client, view: str = "messages", key: str = DEFAULT_WRITE_KEY, **params) -> dict:
    response = client.get(f"/sandbox/segment/inbox/{key}.json", {"view": view, **params})
    assert response.status_code == 200, response.content
    return response.json()


def ident(mid: str, ts: str, traits: dict, user: str | None = "u1", anon: str | None = None) -> dict:
    message = {"type": "identify", "messageId": mid, "timestamp": ts, "traits": traits}
    if user:
        message["userId"] = user
    if anon:
        message["anonymousId"] = anon
    return message


def test_traits_merge_in_timestamp_order_not_arrival_order(client, api):
    api([ident("m1", "2026-11-29T10:00:00Z", {"plan": "pro", "email": "a@x.test"})])
    api([ident("m2", "2026-11-29T09:00:00Z", {"plan": "free", "phone": "+44 1"})])  # older, arrives later
    api([ident("m3", "2026-11-29T11:00:00.500+01:00", {"email": "b@x.test"})])  # 10:00:00.5Z: newest
    [profile] = inbox(client, "profiles")["results"]
    assert profile["userId"] == "u1"
    assert profile["traits"] == {"plan": "pro", "email": "b@x.test", "phone": "+44 1"}
    assert profile["messageCount"] == 3
    assert profile["firstSeen"] == "2026-11-29T09:00:00Z"


def test_anonymous_history_joins_the_identified_profile(client, api):
    api([ident("a1", "2026-11-29T08:00:00Z", {"visits": 1}, user=None, anon="anon-7")])
    api([ident("a2", "2026-11-29T09:00:00Z", {"email": "c@x.test"}, user="u9", anon="anon-7")])
    api([ident("a3", "2026-11-29T10:00:00Z", {"first": True}, user=None, anon="anon-other")])
    profiles = inbox(client, "profiles")["results"]
    assert [p["userId"] for p in profiles] == [None, "u9"]  # newest activity first
    assert profiles[1]["traits"] == {"visits": 1, "email": "c@x.test"}
    assert profiles[1]["anonymousIds"] == ["anon-7"]
    assert inbox(client, "profiles", anonymous_id="anon-other")["results"][0]["traits"] == {"first": True}


def test_group_traits_merge_per_account(client, api):
    def grp(user: str, group_id: str, traits: dict, mid: str) -> dict:
        return {"type": "group", "userId": user, "groupId": group_id, "traits": traits, "messageId": mid}

    api([grp("u1", "c1", {"name": "Acme", "plan": "a"}, "g1"), grp("u2", "c1", {"plan": "b"}, "g2")])
    api([grp("u2", "c2", {"name": "Globex"}, "g3")])
    accounts = {a["groupId"]: a for a in inbox(client, "accounts")["results"]}
    assert accounts["c1"]["traits"] == {"name": "Acme", "plan": "b"}
    assert accounts["c1"]["members"] == ["u1", "u2"]
    assert accounts["c2"]["traits"] == {"name": "Globex"}
    assert inbox(client, "accounts", group_id="c2")["total"] == 1
    # Group calls do not put traits on the user profile, but record the membership.
    user2 = inbox(client, "profiles", user_id="u2")["results"][0]
    assert user2["traits"] == {}
    assert user2["groups"] == ["c1", "c2"]


def test_messages_are_paged_newest_first(client, api):
    for start in (0, 50, 100):
        api([{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}"} for i in range(start, start + 50)])
    first = inbox(client, page_size=40)
    assert first["counts"]["received"] == 150
    assert first["results"][0]["messageId"] == "m149"
    assert first["next_page"] == 2
    last = inbox(client, page_size=40, page=4)
    assert [m["messageId"] for m in last["results"]][-1] == "m0"
    assert len(last["results"]) == 30
    assert last["next_page"] is None
    profiles = inbox(client, "profiles", page_size=100, page=2)
    assert profiles["total"] == 150
    assert len(profiles["results"]) == 50


def test_json_errors(client):
    get_default_workspace()
    assert client.get(f"/sandbox/segment/inbox/{DEFAULT_WRITE_KEY}.json", {"view": "nope"}).status_code == 400
    assert client.get("/sandbox/segment/inbox/sbx_seg_unknown.json").status_code == 404
    assert client.get("/sandbox/segment/inbox/sbx_seg_unknown/").status_code == 404


def test_index_page_shows_default_workspace_for_anonymous_visitors(client):
    response = client.get("/sandbox/segment/")
    assert response.status_code == 200
    html = response.content.decode()
    assert DEFAULT_WRITE_KEY in html
    assert "Default Profile Space" in html
    assert "http://testserver/sandbox/segment" in html


def test_index_page_for_a_logged_in_user(owner_client):
    assert owner_client.get("/sandbox/segment/").status_code == 200


def test_create_workspace_from_the_page(client):
    response = client.post("/sandbox/segment/", {"name": "Marketing"})
    workspace = SegmentWorkspace.objects.get(name="Marketing")
    assert response.status_code == 302
    assert response["Location"] == f"/sandbox/segment/inbox/{workspace.write_key}/"
    assert workspace.write_key.startswith("sbx_seg_")
    assert len(workspace.write_key) == 32
    assert client.post("/sandbox/segment/", {"name": ""}).status_code == 200
    assert SegmentWorkspace.objects.count() == 2  # default + Marketing


@pytest.mark.parametrize("view", ["messages", "discards", "profiles", "accounts", "settings"])
def test_inbox_tabs_render(client, api, view):
    api(
        [
            ident("m1", "2026-11-29T10:00:00Z", {"name": "Ada Lovelace", "email": "ada@x.test"}),
            {"type": "group", "userId": "u1", "groupId": "c1", "traits": {"name": "Engines"}, "messageId": "g1"},
            {"type": "identify", "messageId": "bad", "traits": {"email": "lost@x.test"}},
        ]
    )
    response = client.get(f"/sandbox/segment/inbox/{DEFAULT_WRITE_KEY}/", {"view": view})
    assert response.status_code == 200
    html = response.content.decode()
    expected = {
        "messages": "ada@x.test",
        "discards": "no_user_anon_id",
        "profiles": "Ada Lovelace",
        "accounts": "Engines",
        "settings": "Fault knobs",
    }[view]
    assert expected in html


def test_knobs_form(client):
    workspace = get_default_workspace()
    url = reverse("sandbox_segment:knobs", args=[workspace.write_key])
    response = client.post(url, {"error_rate": "0.25", "rate_limit_rate": "0", "retry_after": "5", "latency_ms": "0"})
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert (workspace.error_rate, workspace.retry_after) == (0.25, 5)
    response = client.post(url, {"error_rate": "3"}, follow=True)
    assert "error_rate must be between 0.0 and 1.0." in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.error_rate == 0.25
    page = client.get(reverse("sandbox_segment:inbox", args=[workspace.write_key])).content.decode()
    assert "Fault knobs are on" in page


def test_clear_form(client, api):
    api([ident("m1", "2026-11-29T10:00:00Z", {"a": 1})])
    response = client.post(reverse("sandbox_segment:clear", args=[DEFAULT_WRITE_KEY]))
    assert response.status_code == 302
    assert SegmentMessage.objects.count() == 0


def test_forms_need_csrf(api):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(reverse("sandbox_segment:clear", args=[DEFAULT_WRITE_KEY])).status_code == 403
    assert strict.post("/sandbox/segment/", {"name": "x"}).status_code == 403


def test_sandbox_urls_are_gone_when_sandbox_is_off():
    import hubsync.urls

    try:
        with override_settings(SANDBOX=False):
            clear_url_caches()
            importlib.reload(hubsync.urls)
            with pytest.raises(NoReverseMatch):
                reverse("sandbox_segment:index")
            assert Client().get("/sandbox/segment/v1/_check").status_code == 404
    finally:
        clear_url_caches()
        importlib.reload(hubsync.urls)
    assert reverse("sandbox_segment:index") == "/sandbox/segment/"

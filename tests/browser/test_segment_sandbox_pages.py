"""The Segment sandbox pages in headless Chromium: create a workspace, see what it received, set a knob, clear."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.fixtures_segment import SegmentSandbox


@pytest.mark.browser
def test_workspace_inbox_round_trip(segment_sandbox, page):
    page.goto(segment_sandbox.base_url + "/")
    expect(page.get_by_text(segment_sandbox.write_key)).to_be_visible()
    page.fill("#id_name", "Marketing Profiles")
    page.click("text=Create workspace")
    page.wait_for_url("**/inbox/sbx_seg_*/")
    # No ORM here: Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls there.
    write_key = page.url.rstrip("/").rsplit("/", 1)[1]
    space = SegmentSandbox(base_url=segment_sandbox.base_url, write_key=write_key, session=segment_sandbox.session)
    expect(page.get_by_role("heading", name="Marketing Profiles")).to_be_visible()
    expect(page.get_by_text("No messages yet")).to_be_visible()

    space.batch(
        [
            {"type": "identify", "userId": "42", "traits": {"name": "Ada Lovelace"}, "messageId": "m1"},
            {"type": "group", "userId": "42", "groupId": "7", "traits": {"name": "Engines"}, "messageId": "g1"},
            {"type": "identify", "traits": {"name": "Nobody"}, "messageId": "m2"},
        ]
    )
    page.reload()
    assert page.locator("table tbody tr").count() == 2
    page.click("nav.tabs >> text=Profiles")
    assert page.locator(".sbseg-profile .sbseg-pname").first.inner_text() == "Ada Lovelace"
    page.click("nav.tabs >> text=Discards")
    expect(page.get_by_text("no_user_anon_id").first).to_be_visible()

    page.click("nav.tabs >> text=Fault knobs")
    page.fill("#k_rl", "1")
    page.click("text=Save knobs")
    expect(page.get_by_text("Fault knobs are on")).to_be_visible()
    assert space.batch([{"type": "identify", "userId": "1", "messageId": "m3"}]).status_code == 429

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Clear inbox')")
    page.wait_for_load_state()
    assert space.counts()["received"] == 0

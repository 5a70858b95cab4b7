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


LONG_ID = "someone.with.a.rather.long.name{}@example-company-domain.com"


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 390])
def test_every_inbox_tab_fits_the_screen_with_long_ids_and_traits(segment_sandbox, browser, width):
    """Profiles with e-mail user ids, long anonymous ids and 50-character trait names: the Profiles tab's cards wrap
    them instead of widening the page (it overflowed at 1,400 px), and every tab fits a phone too."""
    messages = []
    for i in range(6):
        messages.append(
            {
                "type": "identify",
                "userId": LONG_ID.format(i),
                "anonymousId": f"anon-{i}-0123456789abcdef0123456789abcdef",
                "traits": {
                    "email": LONG_ID.format(i),
                    "hs_analytics_first_touch_converting_campaign_identifier": "x" * 90,
                    "notes": "word " * 30,
                },
                "messageId": f"m{i}",
            }
        )
        messages.append(
            {
                "type": "group",
                "userId": f"u{i}",
                "groupId": f"company-{i}-with-a-long-group-identifier-0000000000",
                "traits": {"domain": "very-long-domain-name-without-breaks-0123456789.example.com"},
                "messageId": f"g{i}",
            }
        )
    assert segment_sandbox.batch(messages).status_code == 200
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        for view in ("messages", "discards", "profiles", "accounts", "settings"):
            page.goto(f"{segment_sandbox.base_url}/inbox/{segment_sandbox.write_key}/?view={view}")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, f"{view}: {scroll_width}px wide on a {width}px screen"
        page.goto(f"{segment_sandbox.base_url}/inbox/{segment_sandbox.write_key}/?view=profiles")
        cards = page.locator(".sbseg-profile")
        assert cards.count() == 12
        for box in (cards.nth(i).bounding_box() for i in range(cards.count())):
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width
        page.goto(segment_sandbox.base_url + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()

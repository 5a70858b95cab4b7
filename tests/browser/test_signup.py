"""The first browser test: a new user signs up, lands on the empty dashboard, invites a colleague, logs out."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from hubsync.models import Invitation, Membership, Role
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser

PASSWORD = "a long enough passphrase"


def test_sign_up_invite_and_log_out(live_server, page):
    page.goto(live_server.url + "/")
    # Anonymous visitors are sent to log in; from there to sign up.
    assert "/accounts/login/" in page.url
    page.get_by_role("link", name="sign up").click()
    page.fill("input[name=email]", "founder@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    page.wait_for_url(live_server.url + "/")
    expect(page.get_by_role("heading", name="Connect your first source")).to_be_visible()
    expect(page.locator(".sidebar").get_by_text("founder@example.com")).to_be_visible()
    screenshot(page, "signup-dashboard")
    membership = Membership.objects.get(user__email="founder@example.com")
    assert membership.role == Role.OWNER

    page.locator(".sidebar").get_by_role("link", name="Members").click()
    page.wait_for_url(re.compile(r".*/members/$"))
    invite = page.locator("#invite-form")
    invite.get_by_label("Email").fill("colleague@example.com")
    invite.get_by_label("Role").select_option("admin")
    invite.get_by_role("button", name="Send invitation").click()
    page.wait_for_url(re.compile(r".*/members/$"))
    expect(page.get_by_text("Invitation sent to colleague@example.com")).to_be_visible()
    invitation = Invitation.objects.get(workspace=membership.workspace)
    assert (invitation.email, invitation.role) == ("colleague@example.com", "admin")
    link = page.get_by_label("Invitation link for colleague@example.com").input_value()
    token = link.rstrip("/").rsplit("/", 1)[-1]
    assert Invitation.by_token(token).get() == invitation  # only the token's hash is stored
    assert any(link in m.body for m in mail.outbox)
    screenshot(page, "signup-members")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/accounts/login/$"))
    page.goto(live_server.url + "/members/")
    assert "/accounts/login/" in page.url  # really logged out

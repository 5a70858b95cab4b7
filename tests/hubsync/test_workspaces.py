"""Members, invitations, roles and workspace settings: happy paths and every refusal (nothing changes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hubsync.middleware import SESSION_KEY
from hubsync.models import AuditEvent, Invitation, Membership, Role, Workspace
from hubsync.workspaces import NEW_LINKS_SESSION_KEY
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def _state() -> tuple:
    """Everything these views may change, to prove a refusal changed nothing."""
    return (
        sorted(Membership.objects.values_list("user_id", "workspace_id", "role")),
        sorted(Invitation.objects.values_list("email", "role", "accepted_at")),
        sorted(Workspace.objects.values_list("id", "name")),
        AuditEvent.objects.count(),
    )


def _invite(client: Client, email: str, role: str = Role.VIEWER):
    return client.post(reverse("members"), {"email": email, "role": role})


def _verified(user, email: str | None = None):
    """The user owns `email` (default: their own) as a confirmed address."""
    EmailAddress.objects.create(user=user, email=email or user.email, verified=True, primary=email is None)
    return user


def _token_from(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


# --- invitations -----------------------------------------------------------------------------------------


def test_owner_invites_by_email_and_sees_the_link(owner_client, workspace, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(owner_client, "New.Person@Example.com", Role.ADMIN)
    assert response.status_code == 302
    invitation = Invitation.objects.get(workspace=workspace)
    assert (invitation.email, invitation.role, invitation.accepted_at) == ("new.person@example.com", "admin", None)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]
    token = _token_from(next(w for w in mail.outbox[0].body.split() if "/invitations/" in w))
    link = reverse("invitation_accept", args=[token])
    assert link in mail.outbox[0].body
    page = owner_client.get(reverse("members")).content.decode()
    assert link in page  # shown to the owner for copying, right after sending...
    assert link not in owner_client.get(reverse("members")).content.decode()  # ... and only then (stored hashed)
    event = AuditEvent.objects.get(verb="member.invite")
    assert event.changes == {"email": "new.person@example.com", "role": "admin"}
    assert token not in str(event.changes) + event.object_repr


def test_duplicate_pending_invitation_is_a_form_error(owner_client, workspace):
    _invite(owner_client, "dup@example.com")
    before = _state()
    response = _invite(owner_client, "DUP@example.com", Role.ADMIN)
    assert response.status_code == 400
    assert "already has a pending invitation" in response.content.decode()
    assert _state() == before


def test_inviting_an_existing_member_is_a_form_error(owner_client, viewer):
    before = _state()
    response = _invite(owner_client, viewer.email)
    assert response.status_code == 400
    assert "already a member" in response.content.decode()
    assert _state() == before


def test_invalid_email_and_role_show_field_errors_in_place(owner_client, workspace):
    before = _state()
    response = owner_client.post(reverse("members"), {"email": "not-an-email", "role": "emperor"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "Select a valid choice." in html
    assert 'value="not-an-email"' in html  # the input keeps what was typed
    assert _state() == before


def test_an_expired_pending_invitation_can_be_replaced(owner_client, workspace):
    _invite(owner_client, "late@example.com")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    assert _invite(owner_client, "late@example.com").status_code == 302
    assert Invitation.objects.filter(email="late@example.com", accepted_at__isnull=True).count() == 1
    assert not Invitation.objects.get(email="late@example.com").expired


@pytest.mark.parametrize("who", ["viewer_client", "admin_client_"])
def test_only_owners_invite(request, who, workspace):
    client = request.getfixturevalue(who)
    before = _state()
    response = _invite(client, "someone@example.com")
    assert response.status_code == 403
    assert "cannot do this" in response.content.decode()
    assert _state() == before
    # ... and non-owners do not see invitation links (bearer tokens).
    invitation = Invitation.objects.create(workspace=workspace, email="x@example.com")
    page = client.get(reverse("members")).content.decode()
    assert "x@example.com" in page
    assert invitation.token not in page


def test_accepting_with_the_invited_email_joins(owner, workspace, outsider):
    _verified(outsider)
    invitation = Invitation.objects.create(workspace=workspace, email=outsider.email.upper(), role=Role.ADMIN)
    client = Client()
    client.force_login(outsider)
    url = reverse("invitation_accept", args=[invitation.token])
    assert "Join Acme" in client.get(url).content.decode()
    response = client.post(url)
    assert response.status_code == 302
    assert Membership.objects.get(user=outsider, workspace=workspace).role == Role.ADMIN
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    assert client.session[SESSION_KEY] == workspace.pk  # switched to the new workspace
    assert AuditEvent.objects.filter(workspace=workspace, verb="member.join", actor=outsider).exists()
    # Used once: the second click explains and changes nothing.
    before = _state()
    again = client.post(url)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    assert _state() == before


def test_accepting_while_logged_in_as_someone_else_is_refused(workspace, outsider):
    invitation = Invitation.objects.create(workspace=workspace, email="invited@example.com")
    client = Client()
    client.force_login(outsider)
    before = _state()
    response = client.post(reverse("invitation_accept", args=[invitation.token]))
    assert response.status_code == 403
    assert "was sent to invited@example.com" in response.content.decode()
    assert _state() == before


def test_expired_invitation_is_refused_with_a_clear_message(workspace, outsider):
    _verified(outsider)
    invitation = Invitation.objects.create(
        workspace=workspace, email=outsider.email, expires_at=timezone.now() - timedelta(seconds=1)
    )
    client = Client()
    client.force_login(outsider)
    before = _state()
    response = client.post(reverse("invitation_accept", args=[invitation.token]))
    assert response.status_code == 410
    assert "This invitation has expired" in response.content.decode()
    assert _state() == before
    # Anonymous visitors get the same message and nothing is stashed for a sign-up.
    anon = Client()
    response = anon.get(reverse("invitation_accept", args=[invitation.token]))
    assert response.status_code == 410
    assert "expired" in response.content.decode()


def test_unknown_invitation_token_is_404(client):
    response = client.get(reverse("invitation_accept", args=["no-such-token"]))
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_anonymous_post_to_an_invitation_goes_to_login(workspace):
    invitation = Invitation.objects.create(workspace=workspace, email="a@example.com")
    response = Client().post(reverse("invitation_accept", args=[invitation.token]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert Invitation.objects.get().accepted_at is None


def test_signing_up_through_an_invitation_still_verifies_the_address(owner, workspace, settings):
    """Holding the link proves nothing about the address typed at sign-up (an owner sees every link): the sign-up
    gets the normal confirmation e-mail, and joins the workspace when the address is confirmed."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    invitation = Invitation.objects.create(workspace=workspace, email="fresh@example.com", role=Role.VIEWER)
    client = Client()
    page = client.get(reverse("invitation_accept", args=[invitation.token])).content.decode()
    assert "Create an account" in page
    signup = client.get(reverse("account_signup") + "?email=fresh@example.com").content.decode()
    assert 'value="fresh@example.com"' in signup
    mail.outbox.clear()
    response = client.post(
        reverse("account_signup"), {"email": "fresh@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    address = EmailAddress.objects.get(email="fresh@example.com")
    assert not address.verified  # nobody proved it yet
    assert not Membership.objects.filter(user=address.user).exists()  # not joined, and no workspace of its own
    assert Invitation.objects.get().accepted_at is None
    assert client.get(reverse("dashboard")).status_code == 302  # mandatory verification: not logged in yet

    confirm = next(w for m in mail.outbox for w in m.body.split() if "/accounts/confirm-email/" in w)
    assert client.post(confirm).status_code == 302
    address.refresh_from_db()
    assert address.verified
    assert list(Membership.objects.filter(user=address.user).values_list("workspace_id", "role")) == [
        (workspace.pk, Role.VIEWER)
    ]
    assert Invitation.objects.get().accepted_at is not None
    assert client.session[SESSION_KEY] == workspace.pk


def test_an_unverified_address_does_not_accept_an_invitation(workspace, outsider):
    """The invited address added (unconfirmed) on the account's e-mail page, even as primary, is not enough."""
    EmailAddress.objects.create(user=outsider, email="invited@example.com", verified=False, primary=True)
    outsider.email = "invited@example.com"
    outsider.save(update_fields=["email"])
    invitation = Invitation.objects.create(workspace=workspace, email="invited@example.com")
    client = Client()
    client.force_login(outsider)
    before = _state()
    response = client.post(reverse("invitation_accept", args=[invitation.token]))
    assert response.status_code == 403
    assert "Confirm invited@example.com first" in response.content.decode()
    assert _state() == before
    # Once confirmed, the same link works.
    EmailAddress.objects.filter(email="invited@example.com").update(verified=True)
    assert client.post(reverse("invitation_accept", args=[invitation.token])).status_code == 302
    assert Membership.objects.filter(user=outsider, workspace=workspace).exists()


def test_invitation_tokens_are_stored_hashed(workspace, owner):
    import hashlib

    invitation = Invitation.objects.create(workspace=workspace, email="h@example.com", invited_by=owner)
    token = invitation.token
    assert token and len(token) >= 40
    assert "token" not in {f.name for f in Invitation._meta.get_fields()}
    row = Invitation.objects.filter(pk=invitation.pk).values().get()
    assert token not in str(row)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert Invitation.by_token(token).get() == invitation
    assert Client().get(reverse("invitation_accept", args=[token])).status_code == 200
    assert Client().get(reverse("invitation_accept", args=[row["token_hash"]])).status_code == 404  # not the hash


def test_workspace_names_refuse_line_breaks(owner_client, workspace):
    response = owner_client.post(reverse("workspace_settings"), {"name": "Acme\r\nBcc: victim@evil.example"})
    assert response.status_code == 200
    assert "no line breaks" in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.name == "Acme"
    assert owner_client.post(reverse("workspace_new"), {"name": "New\nOne"}).status_code == 200
    assert not Workspace.objects.filter(name__contains="One").exists()


def test_invitation_mail_subject_is_one_line_whatever_the_workspace_name(
    owner_client, workspace, django_capture_on_commit_callbacks
):
    # A name saved before names were validated (or by a command) must not break sending after the invitation
    # was saved (BadHeaderError, a 500).
    Workspace.objects.filter(pk=workspace.pk).update(name="Acme\r\nBcc: victim@evil.example")
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(owner_client, "n@example.com")
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    subject = mail.outbox[0].subject
    assert "\n" not in subject and "\r" not in subject
    assert subject == "You are invited to Acme Bcc: victim@evil.example on hubsync"
    assert mail.outbox[0].bcc == [] and mail.outbox[0].to == ["n@example.com"]


def test_signing_up_with_another_email_than_invited_gets_an_own_workspace(workspace):
    invitation = Invitation.objects.create(workspace=workspace, email="invited@example.com")
    client = Client()
    client.get(reverse("invitation_accept", args=[invitation.token]))
    r = client.post(
        reverse("account_signup"), {"email": "other@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert r.status_code == 302, r.content.decode()
    membership = Membership.objects.get(user__email="other@example.com")
    assert membership.workspace != workspace and membership.role == Role.OWNER
    assert Invitation.objects.get().accepted_at is None
    # The invited address is not attached to (or verified for) this other account.
    assert list(EmailAddress.objects.values_list("email", "verified")) == [("other@example.com", False)]


def test_revoked_invitation_link_stops_working(owner_client, workspace):
    _invite(owner_client, "gone@example.com")
    invitation = Invitation.objects.get()
    invitation.token = _token_from(owner_client.session[NEW_LINKS_SESSION_KEY][str(invitation.pk)])
    # The button asks first, like removing a member or revoking an API token.
    assert (
        'data-confirm="Revoke the invitation of gone@example.com?'
        in owner_client.get(reverse("members")).content.decode()
    )
    response = owner_client.post(reverse("invitation_revoke", args=[invitation.pk]))
    assert response.status_code == 302
    assert not Invitation.objects.exists()
    assert AuditEvent.objects.filter(verb="member.revoke_invitation").exists()
    assert Client().get(reverse("invitation_accept", args=[invitation.token])).status_code == 404


# --- roles and removal -----------------------------------------------------------------------------------


def test_owner_changes_a_role(owner_client, viewer, workspace):
    membership = Membership.objects.get(user=viewer)
    response = owner_client.post(reverse("member_role", args=[membership.pk]), {"role": Role.ADMIN})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    event = AuditEvent.objects.get(verb="member.role")
    assert event.changes == {"role": ["viewer", "admin"]}


def test_last_owner_cannot_be_demoted_or_removed(owner_client, owner, viewer):
    membership = Membership.objects.get(user=owner)
    before = _state()
    response = owner_client.post(reverse("member_role", args=[membership.pk]), {"role": Role.VIEWER}, follow=True)
    assert "at least one owner" in response.content.decode()
    response = owner_client.post(reverse("member_remove", args=[membership.pk]), follow=True)
    assert "last owner cannot be removed" in response.content.decode()
    assert _state() == before


def test_an_owner_can_step_down_when_another_owner_exists(owner_client, owner, viewer):
    Membership.objects.filter(user=viewer).update(role=Role.OWNER)
    membership = Membership.objects.get(user=owner)
    owner_client.post(reverse("member_role", args=[membership.pk]), {"role": Role.ADMIN})
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


def test_owner_removes_a_member_who_loses_access_at_once(owner_client, viewer, viewer_client):
    membership = Membership.objects.get(user=viewer)
    assert viewer_client.get(reverse("dashboard")).status_code == 200
    response = owner_client.post(reverse("member_remove", args=[membership.pk]))
    assert response.status_code == 302
    assert not Membership.objects.filter(user=viewer).exists()
    assert AuditEvent.objects.filter(verb="member.remove", object_repr=viewer.email).exists()
    # No workspace left: the next page sends them to create one, never into Acme.
    response = viewer_client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("workspace_new")


def test_invalid_role_is_refused(owner_client, viewer):
    membership = Membership.objects.get(user=viewer)
    before = _state()
    response = owner_client.post(reverse("member_role", args=[membership.pk]), {"role": "god"}, follow=True)
    assert "Choose a role" in response.content.decode()
    assert _state() == before


@pytest.mark.parametrize("who", ["viewer_client", "admin_client_"])
def test_non_owners_cannot_change_members(request, who, owner, viewer):
    client = request.getfixturevalue(who)
    target = Membership.objects.get(user=viewer)
    before = _state()
    assert client.post(reverse("member_role", args=[target.pk]), {"role": Role.OWNER}).status_code == 403
    assert client.post(reverse("member_remove", args=[target.pk])).status_code == 403
    assert _state() == before


def test_members_of_another_workspace_are_404(outsider_client, viewer):
    target = Membership.objects.get(user=viewer)
    before = _state()
    assert outsider_client.post(reverse("member_role", args=[target.pk]), {"role": "owner"}).status_code == 404
    assert outsider_client.post(reverse("member_remove", args=[target.pk])).status_code == 404
    assert _state() == before


def test_members_page_lists_members_with_roles(viewer_client, owner, viewer, admin_user):
    html = viewer_client.get(reverse("members")).content.decode()
    for user, role in ((owner, "Owner"), (viewer, "Viewer"), (admin_user, "Admin")):
        assert user.email in html
        assert role in html
    assert "Send invitation" not in html  # viewers get no forms


# --- workspace settings, creation and switching ---------------------------------------------------------


def test_owner_renames_the_workspace(owner_client, workspace):
    response = owner_client.post(reverse("workspace_settings"), {"name": "Acme Inc."})
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.name == "Acme Inc."
    assert AuditEvent.objects.get(verb="update").changes == {"name": ["Acme", "Acme Inc."]}


def test_empty_workspace_name_is_a_field_error(owner_client, workspace):
    before = _state()
    response = owner_client.post(reverse("workspace_settings"), {"name": "  "})
    assert response.status_code == 200
    assert "Give the workspace a name." in response.content.decode()
    assert _state() == before


@pytest.mark.parametrize("who", ["viewer_client", "admin_client_"])
def test_only_owners_rename(request, who, workspace):
    client = request.getfixturevalue(who)
    before = _state()
    assert client.post(reverse("workspace_settings"), {"name": "Hacked"}).status_code == 403
    assert _state() == before
    html = client.get(reverse("workspace_settings")).content.decode()
    assert "Only owners can change workspace settings." in html


def test_settings_links_to_account_security(viewer_client):
    html = viewer_client.get(reverse("workspace_settings")).content.decode()
    for name in ("account_change_password", "account_email", "mfa_index"):
        assert reverse(name) in html


def test_new_workspace_and_switching(owner_client, owner, workspace, other_workspace):
    response = owner_client.post(reverse("workspace_new"), {"name": "Second"})
    assert response.status_code == 302
    second = Workspace.objects.get(name="Second")
    assert Membership.objects.get(user=owner, workspace=second).role == Role.OWNER
    assert owner_client.session[SESSION_KEY] == second.pk
    owner_client.post(reverse("workspace_switch"), {"workspace": workspace.pk})
    assert owner_client.session[SESSION_KEY] == workspace.pk
    # A workspace the user is not a member of is ignored.
    owner_client.post(reverse("workspace_switch"), {"workspace": other_workspace.pk})
    assert owner_client.session[SESSION_KEY] == workspace.pk
    assert "Globex" not in owner_client.get(reverse("dashboard")).content.decode()


def test_new_workspace_needs_a_name(owner_client):
    before = _state()
    response = owner_client.post(reverse("workspace_new"), {"name": ""})
    assert response.status_code == 200
    assert "Give the workspace a name." in response.content.decode()
    assert _state() == before


def test_user_without_workspace_is_sent_to_create_one(db):
    client = Client()
    client.force_login(make_user("lonely@example.com"))
    response = client.get(reverse("members"))
    assert response.status_code == 302 and response["Location"] == reverse("workspace_new")
    html = client.get(reverse("workspace_new")).content.decode()
    assert "Create a workspace" in html
    assert reverse("account_logout") in html  # no sidebar here, but a way out


@pytest.mark.django_db(transaction=True)
def test_the_migration_hashes_pending_tokens_so_sent_links_keep_working():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("hubsync", "0002_alerts_workspacesettings")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    workspace = old.get_model("hubsync", "Workspace").objects.create(name="Legacy")
    old.get_model("hubsync", "Invitation").objects.create(
        workspace=workspace, email="sent@example.com", token="link-sent-before-the-upgrade"
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    # Forward to every app's latest migration: going back to `before` also unapplied the other apps' migrations
    # that depend on hubsync's later ones, and the tests after this one need their tables.
    executor.migrate(executor.loader.graph.leaf_nodes())
    invitation = Invitation.by_token("link-sent-before-the-upgrade").get()
    assert invitation.email == "sent@example.com"
    assert "link-sent-before-the-upgrade" not in str(Invitation.objects.values().get())
    response = Client().get(reverse("invitation_accept", args=["link-sent-before-the-upgrade"]))
    assert response.status_code == 200

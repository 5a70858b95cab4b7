from __future__ import annotations

import io

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from hubsync.models import AuditEvent, Membership, Role, Workspace

pytestmark = pytest.mark.django_db

EMAIL = "ops@acme.test"
PASSWORD = "a long enough passphrase 42"


def bootstrap(*args: str) -> str:
    out = io.StringIO()
    call_command("bootstrap", *args, stdout=out)
    return out.getvalue()


def first_run() -> str:
    return bootstrap("--email", EMAIL, "--password", PASSWORD, "--workspace", "Acme")


def snapshot() -> tuple:
    User = get_user_model()
    return (
        list(User.objects.values_list("pk", "email", "password", "is_staff")),
        list(EmailAddress.objects.values_list("pk", "email", "verified", "primary")),
        list(Workspace.objects.values_list("pk", "name")),
        list(Membership.objects.values_list("pk", "user_id", "workspace_id", "role")),
        AuditEvent.objects.count(),
    )


def test_creates_user_verified_email_workspace_and_owner_membership():
    output = first_run()
    user = get_user_model().objects.get(email=EMAIL)
    assert user.check_password(PASSWORD)
    assert user.username  # allauth's generated username; login is by email
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.verified, address.primary) == (EMAIL, True, True)
    membership = Membership.objects.get(user=user)
    assert (membership.workspace.name, membership.role) == ("Acme", Role.OWNER)
    assert AuditEvent.objects.filter(workspace=membership.workspace, verb="create").exists()
    assert "created user ops@acme.test" in output
    assert "created workspace 'Acme'" in output
    assert PASSWORD not in output

    # The user can log in through allauth with these credentials and lands on the dashboard.
    client = Client()
    response = client.post("/accounts/login/", {"login": EMAIL, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_rerun_changes_nothing():
    first_run()
    before = snapshot()
    output = first_run()
    assert snapshot() == before
    assert "unchanged" in output and "created" not in output


def test_rerun_keeps_a_changed_password_unless_reset_is_asked():
    first_run()
    user = get_user_model().objects.get(email=EMAIL)
    user.set_password("changed in the UI 2024")
    user.save()
    bootstrap("--email", EMAIL, "--password", PASSWORD, "--workspace", "Acme")
    user.refresh_from_db()
    assert user.check_password("changed in the UI 2024")

    output = bootstrap("--email", EMAIL, "--password", PASSWORD, "--workspace", "Acme", "--reset-password")
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert "updated password" in output


def test_existing_unverified_user_gets_verified_and_a_second_workspace():
    User = get_user_model()
    user = User.objects.create_user(username="ops", email=EMAIL, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=EMAIL, verified=False, primary=True)
    bootstrap("--email", EMAIL.upper(), "--workspace", "Second")  # no password needed for an existing user
    assert User.objects.count() == 1
    assert EmailAddress.objects.get(user=user).verified is True
    assert Membership.objects.get(user=user).workspace.name == "Second"


def test_password_from_environment(monkeypatch):
    monkeypatch.setenv("HUBSYNC_BOOTSTRAP_PASSWORD", PASSWORD)
    bootstrap("--email", EMAIL, "--workspace", "Acme")
    assert get_user_model().objects.get(email=EMAIL).check_password(PASSWORD)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-email", "--password", PASSWORD, "--workspace", "Acme"], "not a valid email"),
        (["--email", EMAIL, "--password", "short", "--workspace", "Acme"], "password rejected"),
        (["--email", EMAIL, "--workspace", "Acme"], "a password is needed"),
        (["--email", EMAIL, "--password", PASSWORD, "--workspace", "  "], "--workspace"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(args, message, monkeypatch):
    monkeypatch.delenv("HUBSYNC_BOOTSTRAP_PASSWORD", raising=False)
    with pytest.raises(CommandError, match=message):
        bootstrap(*args)
    assert snapshot() == ([], [], [], [], 0)

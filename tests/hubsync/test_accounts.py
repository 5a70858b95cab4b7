"""allauth wired into the product: sign up, log in/out, password reset, email verification, rate limits, MFA,
the admin login, and that the pages wear our layout."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hubsync.models import AuditEvent, Membership, Role
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db
User = get_user_model()


def _signup(client: Client, email: str, password: str = PASSWORD, password2: str | None = None):
    return client.post(
        reverse("account_signup"), {"email": email, "password1": password, "password2": password2 or password}
    )


def _login(client: Client, email: str, password: str = PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_signup_creates_a_workspace_owned_by_the_new_user(client):
    response = _signup(client, "Ann@Example.com")
    assert response.status_code == 302
    user = User.objects.get(email__iexact="ann@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.workspace.name == "ann's workspace"
    assert AuditEvent.objects.filter(workspace=membership.workspace, verb="create", actor=user).exists()
    dashboard = client.get(reverse("dashboard"))
    assert "Connect your first source" in dashboard.content.decode()


def test_signup_errors_show_in_place_and_create_nothing(client, owner):
    users = User.objects.count()
    response = _signup(client, owner.email)
    assert response.status_code == 200
    assert "A user is already registered with this email address." in response.content.decode()
    response = _signup(client, "new@example.com", "short", "other")
    html = response.content.decode()
    assert "This password is too short" in html or "You must type the same password each time" in html
    assert User.objects.count() == users
    assert not _logged_in(client)


def test_login_wrong_password_is_refused_clearly(client, owner):
    response = _login(client, owner.email, "wrong password!")
    assert response.status_code == 200
    assert "The email address and/or password you specified are not correct." in response.content.decode()
    assert not _logged_in(client)
    assert _login(client, owner.email).status_code == 302
    assert _logged_in(client)


def test_failed_logins_are_rate_limited(client, owner):
    for _ in range(5):
        _login(client, owner.email, "wrong password!")
    response = _login(client, owner.email)  # even the right password, while locked out
    assert "Too many failed login attempts" in response.content.decode()
    assert not _logged_in(client)


def test_logout(owner_client):
    response = owner_client.post(reverse("account_logout"))
    assert response.status_code == 302
    assert not _logged_in(owner_client)
    assert owner_client.get(reverse("dashboard")).status_code == 302


def test_password_reset_by_email(client, owner):
    response = client.post(reverse("account_reset_password"), {"email": owner.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://\S+", mail.outbox[0].body).group(0)
    path = link.split("testserver", 1)[1]
    page = client.get(path, follow=True)
    form_url = page.redirect_chain[-1][0] if page.redirect_chain else path
    new = "a brand new passphrase"
    response = client.post(form_url, {"password1": new, "password2": new})
    assert response.status_code == 302
    assert _login(Client(), owner.email, PASSWORD).status_code != 302
    assert _login(Client(), owner.email, new).status_code == 302


def test_mandatory_email_verification(client, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    response = _signup(client, "verify@example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert not _logged_in(client)
    assert _login(client, "verify@example.com").status_code == 302
    assert not _logged_in(client)  # still waiting for verification
    link = re.search(r"https?://testserver(\S+)", mail.outbox[-1].body).group(1)
    client.post(link)
    assert EmailAddress.objects.get(email="verify@example.com").verified
    assert _login(Client(), "verify@example.com").status_code == 302


def test_optional_email_verification_lets_the_user_in_at_once(client, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "optional"
    _signup(client, "quick@example.com")
    assert _logged_in(client)
    assert any("quick@example.com" in m.to for m in mail.outbox)  # verification mail still sent


def _totp_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(timezone.now().timestamp()) // 30))


def test_totp_mfa_can_be_activated_and_is_then_required(client, owner):
    EmailAddress.objects.create(user=owner, email=owner.email, verified=True, primary=True)
    assert _login(client, owner.email).status_code == 302
    settings_page = client.get(reverse("workspace_settings")).content.decode()
    assert reverse("mfa_index") in settings_page
    # Security changes ask for the password again first.
    response = client.get(reverse("mfa_activate_totp"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_reauthenticate"))
    client.post(response["Location"], {"password": PASSWORD})
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    assert "Activate Authenticator App" in page.content.decode()
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post(reverse("mfa_activate_totp"), {"code": "000000" if _totp_code(secret) != "000000" else "1"})
    assert not Authenticator.objects.filter(user=owner).exists()  # a wrong code activates nothing
    response = client.post(reverse("mfa_activate_totp"), {"code": _totp_code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=owner, type=Authenticator.Type.TOTP).exists()

    fresh = Client()
    response = _login(fresh, owner.email)
    assert response["Location"] == reverse("mfa_authenticate")
    assert not _logged_in(fresh)
    bad = fresh.post(reverse("mfa_authenticate"), {"code": "123456" if _totp_code(secret) != "123456" else "1"})
    assert "Incorrect code" in bad.content.decode()
    assert not _logged_in(fresh)
    # allauth refuses a code twice (it remembers used codes in the cache); forget the activation's one.
    cache.clear()
    response = fresh.post(reverse("mfa_authenticate"), {"code": _totp_code(secret)})
    assert response.status_code == 302
    assert _logged_in(fresh)


def test_admin_login_goes_through_allauth(client, owner):
    response = client.get("/admin/login/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    # A logged-in non-staff user is refused, a staff user gets in.
    member = Client()
    member.force_login(owner)
    assert member.get("/admin/login/").status_code == 403
    staff = make_user("staff@example.com")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    admin = Client()
    admin.force_login(staff)
    assert admin.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    "name",
    ["account_login", "account_signup", "account_reset_password", "account_email_verification_sent"],
)
def test_entrance_pages_wear_our_layout(client, name):
    html = client.get(reverse(name)).content.decode()
    assert "css/app.css" in html
    assert 'class="brand big"' in html
    assert 'class="card narrow"' in html


@pytest.mark.parametrize("name", ["account_change_password", "account_email", "mfa_index"])
def test_account_pages_sit_in_the_product_shell(owner_client, name):
    html = owner_client.get(reverse(name)).content.decode()
    assert 'class="sidebar"' in html
    assert reverse("mfa_index") in html  # the account tabs

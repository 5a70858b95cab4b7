"""`manage.py bootstrap --email E --password P --workspace W`: the first user and workspace, idempotently.

For operators and scripts (docker-compose, provisioning): running it again changes nothing. An existing user's
password is left alone unless --reset-password is given, so a password changed in the UI survives a
re-provisioning run. The password may come from HUBSYNC_BOOTSTRAP_PASSWORD instead of the command line
(which other users of the machine can see in the process list).
"""

from __future__ import annotations

import os
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from hubsync.models import Membership, Role, Workspace
from hubsync.workspaces import create_workspace

PASSWORD_ENV = "HUBSYNC_BOOTSTRAP_PASSWORD"


class Command(BaseCommand):
    help = "Create the first user (verified email) and a workspace they own. Safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", help=f"the user's password (or set {PASSWORD_ENV})")
        parser.add_argument("--workspace", required=True, help="workspace name")
        parser.add_argument(
            "--reset-password", action="store_true", help="set the password even if the user already exists"
        )
        parser.add_argument("--superuser", action="store_true", help="also give the user Django admin access")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"].strip().lower()
        name = options["workspace"].strip()
        password = options["password"] or os.environ.get(PASSWORD_ENV, "")
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"--email: {email!r} is not a valid email address") from exc
        if not name or len(name) > (Workspace._meta.get_field("name").max_length or 0):
            raise CommandError("--workspace: give a name of 1 to 100 characters")

        with transaction.atomic():
            user = self._user(email, password, options["reset_password"], options["superuser"])
            self._email_address(user, email)
            self._workspace(user, name)

    def _say(self, message: str) -> None:
        self.stdout.write(message)

    def _check_password(self, password: str, user: Any) -> None:
        if not password:
            raise CommandError(f"a password is needed: --password or {PASSWORD_ENV}")
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("password rejected: " + " ".join(exc.messages)) from exc

    def _user(self, email: str, password: str, reset_password: bool, superuser: bool) -> Any:
        User = get_user_model()
        user = User.objects.filter(email__iexact=email).order_by("pk").first()
        if user is None:
            user = User(email=email)
            get_adapter().populate_username(None, user)
            self._check_password(password, user)
            user.set_password(password)
            user.is_staff = user.is_superuser = superuser
            user.save()
            self._say(f"created user {email}")
            return user
        changed = []
        if reset_password:
            self._check_password(password, user)
            user.set_password(password)
            changed.append("password")
        if superuser and not (user.is_staff and user.is_superuser):
            user.is_staff = user.is_superuser = True
            changed += ["is_staff", "is_superuser"]
        if not user.is_active:
            user.is_active = True
            changed.append("is_active")
        if changed:
            user.save(update_fields=changed)
            self._say(f"user {email} exists: updated {', '.join(changed)}")
        else:
            self._say(f"user {email} exists: unchanged (password kept; --reset-password sets it)")
        return user

    def _email_address(self, user: Any, email: str) -> None:
        address = EmailAddress.objects.filter(user=user, email__iexact=email).first()
        if address is not None and address.verified and address.primary:
            self._say(f"email {email} already verified and primary")
            return
        # Only one primary address per user.
        EmailAddress.objects.filter(user=user, primary=True).exclude(pk=getattr(address, "pk", None)).update(
            primary=False
        )
        if address is None:
            EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        else:
            address.verified = address.primary = True
            address.save(update_fields=["verified", "primary"])
        self._say(f"email {email} marked verified and primary")

    def _workspace(self, user: Any, name: str) -> None:
        membership = Membership.objects.filter(user=user, workspace__name=name).order_by("pk").first()
        if membership is None:
            workspace = create_workspace(name=name, owner=user)
            self._say(f"created workspace {name!r} (id {workspace.pk}) owned by {user.email}")
        elif membership.role != Role.OWNER:
            # Like the password: a role changed in the UI since the first run is kept.
            self._say(
                f"workspace {name!r} (id {membership.workspace_id}) exists, {user.email} is {membership.role} "
                "there: unchanged"
            )
        else:
            self._say(f"workspace {name!r} (id {membership.workspace_id}) exists, owned by {user.email}: unchanged")

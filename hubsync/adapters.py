from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter

from .workspaces import on_email_confirmed, on_signup


class AccountAdapter(DefaultAccountAdapter):
    """Signup creates the user's first workspace (or accepts a pending invitation)."""

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            on_signup(request=request, user=user)
        return user

    def confirm_email(self, request, email_address) -> bool:
        """A confirmed address may complete the invitation this browser came through (sign-ups through an
        invitation link get the normal verification: holding the link proves nothing about the address)."""
        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            on_email_confirmed(request=request, email_address=email_address)
        return confirmed


def user_display(user) -> str:
    """Users are known by their email address here (usernames are generated and never shown)."""
    return user.email or user.get_username()

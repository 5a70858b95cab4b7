from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Signup creates the user's first workspace (or accepts a pending invitation)."""

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            from .workspaces import on_signup

            on_signup(request=request, user=user)
        return user

    def is_email_verified(self, request, email: str) -> bool:
        """An address that received a still-valid invitation link (opened in this session) is verified: the
        person signing up holds a secret that was only ever sent to it. Any other address goes through the
        normal verification (ACCOUNT_EMAIL_VERIFICATION)."""
        from .workspaces import INVITED_EMAIL_SESSION_KEY

        session = getattr(request, "session", None)
        # Set by on_signup when this sign-up accepted an invitation (save_user runs before allauth sets up the
        # user's addresses and asks this question).
        invited = session.pop(INVITED_EMAIL_SESSION_KEY, None) if session is not None else None
        if invited and invited.lower() == email.strip().lower():
            return True
        return super().is_email_verified(request, email)


def user_display(user) -> str:
    """Users are known by their email address here (usernames are generated and never shown)."""
    return user.email or user.get_username()

from __future__ import annotations

from typing import Any

from django import forms

from . import outbound
from .models import Role


def _printable(value: str) -> None:
    # A name ends up in e-mail subjects and page titles: line breaks and other control characters have no place.
    if any(not ch.isprintable() for ch in value):
        raise forms.ValidationError("Use letters, digits, spaces and punctuation only (no line breaks or tabs).")


class WorkspaceForm(forms.Form):
    name = forms.CharField(
        max_length=100, strip=True, validators=[_printable], error_messages={"required": "Give the workspace a name."}
    )


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"placeholder": "colleague@example.com"}))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class WorkspaceSettingsForm(forms.Form):
    drift_pauses_mappings = forms.BooleanField(
        required=False,
        label="Pause mappings on schema drift",
        help_text="When HubSpot deletes, renames or retypes a property a mapping sends, pause that mapping until "
        "the change is dealt with (recommended: nothing wrong reaches Segment). Off: flag it and keep delivering.",
    )
    freshness_alert_minutes = forms.IntegerField(
        min_value=0,
        max_value=100_000,
        label="Freshness alert (minutes)",
        help_text="Alert when a HubSpot change has waited longer than this to reach Segment. 0 = off.",
    )
    rejected_alert_threshold = forms.IntegerField(
        min_value=0,
        max_value=10_000_000,
        label="Rejected records alert",
        help_text="Alert when a mapping holds more rejected records than this. 0 = off.",
    )


class AlertChannelForm(forms.Form):
    kind = forms.ChoiceField(choices=[("email", "Email"), ("webhook", "Webhook (Slack-compatible)")])
    name = forms.CharField(max_length=100, strip=True)
    emails = forms.CharField(
        max_length=500,
        required=False,
        label="Email addresses",
        help_text="Comma-separated; verified addresses of this workspace's members only.",
        widget=forms.TextInput(attrs={"placeholder": "ops@example.com, data@example.com"}),
    )
    # A Slack webhook URL is a secret: never rendered back into the page.
    webhook_url = forms.URLField(
        required=False,
        max_length=1000,
        assume_scheme="https",
        label="Webhook URL",
        help_text="Receives a JSON POST with a Slack-compatible “text” field; an https:// address on the public "
        "internet. Stored encrypted; not shown again.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        error_messages={
            "invalid": "This is not a web address. Paste the whole webhook URL, e.g. "
            "https://hooks.slack.com/services/T000/B000/XXXX."
        },
    )

    def __init__(self, *args, member_emails: set[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Verified addresses of the workspace's members (lower case): alert e-mails go to them only.
        self.member_emails = member_emails

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("kind") == "email":
            addresses = [a.strip() for a in (data.get("emails") or "").split(",") if a.strip()]
            if not addresses:
                self.add_error("emails", "Give at least one address.")
            validator = forms.EmailField()
            for address in addresses:
                try:
                    validator.clean(address)
                except forms.ValidationError:
                    self.add_error("emails", f"{address} is not a valid email address.")
                    continue
                if self.member_emails is not None and address.lower() not in self.member_emails:
                    self.add_error(
                        "emails",
                        f"{address} is not the verified address of a member of this workspace. Alert e-mails go "
                        "to members only: invite the person first (they verify their address when they join).",
                    )
            data["emails"] = ", ".join(addresses)
            data["webhook_url"] = ""
            # The webhook field is hidden for email channels: whatever it holds is ignored, errors included.
            self.errors.pop("webhook_url", None)
        elif data.get("kind") == "webhook":
            # An invalid URL already has its error on the field; "give the URL" would contradict it.
            if not data.get("webhook_url") and "webhook_url" not in self.errors:
                self.add_error("webhook_url", "Give the webhook URL (for Slack: an incoming-webhook URL).")
            elif data.get("webhook_url"):
                try:
                    outbound.check_url(data["webhook_url"])
                except outbound.RefusedURL as exc:
                    self.add_error("webhook_url", f"This webhook URL cannot be used: {exc}.")
            data["emails"] = ""
        return data

"""Writes on API tokens, and the audit of API calls: keyword-only, atomic, audited."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from hubsync import audit
from hubsync.models import Workspace

from .models import DISPLAY_CHARS, ApiToken, hash_token, new_token

# last_used_at is written at most this often per token: a busy script must not turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(Exception):
    """A refused change, with a message meant for the user. Nothing was changed."""


@transaction.atomic
def create_token(*, workspace: Workspace, name: str, role: str, expires_at: datetime | None, actor: Any) -> ApiToken:
    """A new token; its plain value is on the returned instance (`.token`) and nowhere else, ever."""
    name = " ".join(name.split())
    if not name:
        raise TokenError("Give the token a name, e.g. the script or CI job that uses it.")
    if role not in ApiToken.Role.values:
        raise TokenError(f"The role is one of {', '.join(ApiToken.Role.values)}.")
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenError("The expiry date must be in the future.")
    plain = new_token()
    token = ApiToken.objects.create(
        workspace=workspace,
        name=name,
        role=role,
        token_hash=hash_token(plain),
        prefix=plain[:DISPLAY_CHARS],
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        expires_at=expires_at,
    )
    token.token = plain
    audit.record(
        workspace=workspace,
        actor=actor,
        verb="api_token.create",
        obj=token,
        changes={
            "name": name,
            "role": role,
            "prefix": token.prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token


@transaction.atomic
def revoke_token(*, token: ApiToken, actor: Any) -> bool:
    """Revoke at once (the next call with it is a 401). Returns whether it was still unrevoked."""
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is not None:
        return False
    locked.revoked_at = token.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    audit.record(
        workspace=token.workspace,
        actor=actor,
        verb="api_token.revoke",
        obj=token,
        changes={"name": token.name, "prefix": token.prefix},
    )
    return True


def touch(token: ApiToken) -> None:
    """Note that the token was used now (at most once per LAST_USED_RESOLUTION)."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def record_call(*, token: ApiToken, method: str, path: str, status: int) -> None:
    """One audit event per API call that may change something (pages audit their actions the same way; reads
    are not audited, as on the pages). The service the call reached wrote its own event with the change."""
    audit.record(
        workspace=token.workspace,
        actor=token.created_by,
        verb="api.call",
        obj=token,
        changes={"method": method, "path": path[:300], "status": status, "token": token.prefix},
    )

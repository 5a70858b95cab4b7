"""Secrets at rest: a text field encrypted with MultiFernet over HUBSYNC_ENCRYPTION_KEYS (newest first).

The keys are independent of SECRET_KEY so either can be rotated alone. A value that no key decrypts raises
DecryptionError: returning the ciphertext (or an empty string) would let a broken key silently corrupt data.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .redact import redact

PREFIX = "fernet:"


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise DecryptionError("HUBSYNC_ENCRYPTION_KEYS is empty")
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def get_fernet() -> MultiFernet:
    return _multifernet(tuple(settings.HUBSYNC_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return PREFIX + get_fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise DecryptionError("stored secret is not in the encrypted format")
    try:
        return get_fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("no configured encryption key decrypts this secret") from exc


def rotate(stored: str) -> str:
    """Re-encrypt a stored value under the newest key."""
    if not stored.startswith(PREFIX):
        raise DecryptionError("stored secret is not in the encrypted format")
    try:
        return PREFIX + get_fernet().rotate(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("no configured encryption key decrypts this secret") from exc


class EncryptedTextField(models.TextField):
    """Stores `fernet:<token>`; Python side is the plaintext str. Empty string and None pass through."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def to_python(self, value: Any) -> Any:
        # Deserialization (loaddata of a dumpdata file) hands back the ciphertext that value_to_string wrote:
        # decrypt it here, or saving would encrypt the ciphertext a second time.
        if isinstance(value, str) and value.startswith(PREFIX):
            try:
                return decrypt(value)
            except DecryptionError as exc:
                raise ValidationError("This secret cannot be decrypted with the configured keys.") from exc
        return super().to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata, fixtures) gets the ciphertext, never the plaintext.
        value = self.value_from_object(obj)
        return self.get_prep_value(value) or ""


class RedactedTextField(models.TextField):
    """A text column for errors that quote remote answers: credentials are cut out on the way into the database
    (save, update, bulk_create, bulk_update all prepare values through here), so no page has to remember to.

    The column itself is an ordinary text column: migrations see a TextField and have nothing to do."""

    def get_prep_value(self, value: Any) -> Any:

        value = super().get_prep_value(value)
        return redact(value) if isinstance(value, str) and value else value

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs


def models_with(field_class: type[models.Field]) -> list[tuple[type[models.Model], list[str]]]:
    """(model, [field names]) for every concrete, managed model that has fields of `field_class` (the key rotation
    and the redaction commands walk these)."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, field_class)]
        if names:
            found.append((model, names))
    return found

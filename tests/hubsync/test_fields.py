from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from hubsync import fields


def test_roundtrip_and_ciphertext_format():
    stored = fields.encrypt("s3cret-token")
    assert stored.startswith(fields.PREFIX)
    assert "s3cret-token" not in stored
    assert fields.decrypt(stored) == "s3cret-token"


def test_wrong_key_raises_never_returns_ciphertext():
    stored = fields.encrypt("s3cret-token")
    with override_settings(HUBSYNC_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]), pytest.raises(
        fields.DecryptionError
    ):
        fields.decrypt(stored)


def test_rotation_keeps_old_values_readable_and_moves_them_to_new_key(settings):
    old = settings.HUBSYNC_ENCRYPTION_KEYS[0]
    stored = fields.encrypt("value")
    new = Fernet.generate_key().decode()
    settings.HUBSYNC_ENCRYPTION_KEYS = [new, old]
    assert fields.decrypt(stored) == "value"
    rotated = fields.rotate(stored)
    settings.HUBSYNC_ENCRYPTION_KEYS = [new]
    assert fields.decrypt(rotated) == "value"

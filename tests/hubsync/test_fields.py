from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from hubsync import fields
from tests.factories import SourceFactory


def test_roundtrip_and_ciphertext_format():
    stored = fields.encrypt("s3cret-token")
    assert stored.startswith(fields.PREFIX)
    assert "s3cret-token" not in stored
    assert fields.decrypt(stored) == "s3cret-token"


def test_wrong_key_raises_never_returns_ciphertext():
    stored = fields.encrypt("s3cret-token")
    with (
        override_settings(HUBSYNC_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(fields.DecryptionError),
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


# --- the field against a real database ------------------------------------------------------------------
REFRESH = "refresh-6f1c2a9e-plaintext"
ACCESS = "access-0b7d44aa-plaintext"


@pytest.fixture
def source(workspace):

    return SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot", token=REFRESH, access_token=ACCESS)


def raw_columns(source) -> tuple[str, str]:
    from django.db import connection

    table = source._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT token, access_token FROM {table} WHERE id = %s", [source.pk])
        return cursor.fetchone()


def test_database_holds_no_plaintext(source):
    token, access = raw_columns(source)
    for stored, plain in ((token, REFRESH), (access, ACCESS)):
        assert plain not in stored
        assert stored.startswith(fields.PREFIX)
        # The rest is a real Fernet token of the newest key, not some reversible encoding.
        assert fields.decrypt(stored) == plain
    from sources.models import Source

    fresh = Source.objects.get(pk=source.pk)
    assert (fresh.token, fresh.access_token) == (REFRESH, ACCESS)


def test_loading_a_row_with_a_wrong_key_raises(source, settings):
    from sources.models import Source

    settings.HUBSYNC_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(fields.DecryptionError):
        Source.objects.get(pk=source.pk)  # from_db_value: never hands back the ciphertext


def test_tampered_or_plaintext_column_raises(source):
    from django.db import connection

    from sources.models import Source

    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Source._meta.db_table} SET token = %s WHERE id = %s", ["not-encrypted", source.pk])
    with pytest.raises(fields.DecryptionError):
        Source.objects.get(pk=source.pk)


def test_empty_secret_stays_empty(workspace):
    from sources.models import Source

    empty = SourceFactory(workspace=workspace, name="Empty", schema_name="empty")
    assert raw_columns(empty) == ("", "")
    assert Source.objects.get(pk=empty.pk).token == ""


def test_dumpdata_does_not_leak_and_loaddata_round_trips(source, tmp_path):
    import io

    from django.core.management import call_command

    from sources.models import Source

    out = io.StringIO()
    call_command("dumpdata", "sources.Source", indent=1, stdout=out)
    dumped = out.getvalue()
    assert REFRESH not in dumped and ACCESS not in dumped
    assert fields.PREFIX in dumped
    # Loading the dump back gives the same plaintext, not a ciphertext encrypted twice.
    Source.objects.filter(pk=source.pk).update(name="changed")
    fixture = tmp_path / "sources.json"
    fixture.write_text(dumped)
    call_command("loaddata", str(fixture), verbosity=0)
    loaded = Source.objects.get(pk=source.pk)
    assert (loaded.name, loaded.token, loaded.access_token) == ("HubSpot", REFRESH, ACCESS)
    assert raw_columns(loaded)[0].count(fields.PREFIX) == 1

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from hubsync import fields
from hubsync.management.commands.rotate_encryption_keys import encrypted_fields
from sources.models import Source
from tests.factories import SourceFactory


def rotate(**kwargs) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out, **kwargs)
    return out.getvalue()


def _raw(pk: int) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT token FROM {Source._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_finds_encrypted_fields_through_the_app_registry():
    found = {model._meta.label: names for model, names in encrypted_fields()}
    assert found["sources.Source"] == ["token", "access_token"]


@pytest.mark.django_db
def test_rotation_moves_every_secret_to_the_new_key_then_old_key_can_go(workspace, settings):
    old = settings.HUBSYNC_ENCRYPTION_KEYS[0]
    sources = [
        SourceFactory(
            workspace=workspace, name=f"s{i}", schema_name=f"s{i}", token=f"refresh-{i}", access_token=f"acc-{i}"
        )
        for i in range(7)
    ]
    SourceFactory(workspace=workspace, name="no token", schema_name="none")
    before = {s.pk: _raw(s.pk) for s in sources}

    new = Fernet.generate_key().decode()
    settings.HUBSYNC_ENCRYPTION_KEYS = [new, old]
    # Small batches so the batch loop really turns over more than once.
    output = rotate(batch_size=3)
    assert "sources.Source.token: 7 rotated, 0 already current, 1 empty, 0 failed" in output
    assert "total: 14 rotated" in output
    for s in sources:
        assert _raw(s.pk) != before[s.pk]
        assert _raw(s.pk).startswith(fields.PREFIX)

    # Idempotent: a second run finds everything current and writes nothing.
    after = {s.pk: _raw(s.pk) for s in sources}
    assert "total: 0 rotated, 14 already current, 2 empty, 0 failed" in rotate()
    assert {s.pk: _raw(s.pk) for s in sources} == after

    settings.HUBSYNC_ENCRYPTION_KEYS = [new]
    for i, s in enumerate(sources):
        fresh = Source.objects.get(pk=s.pk)
        assert (fresh.token, fresh.access_token) == (f"refresh-{i}", f"acc-{i}")


@pytest.mark.django_db
def test_dry_run_writes_nothing(workspace, settings):
    source = SourceFactory(workspace=workspace, name="s", schema_name="s", token="t")
    before = _raw(source.pk)
    settings.HUBSYNC_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.HUBSYNC_ENCRYPTION_KEYS]
    assert "sources.Source.token: 1 to rotate" in rotate(dry_run=True)
    assert _raw(source.pk) == before


@pytest.mark.django_db
def test_undecryptable_secret_is_reported_by_row_never_by_value(workspace, settings):
    old = settings.HUBSYNC_ENCRYPTION_KEYS[0]
    good = SourceFactory(workspace=workspace, name="good", schema_name="good", token="good-token")
    # A row written with a key nobody kept.
    settings.HUBSYNC_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = SourceFactory(workspace=workspace, name="lost", schema_name="lost", token="lost-token-value")

    new = Fernet.generate_key().decode()
    settings.HUBSYNC_ENCRYPTION_KEYS = [new, old]
    with pytest.raises(CommandError) as excinfo:
        rotate()
    assert f"sources.Source.token pk={lost.pk}" in str(excinfo.value)
    assert "lost-token-value" not in str(excinfo.value)
    # The other rows were still rotated.
    settings.HUBSYNC_ENCRYPTION_KEYS = [new]
    assert Source.objects.get(pk=good.pk).token == "good-token"

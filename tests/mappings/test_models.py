"""Domain model contracts: workspace paths, encrypted write keys, config hash, protected deletes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import ProtectedError
from django.http import Http404
from django.test import RequestFactory

from hubsync.access import get_for_workspace
from mappings.models import DeliveryRun, DeliveryState, Destination, Mapping, ProfileSpace
from models_app.models import DataModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_space(destination) -> ProfileSpace:
    return ProfileSpace.objects.create(destination=destination, name="Prod", write_key="wk_live_abc123", region="us")


def test_every_model_is_fetched_through_its_workspace(workspace, other_workspace, mapping):
    run = DeliveryRun.objects.create(mapping=mapping, status="succeeded")
    state = DeliveryState.objects.create(mapping=mapping, object_id=1)
    request = RequestFactory().get("/")
    for obj in (mapping.data_model, mapping.destination, mapping.profile_space, mapping, run):
        request.workspace = workspace
        assert get_for_workspace(request, type(obj), pk=obj.pk) == obj
        request.workspace = other_workspace
        with pytest.raises(Http404):
            get_for_workspace(request, type(obj), pk=obj.pk)
    assert DeliveryState.objects.filter(mapping__destination__workspace=workspace).get() == state


def test_write_key_is_encrypted_at_rest(other_space):
    space = other_space
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT write_key FROM {ProfileSpace._meta.db_table} WHERE id = %s", [space.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "wk_live_abc123" not in stored
    assert ProfileSpace.objects.get(pk=space.pk).write_key == "wk_live_abc123"


def test_config_hash_follows_what_shapes_the_payload(mapping, other_space):
    base = mapping.config_hash()
    mapping.enabled = not mapping.enabled
    mapping.name = "renamed"
    assert mapping.config_hash() == base  # not part of any message
    for change in (
        {"traits": [*mapping.traits, ["company", "company"]]},
        {"identifiers": {"user_id": None, "anonymous_id": "email"}},
        {"options": {"empty_values": "omit"}},
        {"action": "group"},
        {"profile_space": other_space},
        {"resync_generation": 1},
    ):
        edited = Mapping.objects.get(pk=mapping.pk)
        for field, value in change.items():
            setattr(edited, field, value)
        assert edited.config_hash() != base, change
    assert mapping.config_hash({"email": {"type": "number"}}) != base  # a property's type changed in HubSpot


def test_models_and_spaces_used_by_a_mapping_cannot_be_deleted(mapping):
    with pytest.raises(ProtectedError):
        mapping.data_model.delete()
    with pytest.raises(ProtectedError):
        mapping.profile_space.delete()


def test_data_model_columns_start_with_the_system_columns(contacts_model):
    assert contacts_model.all_columns[:3] == ["id", "created_at", "updated_at"]
    assert DataModel.workspace_path == "source__workspace"
    assert Destination.Kind.SEGMENT_PROFILES == "segment_profiles"

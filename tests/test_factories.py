"""The factories build valid rows whose related objects agree (one workspace per mapping)."""

from __future__ import annotations

import pytest

from hubsync.models import Role
from tests.factories import (
    PASSWORD,
    AlertChannelFactory,
    DeliveryRunFactory,
    DeliveryStateFactory,
    MembershipFactory,
    RecordFactory,
    SourceCollectionFactory,
    SyncRunFactory,
)

pytestmark = pytest.mark.django_db


def test_a_mapping_chain_shares_one_workspace():
    run = DeliveryRunFactory()
    mapping = run.mapping
    workspace = mapping.data_model.source.workspace
    assert mapping.destination.workspace == workspace
    assert mapping.profile_space.destination == mapping.destination
    assert not mapping.enabled  # the model's default, as Mapping.objects.create would leave it
    state = DeliveryStateFactory(mapping=mapping)
    assert state.status == "pending"


def test_sources_records_and_runs():
    collection = SourceCollectionFactory()
    source = collection.source
    assert not source.enabled and source.token == ""
    first, second = RecordFactory(source=source), RecordFactory(source=source)
    assert second.object_id == first.object_id + 1 and first.change_seq == first.object_id
    assert SyncRunFactory(source=source).status == "queued"


def test_members_log_in_and_channels_belong_to_their_workspace(client):
    membership = MembershipFactory(role=Role.ADMIN)
    assert client.login(username=membership.user.username, password=PASSWORD)
    channel = AlertChannelFactory(workspace=membership.workspace, emails="ops@example.test")
    assert channel.workspace.memberships.get().role == Role.ADMIN

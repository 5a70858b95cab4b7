"""factory-boy factories for the domain objects tests build.

A factory fills in what the model has no default for (names, a workspace, a source, ...), and nothing else: a field
the model defaults (enabled=False, status, counts, tokens) keeps its model default, so `SourceFactory(name="X")`
builds the row `Source.objects.create(name="X", workspace=..., schema_name=...)` would. Related objects a test
does not pass are made by the factory (a new workspace, source, destination, ...): pass them when the test's
objects must share one, e.g. `MappingFactory(destination=dest, data_model=model, profile_space=space)`.
"""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from hubsync.models import AlertChannel, Membership, Role, Workspace
from mappings.models import DeliveryRun, DeliveryState, Destination, Mapping, ProfileSpace
from models_app.models import DataModel
from sources.models import Record, Source, SourceCollection, SyncRun

PASSWORD = "correct horse battery staple"


class WorkspaceFactory(DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")


class UserFactory(DjangoModelFactory):
    """A user who can log in with PASSWORD (through the manager's create_user, so the password is hashed)."""

    class Meta:
        model = get_user_model()

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    username = factory.LazyAttribute(lambda o: o.email)
    password = PASSWORD

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        return model_class._default_manager.create_user(*args, **kwargs)


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    workspace = factory.SubFactory(WorkspaceFactory)
    role = Role.VIEWER


class SourceFactory(DjangoModelFactory):
    class Meta:
        model = Source

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Portal {n}")
    schema_name = factory.Sequence(lambda n: f"portal_{n}")


class SourceCollectionFactory(DjangoModelFactory):
    class Meta:
        model = SourceCollection

    source = factory.SubFactory(SourceFactory)
    collection = "contacts"


class RecordFactory(DjangoModelFactory):
    """A mirror row. change_seq follows object_id unless given (tests order changes by it)."""

    class Meta:
        model = Record

    source = factory.SubFactory(SourceFactory)
    collection = "contacts"
    object_id = factory.Sequence(lambda n: n + 1)
    content_hash = "h"
    change_seq = factory.LazyAttribute(lambda o: o.object_id)


class DataModelFactory(DjangoModelFactory):
    class Meta:
        model = DataModel

    source = factory.SubFactory(SourceFactory)
    collection = "contacts"
    name = factory.Sequence(lambda n: f"Model {n}")


class DestinationFactory(DjangoModelFactory):
    class Meta:
        model = Destination

    workspace = factory.SubFactory(WorkspaceFactory)
    name = "Segment"


class ProfileSpaceFactory(DjangoModelFactory):
    class Meta:
        model = ProfileSpace

    destination = factory.SubFactory(DestinationFactory)
    name = factory.Sequence(lambda n: f"Space {n}")
    write_key = "wk"


class MappingFactory(DjangoModelFactory):
    """A mapping whose destination, model and space share one workspace (the model's source's)."""

    class Meta:
        model = Mapping

    data_model = factory.SubFactory(DataModelFactory)
    destination = factory.SubFactory(
        DestinationFactory, workspace=factory.SelfAttribute("..data_model.source.workspace")
    )
    profile_space = factory.SubFactory(ProfileSpaceFactory, destination=factory.SelfAttribute("..destination"))


class SyncRunFactory(DjangoModelFactory):
    class Meta:
        model = SyncRun

    source = factory.SubFactory(SourceFactory)
    trigger = SyncRun.Trigger.MANUAL


class DeliveryRunFactory(DjangoModelFactory):
    class Meta:
        model = DeliveryRun

    mapping = factory.SubFactory(MappingFactory)


class DeliveryStateFactory(DjangoModelFactory):
    class Meta:
        model = DeliveryState

    mapping = factory.SubFactory(MappingFactory)
    object_id = factory.Sequence(lambda n: n + 1)


class AlertChannelFactory(DjangoModelFactory):
    class Meta:
        model = AlertChannel

    workspace = factory.SubFactory(WorkspaceFactory)
    kind = AlertChannel.Kind.EMAIL
    name = factory.Sequence(lambda n: f"Channel {n}")

"""Shared fixtures: one per role (owner, admin, viewer, outsider) and logged-in clients for each."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from hubsync.models import Membership, Role, Workspace

pytest_plugins = ["tests.fixtures_sandbox"]

PASSWORD = "correct horse battery staple"


def make_user(email: str):
    return get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)


@pytest.fixture
def workspace(db) -> Workspace:
    return Workspace.objects.create(name="Acme")


@pytest.fixture
def other_workspace(db) -> Workspace:
    return Workspace.objects.create(name="Globex")


def _member(workspace: Workspace, email: str, role: str):
    user = make_user(email)
    Membership.objects.create(user=user, workspace=workspace, role=role)
    return user


@pytest.fixture
def owner(workspace):
    return _member(workspace, "owner@acme.test", Role.OWNER)


@pytest.fixture
def admin_user(workspace):
    return _member(workspace, "admin@acme.test", Role.ADMIN)


@pytest.fixture
def viewer(workspace):
    return _member(workspace, "viewer@acme.test", Role.VIEWER)


@pytest.fixture
def outsider(other_workspace):
    """Owner of another workspace: must never see or change Acme's objects."""
    return _member(other_workspace, "owner@globex.test", Role.OWNER)


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return _client_for(owner)


@pytest.fixture
def admin_client_(admin_user) -> Client:
    return _client_for(admin_user)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return _client_for(viewer)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return _client_for(outsider)

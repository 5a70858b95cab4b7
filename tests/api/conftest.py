"""API fixtures: tokens per role (admin, read-only) of the Acme workspace, one of another workspace, an expired
and a revoked one, and a client that sends a token as `Authorization: Bearer`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from api import services
from api.models import ApiToken


class ApiClient:
    """Django's test client with a bearer token and JSON bodies."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, body: Any = None, **params: Any):
        kwargs: dict[str, Any] = {"headers": self._headers()}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        elif params:
            kwargs["data"] = params
        return getattr(self.client, method.lower())(path, **kwargs)

    def get(self, path: str, **params: Any):
        return self.request("get", path, **params)

    def post(self, path: str, body: Any = None):
        return self.request("post", path, body if body is not None else {})

    def patch(self, path: str, body: Any):
        return self.request("patch", path, body)

    def delete(self, path: str):
        return self.request("delete", path)


def make_token(workspace, user, role: str = ApiToken.Role.ADMIN, **kwargs: Any) -> ApiToken:
    return services.create_token(
        workspace=workspace, name=f"{role} token", role=role, actor=user, **{"expires_at": None, **kwargs}
    )


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()
    yield


@pytest.fixture
def admin_token(workspace, owner) -> ApiToken:
    return make_token(workspace, owner, ApiToken.Role.ADMIN)


@pytest.fixture
def read_token(workspace, owner) -> ApiToken:
    return make_token(workspace, owner, ApiToken.Role.READ_ONLY)


@pytest.fixture
def other_token(other_workspace, outsider) -> ApiToken:
    return make_token(other_workspace, outsider, ApiToken.Role.ADMIN)


@pytest.fixture
def expired_token(workspace, owner) -> ApiToken:
    token = make_token(workspace, owner, ApiToken.Role.ADMIN, expires_at=timezone.now() + timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return token


@pytest.fixture
def revoked_token(workspace, owner) -> ApiToken:
    token = make_token(workspace, owner, ApiToken.Role.ADMIN)
    services.revoke_token(token=token, actor=owner)
    return token


@pytest.fixture
def api(admin_token) -> ApiClient:
    return ApiClient(admin_token.token)


@pytest.fixture
def api_read(read_token) -> ApiClient:
    return ApiClient(read_token.token)


@pytest.fixture
def api_other(other_token) -> ApiClient:
    return ApiClient(other_token.token)

"""Reusable fixtures for the Segment sandbox (registered in tests/conftest.py through pytest_plugins).

`segment_sandbox` serves the sandbox with pytest-django's live_server and gives a small helper around it: the
API base to hand to a Segment client (`base_url`, which ends in /sandbox/segment, so a client posts to
base_url + "/v1/batch"), the default write key, raw posting, and readers for the inbox JSON (messages,
discards, profiles, accounts, counts) and the fault knobs. Everything goes over real HTTP.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from sandbox.segment.models import DEFAULT_WRITE_KEY, SegmentWorkspace


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@dataclass
class SegmentSandbox:
    base_url: str
    write_key: str = DEFAULT_WRITE_KEY
    session: requests.Session = field(default_factory=requests.Session)

    # --- sending -------------------------------------------------------------------------------------------
    def post(
        self,
        endpoint: str,
        body: Any = None,
        *,
        write_key: str | None = None,
        auth: str = "basic",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST to /v1/<endpoint>. auth="basic" sends the Authorization header, "body" puts writeKey in the body,
        "none" sends neither. `raw` sends those bytes as they are."""
        key = write_key or self.write_key
        sent_headers = {"Content-Type": "application/json"}
        if auth == "basic":
            sent_headers["Authorization"] = basic_auth(key)
        if raw is None:
            if auth == "body" and isinstance(body, dict):
                body = {**body, "writeKey": key}
            raw = json.dumps(body).encode()
        sent_headers.update(headers or {})
        return self.session.post(f"{self.base_url}/v1/{endpoint}", data=raw, headers=sent_headers, timeout=30)

    def batch(self, messages: list[dict[str, Any]], **kwargs: Any) -> requests.Response:
        return self.post("batch", {"batch": messages}, **kwargs)

    # --- reading -------------------------------------------------------------------------------------------
    def inbox(self, view: str = "messages", *, write_key: str | None = None, **params: Any) -> dict[str, Any]:
        response = self.session.get(
            f"{self.base_url}/inbox/{write_key or self.write_key}.json", params={"view": view, **params}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def messages(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.inbox("messages", page_size=5000, **kwargs)["results"]

    def discards(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.inbox("discards", page_size=5000, **kwargs)["results"]

    def profiles(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.inbox("profiles", page_size=5000, **kwargs)["results"]

    def accounts(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.inbox("accounts", page_size=5000, **kwargs)["results"]

    def profile(self, user_id: str, **kwargs: Any) -> dict[str, Any] | None:
        found = self.inbox("profiles", user_id=user_id, **kwargs)["results"]
        return found[0] if found else None

    def counts(self, **kwargs: Any) -> dict[str, Any]:
        return self.inbox("messages", page_size=1, **kwargs)["counts"]

    # --- control -------------------------------------------------------------------------------------------
    def set_knobs(self, *, write_key: str | None = None, **knobs: Any) -> dict[str, Any]:
        """error_rate, rate_limit_rate (0..1), retry_after (s), latency_ms."""
        response = self.session.post(
            f"{self.base_url}/inbox/{write_key or self.write_key}/knobs.json", json=knobs, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def clear(self, *, write_key: str | None = None) -> None:
        response = self.session.post(f"{self.base_url}/inbox/{write_key or self.write_key}/clear.json", timeout=30)
        response.raise_for_status()

    def check(self, write_key: str) -> int:
        response = self.session.get(
            f"{self.base_url}/v1/_check", headers={"Authorization": basic_auth(write_key)}, timeout=30
        )
        return response.status_code

    def new_workspace(self, name: str = "Second space") -> str:
        return SegmentWorkspace.objects.create(name=name).write_key

    def with_workspace(self, name: str = "Test space") -> SegmentSandbox:
        """The same sandbox, addressed through a fresh workspace (own inbox, knobs and dedup memory)."""
        return SegmentSandbox(base_url=self.base_url, write_key=self.new_workspace(name), session=self.session)


@pytest.fixture
def segment_sandbox(live_server) -> SegmentSandbox:
    """The Segment sandbox on a live server, its default workspace's write key, and inbox helpers."""
    from sandbox.segment.models import get_default_workspace

    get_default_workspace()  # the flush between live_server tests removes what the data migration made
    sandbox = SegmentSandbox(base_url=live_server.url + "/sandbox/segment")
    yield sandbox
    sandbox.session.close()

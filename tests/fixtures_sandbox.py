"""Fixtures for tests that talk to the HubSpot sandbox over real HTTP.

    def test_something(hubspot_sandbox):
        tok = hubspot_sandbox.token(portal=1001, scopes=["crm.objects.contacts.read"])
        r = requests.get(hubspot_sandbox.base_url + "/crm/v3/objects/contacts",
                         headers={"Authorization": f"Bearer {tok['access_token']}"})

`hubspot_sandbox` runs the sandbox in pytest-django's live_server (same test database, so the test can also use
the ORM; live_server makes the test transactional). Knobs are reset to their defaults and rate-limit counters
cleared before each test. Faults, limits and data are changed with `set_knobs(...)`, `mutate(...)`,
`purge(...)`, `seed(...)`, `add_property(...)`, `delete_property(...)`.

Point the product's HubSpot client at it with settings HUBSPOT_API_BASE = hubspot_sandbox.base_url and
HUBSPOT_AUTHORIZE_URL = hubspot_sandbox.authorize_url (client id / secret: settings.SANDBOX_HUBSPOT_CLIENT_ID /
SECRET, token path /oauth/v1/token).

To run the sandbox as its own process instead (benchmarks, or code that must not share the test process):

    with sandbox_process() as base:            # "http://127.0.0.1:PORT"; uses the current test database
        requests.get(base + "/sandbox/hubspot/crm/v3/objects/contacts", ...)

which runs `python manage.py sandbox_serve --port 0` with the environment pointed at the test database.
Data written from the test must be committed to be seen there (use transactional_db / live_server), and the
process keeps its own rate-limit counters.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

HUBSPOT_READ_SCOPES = [
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.companies.read",
    "crm.objects.deals.read",
    "tickets",
    "crm.objects.owners.read",
]
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class HubSpotSandbox:
    """Handle on a running HubSpot sandbox: URLs, token minting, knobs and data changes."""

    server_url: str  # e.g. http://127.0.0.1:40123
    # True when the sandbox runs in another process: knobs and rate-limit counters are then changed over HTTP,
    # so they apply at once there (instead of after that process's 1-second cache).
    remote: bool = False

    @property
    def base_url(self) -> str:
        """The API base (what HUBSPOT_API_BASE would be): CRM at base_url + "/crm/v3/..."."""
        return self.server_url + "/sandbox/hubspot"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/oauth/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth/v1/token"

    client_id = settings.SANDBOX_HUBSPOT_CLIENT_ID
    client_secret = settings.SANDBOX_HUBSPOT_CLIENT_SECRET

    # --- tokens ----------------------------------------------------------------------------------------
    def token(self, portal: int = 1001, scopes: list[str] | None = None, lifetime: int | None = None) -> dict:
        """Token endpoint body (access_token, refresh_token, expires_in, ...) without the browser flow.
        A negative lifetime gives an already expired access token."""
        from sandbox.hubspot.api import issue_tokens
        from sandbox.hubspot.portals import get_portal

        p = get_portal(portal)
        assert p is not None, f"no sandbox portal {portal}"
        return issue_tokens(
            portal=p,
            scopes=list(scopes if scopes is not None else HUBSPOT_READ_SCOPES),
            client_id=self.client_id,
            lifetime=lifetime,
        )

    def access_token(self, portal: int = 1001, scopes: list[str] | None = None, lifetime: int | None = None) -> str:
        return self.token(portal, scopes, lifetime)["access_token"]

    def headers(self, portal: int = 1001, scopes: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(portal, scopes)}"}

    def auth_code(
        self,
        portal: int = 1001,
        scopes: list[str] | None = None,
        redirect_uri: str = "",
        code_challenge: str = "",
        code_challenge_method: str = "",
    ) -> str:
        """An authorization code as the consent screen would issue it."""
        from sandbox.hubspot.oauth import issue_code
        from sandbox.hubspot.portals import get_portal

        return issue_code(
            portal=get_portal(portal),
            client_id=self.client_id,
            redirect_uri=redirect_uri or "http://localhost/callback",
            scopes=list(scopes if scopes is not None else HUBSPOT_READ_SCOPES),
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )

    def token_via_code(self, code: str, redirect_uri: str, code_verifier: str = "") -> dict:
        """Exchange an authorization code at the token endpoint over HTTP (as a client would)."""
        import requests

        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if code_verifier:
            form["code_verifier"] = code_verifier
        resp = requests.post(self.token_url, data=form, timeout=30)
        resp.raise_for_status()
        return resp.json()

    # --- knobs -----------------------------------------------------------------------------------------
    def set_knobs(self, **values: Any):
        """Change realism knobs (fields of sandbox.hubspot.models.Knobs); applies to the next request."""
        from sandbox.hubspot.models import Knobs

        if self.remote:
            return self._post_knobs(values)
        knobs = Knobs.load()
        for key, value in values.items():
            if not hasattr(knobs, key):
                raise AttributeError(f"unknown knob {key}")
            setattr(knobs, key, value)
        knobs.save()
        return knobs

    def _post_knobs(self, values: dict[str, Any]) -> dict:
        import requests

        resp = requests.post(self.base_url + "/_api/knobs", json=values, timeout=30)
        if resp.status_code != 200:
            raise AttributeError(resp.text)
        return resp.json()

    def reset(self) -> None:
        """Default knobs (limits on, faults off) and empty rate-limit counters."""
        from sandbox.hubspot.models import Knobs
        from sandbox.hubspot.realism import reset_rate_limits
        from sandbox.hubspot.views import KNOB_FIELDS

        Knobs.objects.all().delete()
        defaults = Knobs.load()
        reset_rate_limits()
        if self.remote:
            self._post_knobs({**{name: getattr(defaults, name) for name in KNOB_FIELDS}, "reset_counters": True})

    def reset_rate_limits(self) -> None:
        from sandbox.hubspot.realism import reset_rate_limits

        reset_rate_limits()
        if self.remote:
            self._post_knobs({"reset_counters": True})

    # --- data ------------------------------------------------------------------------------------------
    def portal(self, hub_id: int = 1001):
        from sandbox.hubspot.portals import get_portal

        return get_portal(hub_id)

    def seed(self, portal: int = 1001, **sizes: Any):
        """Create or resize a portal: seed(2001, contacts=1_000_000, seed=7). Wipes that portal's changes."""
        from sandbox.hubspot.portals import seed_portal

        return seed_portal(hub_id=portal, **sizes)

    def mutate(self, portal: int = 1001, collection: str = "contacts", **kwargs: Any):
        """create=N, update=N, archive=N, purge=N, purge_archived=N, same_timestamp=bool, seed=int, at_ms=int
        -> MutationResult (ids as strings; `purged` = permanently deleted)."""
        from sandbox.hubspot.mutate import mutate

        return mutate(portal=self.portal(portal), collection=collection, **kwargs)

    def purge(self, ids, portal: int = 1001, collection: str = "contacts") -> list[int]:
        """Permanently delete records by id (HubSpot's GDPR / permanent delete); returns the ids now gone."""
        from sandbox.hubspot.mutate import purge_records

        return purge_records(portal=self.portal(portal), collection=collection, ids=[int(i) for i in ids])

    def set_properties(
        self,
        object_id: int | str,
        properties: dict,
        portal: int = 1001,
        collection: str = "contacts",
        at_ms: int | None = None,
    ):
        from sandbox.hubspot.mutate import set_properties

        return set_properties(
            portal=self.portal(portal),
            collection=collection,
            object_id=int(object_id),
            properties=properties,
            at_ms=at_ms,
        )

    def add_property(self, name: str, portal: int = 1001, collection: str = "contacts", **kwargs: Any):
        from sandbox.hubspot.mutate import add_property

        return add_property(portal=self.portal(portal), collection=collection, name=name, **kwargs)

    def add_properties(self, count: int, portal: int = 1001, collection: str = "contacts") -> list[str]:
        """Add `count` custom properties (300 make a GET URL listing them all longer than 8,000 characters)."""
        from sandbox.hubspot.mutate import add_many_properties

        return add_many_properties(portal=self.portal(portal), collection=collection, count=count)

    def delete_property(self, name: str, portal: int = 1001, collection: str = "contacts") -> None:
        from sandbox.hubspot.mutate import delete_property

        delete_property(portal=self.portal(portal), collection=collection, name=name)


@pytest.fixture
def hubspot_sandbox(live_server) -> Iterator[HubSpotSandbox]:
    from django.db import connections

    # live_server's request threads live as long as the client's keep-alive connection; with persistent DB
    # connections they would still hold a session when the test database is dropped.
    db_settings = connections.settings["default"]
    old_max_age = db_settings.get("CONN_MAX_AGE", 0)
    db_settings["CONN_MAX_AGE"] = 0
    sandbox = HubSpotSandbox(live_server.url)
    sandbox.reset()
    try:
        yield sandbox
    finally:
        sandbox.reset_rate_limits()
        db_settings["CONN_MAX_AGE"] = old_max_age


@pytest.fixture
def hubspot_sandbox_process(transactional_db) -> Iterator[HubSpotSandbox]:
    """Like hubspot_sandbox, but served by a `sandbox_serve` subprocess (gunicorn) on the test database: for
    tests whose HubSpot client runs in another process too (a Celery worker), or that need gunicorn's behaviour."""
    with sandbox_process() as root:
        sandbox = HubSpotSandbox(str(root), remote=True)
        sandbox.reset()
        yield sandbox


def sandbox_env() -> dict[str, str]:
    """Environment for a sandbox_serve subprocess that uses the database the tests use right now."""
    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env.pop("DATABASE_URL", None)
        env["HUBSYNC_SQLITE_PATH"] = str(db["NAME"])
    else:
        user = db.get("USER") or ""
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        env["DATABASE_URL"] = f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    env["SANDBOX"] = "1"
    # (not settings.DEBUG: the test runner forces it off, and the environment already says what we run with)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SandboxProcess(str):
    """The root URL of a sandbox_serve subprocess (a str), with its process id."""

    pid: int


@contextlib.contextmanager
def sandbox_process(port: int = 0, threads: int = 8, timeout: float = 30.0) -> Iterator[SandboxProcess]:
    """Run `manage.py sandbox_serve` in a subprocess; yields its root URL (http://127.0.0.1:PORT)."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "sandbox_serve", "--port", str(port), "--threads", str(threads)],
        cwd=ROOT,
        env=sandbox_env(),
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                if line.startswith("sandbox listening on "):
                    url = line.split(" on ", 1)[1].strip()
                    break
        if url is None:
            raise RuntimeError("sandbox_serve did not start")
        handle = SandboxProcess(url)
        handle.pid = proc.pid
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""A bounded fuzz of every URL pattern (invariant 5: bad input gets a clear 4xx, never a 500).

Every named route of the project, allauth and the sandbox (the Django admin is left out: staff only, Django's own)
is filled with real objects of the workspace (the URL walk's builder, tests/hubsync/test_url_walk.py) and sent,
as the workspace's owner (the role that reaches the most code):

* GETs whose query parameters (every field name the page's forms use, plus common ones like `next`) carry
  hostile values: NUL bytes, over-long text, odd unicode, negative / huge / non-finite numbers, impossible dates,
  header-breaking newlines, non-path `next` values (`https://evil.example`, `//evil.example`, a URL name);
* form POSTs with each hostile value in every field, and one with every field duplicated;
* JSON POSTs: non-object bodies, deeply nested arrays, invalid JSON, NUL escapes, huge numbers;
* for string path parameters (invitation tokens, write keys, sandbox object ids): NUL, over-long and unicode
  values in the path itself.

A request fails the test when the view raised (got_request_exception) or answered 500, and when a redirect
leaves for a host given in the input (an open redirect). The sandbox's simulated faults (its knobs may switch
random 5xx on) are answers, not crashes: there only raised exceptions count. Outgoing HTTP is refused at the
socket boundary so no request leaves the machine. The number of requests is printed (run with -s to see it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.core.signals import got_request_exception
from django.db import transaction
from django.test import Client
from django.urls import NoReverseMatch, reverse

from tests.hubsync.test_url_walk import ROUTES, Route, _Builder, _candidates, _is_int

HOSTILE = [
    "a\x00b",
    "x" * 1200,  # over every CharField's max_length
    "Zoë 😀 \u202e\ufeff\u0301 ǅ\r\nBcc: victim@evil.example",
    "-1",
    "99999999999999999999999999",
    "1e309",
    "2026-02-31",
    "https://evil.example/",
    "//evil.example",
    "dashboard",  # a URL name, not a path
    "",
]
# Query / form names sent to every route besides those its page's forms use.
COMMON_FIELDS = [
    "next", "q", "query", "page", "since", "until", "reason", "object_id", "collection", "state", "code", "error",
    "name", "email", "role", "action", "workspace", "form", "op", "sample_size", "latency_ms", "token", "id",
]  # fmt: skip
JSON_BODIES = [
    b"[]",
    b"1",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b"{not json",
    json.dumps({"latency_ms": 10**30}).encode(),
    json.dumps({"collection": "contacts", "create": 10**30, "update": float("inf"), "error_rate": "1e309"}).encode(),
]
# Values for string / regex path parameters that name something real (besides the hostile ones tried too).
PATH_DEFAULTS = {"otype": "contacts", "object_id": "1", "name": "email", "owner_id": "1", "endpoint": "batch"}
HOSTILE_PATH = ["a\x00b", "y" * 3000, "Zoë😀"]
EVIL = "evil.example"


def _kwargs_of(route: Route) -> list[str]:
    return [a or b for a, b in re.findall(r"<(?:[^>:]+:)?([^>]+)>|\(\?P<([^>]+)>", route.route)]


class Fuzzer:
    def __init__(self, client: Client, objects: dict, extra: dict[str, str]) -> None:
        self.client = client
        self.objects = objects
        self.extra = extra
        self.requests = 0
        self.failures: list[str] = []
        self._raised: list[BaseException] = []
        self.timings: dict[str, float] = {}

    def _on_exception(self, sender: Any, request: Any = None, **kwargs: Any) -> None:
        import sys

        self._raised.append(sys.exc_info()[1])

    def send(self, route: Route, method: str, url: str, what: str, **kwargs: Any) -> Any:
        self._raised.clear()
        self.requests += 1
        # Every request is undone afterwards (a savepoint): requests stay independent, and a database error a
        # view did not handle (PostgreSQL then refuses every further query) cannot break the rest of the walk.
        savepoint = transaction.savepoint()
        try:
            response = getattr(self.client, method)(url, **kwargs)
        finally:
            transaction.get_connection().needs_rollback = False  # else Django refuses the rollback itself
            transaction.savepoint_rollback(savepoint)
        sandbox = route.route.startswith("sandbox/")
        crashed = self._raised or (response.status_code == 500 and not sandbox)
        if crashed:
            cause = repr(self._raised[0])[:200] if self._raised else ""
            self.failures.append(f"{method.upper()} {url[:120]} {what} -> {response.status_code} {cause}")
        location = response.get("Location", "") if 300 <= response.status_code < 400 else ""
        # Where a browser would go: another host is an open redirect (a relative path never is).
        target = urlsplit(urljoin("http://testserver" + url, location.replace("\\", "/"))).hostname or ""
        if location and EVIL in target:
            self.failures.append(f"{method.upper()} {url[:120]} {what} -> open redirect to {location[:80]}")
        return response

    def urls(self, route: Route) -> list[str]:
        names = _kwargs_of(route)
        values: dict[str, Any] = {}
        for name in names:
            conv = route.converters.get(name)
            if conv is not None and _is_int(conv):
                values[name] = _candidates(route, name, self.objects)[0]
            else:
                values[name] = self.extra.get(name, PATH_DEFAULTS.get(name, "x"))
        urls = []
        try:
            urls.append(reverse(route.name, kwargs=values))
        except NoReverseMatch:
            return []
        for name in names:
            conv = route.converters.get(name)
            if conv is not None and _is_int(conv):
                continue
            for bad in HOSTILE_PATH:
                # A pattern that refuses the value never reaches a view (the resolver answers 404).
                with contextlib.suppress(NoReverseMatch):
                    urls.append(reverse(route.name, kwargs={**values, name: bad}))
        return urls

    def fields(self, response: Any) -> list[str]:
        found = re.findall(r'name="([^"]+)"', response.content.decode(errors="replace")) if response.content else []
        names = [n for n in dict.fromkeys(found + COMMON_FIELDS) if n != "csrfmiddlewaretoken"]
        return names[:40]

    def fuzz(self, route: Route) -> None:
        started = time.monotonic()
        try:
            self._fuzz(route)
        finally:
            self.timings[route.name] = time.monotonic() - started

    def _fuzz(self, route: Route) -> None:
        urls = self.urls(route)
        if not urls:
            return
        main, *odd = urls
        for url in odd:
            self.send(route, "get", url, "(hostile path)")
            self.send(route, "post", url, "(hostile path)", data={"next": "//evil.example"})
        page = self.send(route, "get", main, "(page)")
        names = self.fields(page)
        # A method the view refuses (405) is refused whatever the input: no need to send it every value.
        gets = page.status_code != 405
        posts = self.send(route, "post", main, "(empty form)").status_code != 405
        for value in HOSTILE:
            if gets:
                self.send(route, "get", main, f"(query {value!r:.40})", data=dict.fromkeys(names, value[:300]))
            if posts:
                self.send(route, "post", main, f"(form {value!r:.40})", data=dict.fromkeys(names, value))
        if not posts:
            return
        self.send(route, "post", main, "(duplicated fields)", data={n: ["1", "2"] for n in names})
        # Every JSON body for views that read one (CSRF-exempt APIs, the sandbox); one for form views.
        reads_json = route.route.startswith("sandbox/") or getattr(route.callback, "csrf_exempt", False)
        for body in JSON_BODIES if reads_json else JSON_BODIES[:1]:
            self.send(route, "post", main, f"(json {body[:30]!r})", data=body, content_type="application/json")


def _order(route: Route) -> tuple[int, str]:
    # Routes that delete or log out last, so the others still find their objects and session.
    late = any(word in route.name for word in ("delete", "remove", "revoke", "logout"))
    return (1 if late else 0, route.name)


FUZZED = sorted(
    (r for r in ROUTES if r.name and not r.route.startswith(("admin/", "static/"))),
    key=_order,
)


@pytest.fixture
def no_network(monkeypatch):
    """Nothing leaves the machine: every outgoing connection (HubSpot, Segment, webhooks) is refused."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError("network disabled in the fuzz test")

    monkeypatch.setattr("requests.adapters.HTTPAdapter.send", refuse)

    def refuse_socket(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("network disabled in the fuzz test")

    monkeypatch.setattr(socket, "create_connection", refuse_socket)

    # The broker is outside too: a worker ping that nobody answers would wait its whole timeout on every
    # request of /healthz and the dashboard's workers panel (their own tests cover how long that may take).
    from hubsync.celery import app

    monkeypatch.setattr(app.control, "ping", lambda *args, **kwargs: [])


@pytest.mark.django_db
@pytest.mark.timeout(240)
def test_no_500_on_hostile_input(workspace, owner, viewer, settings, no_network, monkeypatch):
    from hubsync.models import Invitation
    from sandbox.segment.models import SegmentWorkspace

    settings.HUBSYNC_DISABLE_RATE_LIMITS = True
    settings.ACCOUNT_RATE_LIMITS = False
    # Sandbox latency knobs must not make the walk sleep (their bounds are tested in the sandbox's tests).
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    objects = _Builder(workspace, owner).build_all()
    invitation = Invitation.objects.create(workspace=workspace, email="fuzz-invitee@acme.test", invited_by=owner)
    segment = SegmentWorkspace.objects.create(name="fuzz")
    extra = {"token": getattr(invitation, "raw_token", None) or invitation.token, "write_key": segment.write_key,
             "token_value": "x"}  # fmt: skip
    client = Client(raise_request_exception=False)
    fuzzer = Fuzzer(client, objects, extra)
    got_request_exception.connect(fuzzer._on_exception)
    logging.disable(logging.CRITICAL)  # thousands of 4xx warnings; crashes are collected by the signal instead
    try:
        for route in FUZZED:
            client.force_login(owner)
            fuzzer.fuzz(route)
    finally:
        got_request_exception.disconnect(fuzzer._on_exception)
        logging.disable(logging.NOTSET)
    slowest = sorted(fuzzer.timings.items(), key=lambda kv: -kv[1])[:8]
    print("\nslowest routes:", ", ".join(f"{n} {t:.1f}s" for n, t in slowest))
    print(f"fuzz: {len(FUZZED)} routes, {fuzzer.requests} requests, {len(fuzzer.failures)} server errors")
    assert fuzzer.requests > 2000, "the fuzz shrank: routes or values went missing"
    assert not fuzzer.failures, "\n".join(fuzzer.failures[:80])

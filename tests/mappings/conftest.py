"""Fixtures for the delivery engine: a source with a mirror filled directly through the ORM (the HubSpot side is
tested elsewhere), a Segment Profiles destination whose profile space is the sandbox's default workspace, and a
mapping. Deliveries go over real HTTP to the sandbox served by live_server."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db.models import Max

from mappings.models import Destination, Mapping, ProfileSpace
from mappings.segment import close_session
from models_app.models import DataModel
from sources.models import Record, Source, SourceCollection

CONTACT_SCHEMA = {
    "email": {"type": "string", "fieldType": "text", "label": "Email", "groupName": "contactinformation"},
    "firstname": {"type": "string", "fieldType": "text", "label": "First name", "groupName": "contactinformation"},
    "lastname": {"type": "string", "fieldType": "text", "label": "Last name", "groupName": "contactinformation"},
    "company": {"type": "string", "fieldType": "text", "label": "Company", "groupName": "contactinformation"},
    "num_employees": {"type": "number", "fieldType": "number", "label": "Employees", "groupName": "x"},
    "score": {"type": "number", "fieldType": "number", "label": "Score", "groupName": "x"},
    "is_customer": {"type": "bool", "fieldType": "booleancheckbox", "label": "Customer", "groupName": "x"},
    "signup": {"type": "datetime", "fieldType": "date", "label": "Signed up", "groupName": "x"},
    "birthday": {"type": "date", "fieldType": "date", "label": "Birthday", "groupName": "x"},
    "interests": {"type": "enumeration", "fieldType": "checkbox", "label": "Interests", "groupName": "x"},
    "lifecyclestage": {"type": "enumeration", "fieldType": "radio", "label": "Stage", "groupName": "x"},
    "notes": {"type": "string", "fieldType": "textarea", "label": "Notes", "groupName": "x"},
}

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def contact_props(n: int, **overrides: Any) -> dict[str, Any]:
    props = {
        "email": f"user{n}@example.com",
        "firstname": f"First{n}",
        "lastname": f"Last{n}",
        "company": "",
        "num_employees": str(n * 10),
        "score": f"{n}.5",
        "is_customer": "true" if n % 2 else "false",
        # HubSpot sends both forms: epoch milliseconds and ISO strings.
        "signup": str(int((BASE_TIME + timedelta(days=n)).timestamp() * 1000)) if n % 2 else "2026-01-02T03:04:05.678Z",
        "birthday": "1990-05-17",
        "interests": "golf;tennis" if n % 3 == 0 else "",
        "lifecyclestage": "lead",
        "notes": None,
    }
    props.update(overrides)
    return props


def expected_traits(props: dict[str, Any], n: int) -> dict[str, Any]:
    """What the default mapping (below) must put on the profile for these properties."""
    signup = props["signup"]
    if signup.isdigit():
        dt = datetime.fromtimestamp(int(signup) / 1000, tz=UTC)
        signup = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return {
        "email": props["email"] or None,
        "first_name": props["firstname"] or None,
        "last_name": props["lastname"] or None,
        "employees": int(props["num_employees"]),
        "score": float(props["score"]),
        "customer": props["is_customer"] == "true",
        "signed_up_at": signup,
        "birthday": "1990-05-17T00:00:00.000Z",
        "interests": [p for p in (props["interests"] or "").split(";") if p] or None,
        "hubspot_id": n,
    }


def fill(mirror: Mirror, ids: int | Iterable[int], **overrides: Any) -> dict[int, dict[str, Any]]:
    """Mirror rows for `ids` (or 1..n for an int) with contact_props, put one by one as the engine would."""
    props = {i: contact_props(i, **overrides) for i in (range(1, ids + 1) if isinstance(ids, int) else ids)}
    for i, p in props.items():
        mirror.put(i, p)
    return props


def profiles_by_user(sandbox: Any) -> dict[str, dict[str, Any]]:
    """The Segment sandbox's profiles as {userId: traits}."""
    return {p["userId"]: p["traits"] for p in sandbox.profiles()}


def accepted(sandbox: Any) -> int:
    """Messages the Segment sandbox accepted."""
    return sandbox.counts()["received"]


DEFAULT_TRAITS = [
    ["email", "email"],
    ["firstname", "first_name"],
    ["lastname", "last_name"],
    ["num_employees", "employees"],
    ["score", "score"],
    ["is_customer", "customer"],
    ["signup", "signed_up_at"],
    ["birthday", "birthday"],
    ["interests", "interests"],
    ["id", "hubspot_id"],
]


@dataclass
class Mirror:
    source: Source
    collection: str = "contacts"

    def next_seq(self) -> int:
        return (Record.objects.filter(source=self.source).aggregate(m=Max("change_seq"))["m"] or 0) + 1

    def put(self, object_id: int, props: dict[str, Any], *, archived: bool = False, updated: datetime | None = None):
        """Create or change one mirror row the way the extraction engine does: a new change_seq on every change."""
        updated = updated or (BASE_TIME + timedelta(minutes=object_id, seconds=self.next_seq()))
        record, _ = Record.objects.update_or_create(
            source=self.source,
            collection=self.collection,
            object_id=object_id,
            defaults={
                "properties": props,
                "archived": archived,
                "created_at": BASE_TIME,
                "updated_at": updated,
                "content_hash": hashlib.sha256(json.dumps(props, sort_keys=True).encode()).hexdigest(),
                "change_seq": self.next_seq(),
            },
        )
        return record

    def bulk(self, rows: list[tuple[int, dict[str, Any]]], *, updated: Any = BASE_TIME) -> None:
        """Many new rows at once (for batching and volume tests)."""
        seq = self.next_seq()
        Record.objects.bulk_create(
            [
                Record(
                    source=self.source,
                    collection=self.collection,
                    object_id=object_id,
                    properties=props,
                    created_at=BASE_TIME,
                    updated_at=updated + timedelta(seconds=i) if updated else None,
                    content_hash=f"{object_id:064d}",
                    change_seq=seq + i,
                )
                for i, (object_id, props) in enumerate(rows)
            ],
            batch_size=2000,
        )


@pytest.fixture(autouse=True)
def _close_segment_connections():
    # Keep-alive connections to the live server would keep its handler threads (and their database
    # connections) alive past the test.
    yield
    close_session()


@pytest.fixture
def source(workspace) -> Source:
    source = Source.objects.create(workspace=workspace, name="HubSpot", schema_name="hubspot", hub_id=1234)
    SourceCollection.objects.create(source=source, collection="contacts", properties=CONTACT_SCHEMA)
    SourceCollection.objects.create(
        source=source,
        collection="companies",
        properties={
            "name": {"type": "string", "fieldType": "text", "label": "Name"},
            "domain": {"type": "string", "fieldType": "text", "label": "Domain"},
            "owner_email": {"type": "string", "fieldType": "text", "label": "Owner email"},
            "numberofemployees": {"type": "number", "fieldType": "number", "label": "Employees"},
        },
    )
    return source


@pytest.fixture
def mirror(source) -> Mirror:
    return Mirror(source)


@pytest.fixture
def sandbox_base(settings, segment_sandbox, live_server):
    """Point the "sandbox" region at this test's live server and make retries fast."""
    settings.BASE_URL = live_server.url
    settings.SEGMENT_BACKOFF_BASE = 0.001
    settings.SEGMENT_BACKOFF_CAP = 0.01
    return segment_sandbox


@pytest.fixture
def destination(workspace) -> Destination:
    return Destination.objects.create(workspace=workspace, name="Segment")


@pytest.fixture
def space(destination, segment_sandbox) -> ProfileSpace:
    return ProfileSpace.objects.create(
        destination=destination, name="Sandbox space", write_key=segment_sandbox.write_key, region="sandbox"
    )


@pytest.fixture
def contacts_model(source) -> DataModel:
    return DataModel.objects.create(source=source, collection="contacts", name="Contacts", columns=list(CONTACT_SCHEMA))


@pytest.fixture
def mapping(destination, space, contacts_model) -> Mapping:
    return Mapping.objects.create(
        destination=destination,
        data_model=contacts_model,
        profile_space=space,
        action="identify",
        identifiers={"user_id": "email", "anonymous_id": None, "group_id": None},
        traits=DEFAULT_TRAITS,
        options={"empty_values": "null"},
        enabled=True,
    )


class StubSegment:
    """A stand-in for Segment at the network boundary, for answers the sandbox never gives (401, 400 for one
    message). `statuses` are answered in turn (then 200); a batch holding `refuse_user` gets a 400."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.refuse_user: str | None = None
        self.refuse_users: set[str] = set()  # like refuse_user, for several users
        self.fail_nth: int | None = None  # answer the n-th request (1-based) with 401
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(
                        entry := {"path": self.path, "auth": self.headers.get("Authorization"), **body}
                    )
                    nth = len(stub.requests)
                status, answer = 200, {"success": True}
                if stub.fail_nth == nth:
                    status, answer = 401, {"code": "unauthorized", "message": "invalid write key"}
                elif stub.statuses:
                    status = stub.statuses.pop(0)
                    answer = {"code": "unauthorized", "message": "invalid write key"}
                elif any(m.get("userId") in {stub.refuse_user, *stub.refuse_users} - {None} for m in body["batch"]):
                    status, answer = 400, {"code": "bad_message", "message": "this one"}
                entry["status"] = status
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The engine posts to {BASE_URL}/sandbox/segment/v1/batch for the sandbox region.
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_segment(settings):
    settings.SEGMENT_BACKOFF_BASE = 0.001
    settings.SEGMENT_BACKOFF_CAP = 0.01
    stub = StubSegment()
    yield stub
    stub.close()


# --- the whole pipeline (reconciliation tests): both sandboxes on the live server ------------------------------


@pytest.fixture
def segment(segment_sandbox):
    return segment_sandbox.with_workspace("Reconcile")


class OrderedSegment:
    """A Segment double at the HTTP boundary that keeps the order in which it applies messages, as Segment's
    profile store does (the last message applied wins, whatever its timestamp: the sandbox folds in timestamp
    order, which would hide a late older message). It deduplicates by messageId, and can be slow (`latency`,
    seconds: a (low, high) range), refuse a request before applying it (`fail_rate`: 503), or apply a batch and
    then lose the answer (`lose`: "drop" closes the connection without a word, "503" answers a 5xx, "timeout"
    answers after the client gave up)."""

    def __init__(self, seed: int = 2026) -> None:
        import random

        self.rng = random.Random(seed)
        self.latency: tuple[float, float] = (0.0, 0.0)
        self.fail_rate = 0.0
        self.lose: str | None = None
        # Called with each request's messages as it arrives (before anything is applied), in the server's thread:
        # a test commits HubSpot changes there, at a moment the delivery is known to be in full swing.
        self.on_request: Any = None
        self.lose_delay = 0.5  # for "timeout": longer than the client's SEGMENT_TIMEOUT in the test
        self.applied: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.requests = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                import time

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if stub.on_request is not None:
                    stub.on_request(body["batch"])
                with stub.lock:
                    stub.requests += 1
                    delay = stub.rng.uniform(*stub.latency)
                    fails = stub.rng.random() < stub.fail_rate
                    lose = stub.lose
                time.sleep(delay)
                if fails:
                    return self._answer(503, {"code": "unavailable"})
                with stub.lock:
                    for message in body["batch"]:
                        if message["messageId"] not in stub.seen:
                            stub.seen.add(message["messageId"])
                            stub.applied.append(message)
                if lose == "drop":
                    return  # http.server closes the connection: the client sees it reset without an answer
                if lose == "503":
                    return self._answer(503, {"code": "unavailable"})
                if lose == "timeout":
                    time.sleep(stub.lose_delay)
                self._answer(200, {"success": True})

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def last_applied(self) -> dict[str, dict[str, Any]]:
        """{userId: the last message applied for it}."""
        with self.lock:
            return {m["userId"]: m for m in self.applied}

    def profiles(self) -> dict[str, dict[str, Any]]:
        """{userId: traits}, folded in order of application."""
        profiles: dict[str, dict[str, Any]] = {}
        with self.lock:
            for message in self.applied:
                profiles.setdefault(message["userId"], {}).update(message.get("traits") or {})
        return profiles

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ordered_segment(settings):
    """An OrderedSegment that the mapping's sandbox-region space posts to, with fast retries."""
    settings.SEGMENT_BACKOFF_BASE = 0.001
    settings.SEGMENT_BACKOFF_CAP = 0.01
    stub = OrderedSegment()
    settings.BASE_URL = stub.url
    yield stub
    stub.close()

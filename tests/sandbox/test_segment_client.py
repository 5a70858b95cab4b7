"""The Segment sandbox driven by Segment's official Python library (segment-analytics-python), which posts to
host + "/v1/batch" with Basic auth and writeKey in the body."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import segment.analytics as analytics
from segment.analytics import request as segment_request
from segment.analytics.request import APIError

from sandbox.segment.models import SegmentMessage


@pytest.fixture(autouse=True)
def _close_library_session():
    yield
    # The library keeps one module-level keep-alive session; closing it ends the live server's request thread
    # (and its database connection) before the test database is dropped.
    segment_request._session.close()


def make_client(sandbox, **kwargs) -> analytics.Client:
    kwargs.setdefault("write_key", sandbox.write_key)
    return analytics.Client(host=sandbox.base_url, **kwargs)


def test_sync_client_identify_and_group_arrive(segment_sandbox):
    client = make_client(segment_sandbox, sync_mode=True)
    stamp = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    client.identify(
        user_id="contact-1",
        traits={"email": "ada@example.com", "created_at": stamp},
        timestamp=stamp,
        integrations={"All": False},
        message_id="ws1-map1-contact-1-abc",
    )
    client.group(user_id="contact-1", group_id="company-9", traits={"name": "Analytical Engines"}, message_id="g-1")
    client.track(user_id="contact-1", event="Synced")

    messages = segment_sandbox.messages()
    assert [m["type"] for m in messages] == ["track", "group", "identify"]  # newest first
    identify = messages[2]
    assert identify["messageId"] == "ws1-map1-contact-1-abc"
    assert identify["traits"] == {"email": "ada@example.com", "created_at": "2026-11-01T12:00:00+00:00"}
    assert identify["payload"]["integrations"] == {"All": False}
    assert identify["payload"]["context"]["library"]["name"] == "analytics-python"
    assert identify["timestamp"] == "2026-11-01T12:00:00Z"

    assert segment_sandbox.profile("contact-1")["traits"]["email"] == "ada@example.com"
    [account] = segment_sandbox.accounts()
    assert account["groupId"] == "company-9"
    assert account["traits"] == {"name": "Analytical Engines"}
    assert account["members"] == ["contact-1"]


def test_queued_client_flushes_in_batches(segment_sandbox):
    client = make_client(segment_sandbox, upload_size=100, upload_interval=0.05)
    for i in range(250):
        client.identify(user_id=f"contact-{i}", traits={"n": i}, message_id=f"m-{i}")
    client.flush()
    client.join()
    counts = segment_sandbox.counts()
    assert counts["received"] == 250
    assert counts["discarded"] == 0
    assert len(segment_sandbox.profiles()) == 250


def test_gzip_client(segment_sandbox):
    client = make_client(segment_sandbox, sync_mode=True, gzip=True)
    client.identify(user_id="u-gz", traits={"a": 1})
    assert segment_sandbox.profile("u-gz")["traits"] == {"a": 1}


def test_unknown_write_key_is_silent_for_the_client(segment_sandbox):
    client = make_client(segment_sandbox, sync_mode=True, write_key="sbx_seg_unknown")
    client.identify(user_id="u1", traits={"a": 1})  # no error, as with the real Segment
    assert SegmentMessage.objects.count() == 0


def test_client_sees_server_errors_and_rate_limits(segment_sandbox):
    client = make_client(segment_sandbox, sync_mode=True)
    segment_sandbox.set_knobs(error_rate=1.0)
    with pytest.raises(APIError) as error:
        client.identify(user_id="u1")
    assert error.value.status in (500, 502, 503, 504)
    assert error.value.code == "server_error"

    segment_sandbox.set_knobs(error_rate=0, rate_limit_rate=1.0, retry_after=3)
    with pytest.raises(APIError) as error:
        client.identify(user_id="u1")
    assert error.value.status == 429
    assert error.value.response.headers["Retry-After"] == "3"


def test_what_the_library_lets_through_the_sandbox_accepts(segment_sandbox):
    # The library refuses messages over 32,768 bytes (measured with spaces) before sending; a message just under
    # its limit must pass the sandbox's 32 KB check too.
    client = make_client(segment_sandbox, sync_mode=True)
    client.identify(user_id="big", traits={"blob": "x" * 32_400}, message_id="big-1")
    assert segment_sandbox.messages()[0]["size"] > 32_000
    with pytest.raises(RuntimeError):
        client.identify(user_id="big", traits={"blob": "x" * 33_000})


def test_queued_client_honours_retry_after_and_delivers_once(segment_sandbox):
    segment_sandbox.set_knobs(rate_limit_rate=1.0, retry_after=1)
    client = make_client(segment_sandbox, upload_interval=0.05, max_rate_limit_duration=30)
    client.identify(user_id="patient", traits={"waited": True}, message_id="retry-1")
    time.sleep(0.4)  # the first attempt gets its 429
    segment_sandbox.set_knobs(rate_limit_rate=0)
    client.flush()
    client.join()
    assert [m["messageId"] for m in segment_sandbox.messages()] == ["retry-1"]

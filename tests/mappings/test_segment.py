"""The Segment client over real HTTP: the sandbox for what Segment does, a stub at the boundary for answers the
sandbox never gives (408, 501, 401)."""

from __future__ import annotations

import socket

import pytest

from mappings import segment, services
from mappings.segment import (
    SegmentClient,
    SegmentPermanentError,
    SegmentTransientError,
    batch_body,
    encode_message,
    endpoint,
)
from sandbox.segment.models import SegmentWorkspace
from tests.factories import MappingFactory, ProfileSpaceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def identify(n: int) -> dict:
    return {"type": "identify", "userId": f"user-{n}", "traits": {"n": n}, "messageId": f"test-{n}"}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_endpoints_per_region(settings):
    settings.BASE_URL = "http://127.0.0.1:9999"
    assert endpoint("us") == "https://api.segment.io"
    assert endpoint("eu") == "https://events.eu1.segmentapis.com"
    assert endpoint("sandbox") == "http://127.0.0.1:9999/sandbox/segment"
    assert SegmentClient("eu").batch_url == "https://events.eu1.segmentapis.com/v1/batch"
    with pytest.raises(ValueError):
        endpoint("mars")


def test_batch_body_reuses_encoded_messages():
    body = batch_body([encode_message({"a": "é"}), {"b": 1}], sent_at="2026-01-01T00:00:00.000Z")
    assert body == '{"batch":[{"a":"é"},{"b":1}],"sentAt":"2026-01-01T00:00:00.000Z"}'.encode()


def test_send_batch_with_basic_auth_reaches_the_space(sandbox_base):
    result = segment.send_batch(sandbox_base.write_key, [identify(1), encode_message(identify(2))], region="sandbox")
    assert (result.status, result.attempts) == (200, 1)
    assert {m["userId"] for m in sandbox_base.messages()} == {"user-1", "user-2"}
    # The key went in the Authorization header (the sandbox would drop a keyless request silently).
    assert sandbox_base.counts()["received"] == 2


def test_429_honours_retry_after_then_gives_up(sandbox_base):
    SegmentWorkspace.objects.filter(is_default=True).update(rate_limit_rate=1.0, retry_after=7)
    sleeps = Sleeps()
    client = SegmentClient("sandbox", max_attempts=4, backoff_base=0.001, backoff_cap=60, sleep=sleeps)
    with pytest.raises(SegmentTransientError) as caught:
        client.send_batch(sandbox_base.write_key, [identify(1)])
    assert caught.value.status == 429 and caught.value.attempts == 4
    assert sleeps == [7, 7, 7]  # Retry-After is the floor of every wait
    assert sandbox_base.write_key not in str(caught.value)


def test_retry_after_is_capped(sandbox_base):
    SegmentWorkspace.objects.filter(is_default=True).update(rate_limit_rate=1.0, retry_after=3600)
    sleeps = Sleeps()
    client = SegmentClient("sandbox", max_attempts=2, backoff_base=0.001, backoff_cap=30, sleep=sleeps)
    with pytest.raises(SegmentTransientError):
        client.send_batch(sandbox_base.write_key, [identify(1)])
    assert sleeps == [30]


def test_5xx_retried_with_exponential_full_jitter_then_success(sandbox_base):
    SegmentWorkspace.objects.filter(is_default=True).update(error_rate=1.0)
    sleeps = Sleeps()

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        if len(sleeps) == 4:
            SegmentWorkspace.objects.filter(is_default=True).update(error_rate=0.0)

    client = SegmentClient("sandbox", max_attempts=6, backoff_base=1, backoff_cap=100, sleep=sleep)
    result = client.send_batch(sandbox_base.write_key, [identify(1)])
    assert (result.status, result.attempts) == (200, 5)
    # Full jitter: each wait is uniform in [0, base * 2**n].
    assert all(0 <= s <= 2**n for n, s in enumerate(sleeps))
    assert sandbox_base.counts()["received"] == 1


def test_oversize_batch_is_a_permanent_error_with_segments_answer(sandbox_base):
    sleeps = Sleeps()
    big = [{**identify(n), "traits": {"pad": "x" * 30_000}} for n in range(20)]  # ~600 KB
    with pytest.raises(SegmentPermanentError) as caught:
        SegmentClient("sandbox", sleep=sleeps).send_batch(sandbox_base.write_key, big)
    assert caught.value.status == 400 and "batch_too_large" in caught.value.body
    assert caught.value.attempts == 1 and sleeps == []


@pytest.mark.parametrize(("status", "retried"), [(408, True), (500, True), (503, True), (501, False), (505, False)])
def test_which_statuses_are_retried(stub_segment, settings, status, retried):
    settings.BASE_URL = stub_segment.url
    stub_segment.statuses = [status]
    client = SegmentClient("sandbox", max_attempts=3, sleep=Sleeps())
    if retried:
        assert client.send_batch("k", [identify(1)]).attempts == 2
    else:
        with pytest.raises(SegmentPermanentError):
            client.send_batch("k", [identify(1)])
        assert len(stub_segment.requests) == 1


def test_401_is_permanent_and_the_key_never_appears(stub_segment, settings):
    settings.BASE_URL = stub_segment.url
    stub_segment.statuses = [401]
    with pytest.raises(SegmentPermanentError) as caught:
        SegmentClient("sandbox", sleep=Sleeps()).send_batch("very-secret-key", [identify(1)])
    assert caught.value.status == 401
    assert "very-secret-key" not in str(caught.value) and "very-secret-key" not in caught.value.body
    assert stub_segment.requests[0]["auth"] == "Basic dmVyeS1zZWNyZXQta2V5Og=="  # base64("very-secret-key:")
    assert stub_segment.requests[0]["path"] == "/sandbox/segment/v1/batch"
    assert stub_segment.requests[0]["sentAt"].endswith("Z")


def test_connection_errors_are_retried_then_transient(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    settings.BASE_URL = f"http://127.0.0.1:{port}"
    sleeps = Sleeps()
    with pytest.raises(SegmentTransientError) as caught:
        SegmentClient("sandbox", max_attempts=3, sleep=sleeps).send_batch("k", [identify(1)])
    assert caught.value.attempts == 3 and len(sleeps) == 2
    assert "ConnectionError" in str(caught.value)


def test_check_connection_against_the_sandbox(sandbox_base):
    from mappings.segment import check_connection

    good = check_connection("sandbox", sandbox_base.write_key)
    assert good.ok and "knows this write key" in good.detail
    bad = check_connection("sandbox", "sbx_seg_nobodyHasThisKey0000000")
    assert not bad.ok and "no sandbox space has this write key" in bad.detail
    assert sandbox_base.counts()["received"] == 0  # nothing reached a profile


def test_check_connection_against_a_real_region_posts_an_empty_batch(stub_segment, monkeypatch):
    from mappings.segment import check_connection

    monkeypatch.setitem(segment.ENDPOINTS, "us", stub_segment.url)
    result = check_connection("us", "some-key")
    assert result.ok and "does not confirm write keys" in result.detail
    assert stub_segment.requests[0]["batch"] == []
    stub_segment.statuses = [401]
    failed = check_connection("us", "some-key")
    assert not failed.ok and "401" in failed.detail and "some-key" not in failed.detail


def test_check_connection_unreachable(settings):
    from mappings.segment import check_connection

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.BASE_URL = f"http://127.0.0.1:{port}"
    result = check_connection("sandbox", "k")
    assert not result.ok and "Could not reach" in result.detail


def test_custom_endpoint_replaces_the_regions_address():
    assert endpoint("custom", "https://proxy.example.com/seg") == "https://proxy.example.com/seg"
    assert (
        SegmentClient("custom", base_url="https://proxy.example.com/").batch_url == "https://proxy.example.com/v1/batch"
    )
    with pytest.raises(ValueError):
        endpoint("custom", "")
    # Another region ignores a leftover endpoint.
    assert endpoint("us", "https://proxy.example.com") == "https://api.segment.io"


def test_custom_endpoint_outside_debug_never_reaches_a_private_address(settings):
    settings.DEBUG = False
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = False
    # The address is checked when the connection opens (a name that resolves to 127.0.0.1 is refused the same
    # way), and the refusal is permanent: retrying cannot make the address public.
    client = SegmentClient("custom", base_url="https://localhost:9", max_attempts=3, sleep=Sleeps())
    with pytest.raises(SegmentPermanentError) as caught:
        client.send_batch("wk_live_Abcdefghijklmnop1234", [identify(1)])
    assert "loopback" in str(caught.value) and caught.value.attempts == 1
    check = segment.check_connection("custom", "wk_live_Abcdefghijklmnop1234", base_url="https://localhost:9")
    assert not check.ok and "may not be reached" in check.detail


def test_clean_custom_endpoint(settings):
    settings.DEBUG = False
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = False
    clean = segment.clean_custom_endpoint
    assert clean(" https://93.184.216.34/seg/v1/batch/ ") == "https://93.184.216.34/seg"
    assert clean("https://93.184.216.34/v1") == "https://93.184.216.34"
    for bad in ("", "ftp://93.184.216.34", "http://93.184.216.34", "https://10.0.0.8", "https://u:p@93.184.216.34"):
        with pytest.raises(ValueError):
            clean(bad)
    # While developing (DEBUG), a proxy on this machine over plain http is fine.
    settings.DEBUG = True
    assert clean("http://127.0.0.1:8000/sandbox/segment") == "http://127.0.0.1:8000/sandbox/segment"


def test_the_mapping_test_message_goes_to_the_custom_endpoint(sandbox_base, settings, workspace):
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True  # the "proxy" is this test's live server, on 127.0.0.1
    inbox = sandbox_base.with_workspace("Behind a proxy")
    mapping = MappingFactory(data_model__source__workspace=workspace)
    space = ProfileSpaceFactory(
        destination=mapping.destination,
        name="Proxied",
        write_key=inbox.write_key,
        region="custom",
        endpoint=sandbox_base.base_url,  # the sandbox reached as a custom endpoint, not as the sandbox region
    )
    mapping.profile_space = space
    mapping.save()
    settings.BASE_URL = "http://127.0.0.1:9"  # the sandbox region would fail: only the endpoint can deliver
    result = services.send_test_message(mapping, identify(7))
    assert result.status == 200
    assert [m["userId"] for m in inbox.messages()] == ["user-7"]

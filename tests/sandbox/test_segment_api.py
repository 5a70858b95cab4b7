"""The Segment sandbox's Tracking API over raw HTTP: auth, every limit and discard rule, dedup, fault knobs."""

from __future__ import annotations

import base64
import gzip
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from sandbox.segment.ingest import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from sandbox.segment.models import SegmentMessage, SegmentSeenMessageId, SegmentUnknownKey, is_sandbox_write_key
from tests.fixtures_segment import basic_auth


def identify(n: int | str = 1, **extra) -> dict:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "traits": {"email": f"u{n}@example.com"},
        "messageId": f"msg-{n}",
        "timestamp": "2026-11-29T09:00:00Z",
        **extra,
    }


def group(n: int | str = 1, **extra) -> dict:
    return {
        "type": "group",
        "userId": f"user-{n}",
        "groupId": f"company-{n}",
        "traits": {"name": f"Company {n}"},
        "messageId": f"grp-{n}",
        **extra,
    }


def padded(message: dict, total_bytes: int) -> dict:
    """`message` with a padding trait so its compact JSON is exactly total_bytes long."""
    message = {**message, "traits": {**message.get("traits", {}), "pad": ""}}
    size = len(json.dumps(message, separators=(",", ":")).encode())
    message["traits"]["pad"] = "x" * (total_bytes - size)
    assert len(json.dumps(message, separators=(",", ":")).encode()) == total_bytes
    return message


# --- auth ---------------------------------------------------------------------------------------------------


def test_default_workspace_exists_with_a_recognisable_key(segment_sandbox):
    assert is_sandbox_write_key(segment_sandbox.write_key)
    assert segment_sandbox.check(segment_sandbox.write_key) == 200


def test_identify_with_basic_auth_is_stored(segment_sandbox):
    response = segment_sandbox.post("identify", identify(1))
    assert response.status_code == 200
    assert response.json() == {"success": True}
    [message] = segment_sandbox.messages()
    assert message["type"] == "identify"
    assert message["userId"] == "user-1"
    assert message["messageId"] == "msg-1"
    assert message["traits"] == {"email": "u1@example.com"}
    assert message["timestamp"] == "2026-11-29T09:00:00Z"
    assert "writeKey" not in message["payload"]


def test_write_key_in_body_is_accepted(segment_sandbox):
    assert segment_sandbox.post("group", group(1), auth="body").status_code == 200
    assert segment_sandbox.batch([identify(2)], auth="body").status_code == 200
    assert {m["messageId"] for m in segment_sandbox.messages()} == {"grp-1", "msg-2"}
    stored = segment_sandbox.messages()
    assert all("writeKey" not in m["payload"] for m in stored)


def test_unknown_write_key_gets_200_and_is_dropped(segment_sandbox):
    response = segment_sandbox.post("identify", identify(1), write_key="not-a-key-at-all")
    assert response.status_code == 200
    assert SegmentMessage.objects.count() == 0
    assert SegmentUnknownKey.objects.get(key_hint="not-…").requests == 1


def test_no_write_key_at_all_is_dropped(segment_sandbox):
    assert segment_sandbox.post("identify", identify(1), auth="none").status_code == 200
    assert SegmentMessage.objects.count() == 0


def test_basic_auth_without_the_colon_is_not_a_key(segment_sandbox):
    token = base64.b64encode(segment_sandbox.write_key.encode()).decode()
    response = segment_sandbox.post("identify", identify(1), auth="none", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200
    assert segment_sandbox.messages() == []
    check = requests.get(f"{segment_sandbox.base_url}/v1/_check", headers={"Authorization": f"Basic {token}"})
    assert check.status_code == 401


def test_check_endpoint(segment_sandbox):
    assert segment_sandbox.check(segment_sandbox.write_key) == 200
    assert segment_sandbox.check(segment_sandbox.new_workspace()) == 200
    assert segment_sandbox.check("sbx_seg_nope") == 401
    no_auth = requests.get(f"{segment_sandbox.base_url}/v1/_check")
    assert no_auth.status_code == 401
    assert no_auth.json()["valid"] is False


def test_get_is_not_allowed(segment_sandbox):
    response = requests.get(f"{segment_sandbox.base_url}/v1/batch", headers={"Authorization": basic_auth("x")})
    assert response.status_code == 405


def test_content_type_must_be_json(segment_sandbox):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = segment_sandbox.post("identify", identify(1), headers=form)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_content_type"


def test_gzip_body_is_accepted(segment_sandbox):
    raw = gzip.compress(json.dumps({"batch": [identify(1), identify(2)]}).encode())
    response = segment_sandbox.post("batch", raw=raw, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert len(segment_sandbox.messages()) == 2


def test_batch_context_and_integrations_apply_to_messages(segment_sandbox):
    own = identify(2, integrations={"Mixpanel": True})
    body = {"batch": [identify(1), own], "context": {"source": "hubsync"}, "integrations": {"All": False}}
    assert segment_sandbox.post("batch", body).status_code == 200
    payloads = {m["messageId"]: m["payload"] for m in segment_sandbox.messages()}
    assert payloads["msg-1"]["integrations"] == {"All": False}
    assert payloads["msg-1"]["context"] == {"source": "hubsync"}
    assert payloads["msg-2"]["integrations"] == {"Mixpanel": True}


def test_endpoint_decides_the_type(segment_sandbox):
    segment_sandbox.post("identify", {**group(1), "type": "group"})
    [message] = segment_sandbox.messages()
    assert message["type"] == "identify"


# --- limits (400, nothing stored) ---------------------------------------------------------------------------


def test_single_message_over_32kb_is_400(segment_sandbox):
    at_limit = padded(identify(1), MAX_MESSAGE_BYTES)
    assert segment_sandbox.post("identify", raw=json.dumps(at_limit, separators=(",", ":")).encode()).status_code == 200
    over = padded(identify(2), MAX_MESSAGE_BYTES + 1)
    response = segment_sandbox.post("identify", raw=json.dumps(over, separators=(",", ":")).encode())
    assert response.status_code == 400
    assert response.json()["code"] == "message_too_large"
    assert [m["messageId"] for m in segment_sandbox.messages()] == ["msg-1"]
    assert segment_sandbox.counts()["rejections_by_reason"] == {"message_too_large": 1}


def test_one_message_over_32kb_rejects_the_whole_batch(segment_sandbox):
    response = segment_sandbox.batch([identify(1), padded(identify(2), MAX_MESSAGE_BYTES + 1)])
    assert response.status_code == 400
    assert response.json()["code"] == "message_too_large"
    assert segment_sandbox.messages() == []
    # The same message at exactly 32 KB passes.
    assert segment_sandbox.batch([identify(1), padded(identify(2), MAX_MESSAGE_BYTES)]).status_code == 200
    assert len(segment_sandbox.messages()) == 2


def test_batch_over_500kb_is_400(segment_sandbox):
    messages = [padded(identify(i), 30_000) for i in range(17)]  # ~510 KB
    raw = json.dumps({"batch": messages}).encode()
    assert len(raw) > MAX_BATCH_BYTES
    response = segment_sandbox.post("batch", raw=raw)
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"
    assert segment_sandbox.messages() == []
    under = json.dumps({"batch": messages[:16]}).encode()
    assert len(under) < MAX_BATCH_BYTES
    assert segment_sandbox.post("batch", raw=under).status_code == 200
    assert len(segment_sandbox.messages()) == 16


def test_huge_body_is_400_not_a_crash(segment_sandbox):
    raw = json.dumps({"batch": [identify(1, traits={"blob": "x" * 3_000_000})]}).encode()
    response = segment_sandbox.post("batch", raw=raw)
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"
    gzipped = segment_sandbox.post("batch", raw=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert gzipped.status_code == 400
    assert gzipped.json()["code"] == "batch_too_large"


def test_batch_of_2501_messages_is_400_and_2500_is_fine(segment_sandbox):
    messages = [{"type": "identify", "userId": str(i), "messageId": f"m{i}"} for i in range(2501)]
    response = segment_sandbox.batch(messages)
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_messages"
    assert segment_sandbox.counts()["received"] == 0
    assert segment_sandbox.batch(messages[:2500]).status_code == 200
    assert segment_sandbox.counts()["received"] == 2500


@pytest.mark.parametrize("endpoint", ["batch", "identify"])
def test_invalid_json_is_400(segment_sandbox, endpoint):
    response = segment_sandbox.post(endpoint, raw=b'{"batch": [{"type": "identify",')
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert segment_sandbox.counts()["rejections_by_reason"] == {"invalid_json": 1}


def test_batch_that_is_not_an_array_is_400(segment_sandbox):
    assert segment_sandbox.post("batch", {"batch": {"type": "identify"}}).status_code == 400
    assert segment_sandbox.post("batch", [identify(1)]).status_code == 400


# --- discards (200, dropped, counted) -----------------------------------------------------------------------


def test_messages_without_ids_are_dropped_with_200(segment_sandbox):
    no_ids = {"type": "identify", "traits": {"email": "x@example.com"}, "messageId": "noid"}
    empty_ids = {"type": "identify", "userId": "", "anonymousId": None, "messageId": "empty"}
    response = segment_sandbox.batch([no_ids, empty_ids, identify(1)])
    assert response.status_code == 200
    assert [m["messageId"] for m in segment_sandbox.messages()] == ["msg-1"]
    assert segment_sandbox.counts()["discards_by_reason"] == {"no_user_anon_id": 2}
    assert {d["messageId"] for d in segment_sandbox.discards()} == {"noid", "empty"}
    # And on a single endpoint.
    assert segment_sandbox.post("identify", no_ids | {"messageId": "noid2"}).status_code == 200
    assert segment_sandbox.counts()["discards_by_reason"] == {"no_user_anon_id": 3}


def test_anonymous_id_alone_is_enough(segment_sandbox):
    segment_sandbox.batch([{"type": "identify", "anonymousId": "anon-1", "messageId": "a1"}])
    assert segment_sandbox.messages()[0]["anonymousId"] == "anon-1"


def test_group_without_group_id_is_dropped(segment_sandbox):
    no_group = group(1)
    del no_group["groupId"]
    response = segment_sandbox.post("group", no_group)
    assert response.status_code == 200
    assert segment_sandbox.messages() == []
    [discard] = segment_sandbox.discards()
    assert discard["reason"] == "no_group_id"
    assert discard["status"] == 200
    assert discard["payload"]["userId"] == "user-1"


def test_other_drops(segment_sandbox):
    response = segment_sandbox.batch(
        [
            {"type": "track", "userId": "u", "messageId": "t1"},  # no event
            {"type": "launch", "userId": "u", "messageId": "x1"},  # unknown type
            {"type": "identify", "userId": "u", "traits": ["a"], "messageId": "i1"},  # traits not an object
            {"type": "identify", "userId": "u", "messageId": "m" * 101},  # messageId too long
            "not an object",
            {"type": "track", "userId": "u", "event": "Signed Up", "messageId": "t2"},
        ]
    )
    assert response.status_code == 200
    assert [m["messageId"] for m in segment_sandbox.messages()] == ["t2"]
    assert segment_sandbox.counts()["discards_by_reason"] == {
        "no_event": 1,
        "invalid_type": 1,
        "invalid_traits": 1,
        "message_id_too_long": 1,
        "invalid_message": 1,
    }


def test_numeric_ids_become_strings(segment_sandbox):
    segment_sandbox.batch([{"type": "group", "userId": 42, "groupId": 7, "messageId": "n1"}])
    [message] = segment_sandbox.messages()
    assert (message["userId"], message["groupId"]) == ("42", "7")


# --- deduplication ------------------------------------------------------------------------------------------


def test_duplicate_message_ids_are_dropped(segment_sandbox):
    assert segment_sandbox.batch([identify(1), identify(2)]).status_code == 200
    again = identify(1, traits={"email": "changed@example.com"})
    assert segment_sandbox.batch([again, identify(3)]).status_code == 200
    assert segment_sandbox.post("identify", identify(2)).status_code == 200
    assert sorted(m["messageId"] for m in segment_sandbox.messages()) == ["msg-1", "msg-2", "msg-3"]
    assert segment_sandbox.counts()["discards_by_reason"] == {"duplicate_message_id": 2}
    assert segment_sandbox.profile("user-1")["traits"]["email"] == "u1@example.com"


def test_duplicates_inside_one_batch(segment_sandbox):
    segment_sandbox.batch([identify(1), identify(1), identify(1)])
    assert len(segment_sandbox.messages()) == 1
    assert segment_sandbox.counts()["discards_by_reason"] == {"duplicate_message_id": 2}


def test_dedup_lasts_24_hours(segment_sandbox):
    segment_sandbox.batch([identify(1)])
    SegmentSeenMessageId.objects.update(seen_at=SegmentSeenMessageId.objects.get().seen_at - timedelta(hours=23))
    segment_sandbox.batch([identify(1)])
    assert len(segment_sandbox.messages()) == 1
    SegmentSeenMessageId.objects.update(seen_at=SegmentSeenMessageId.objects.get().seen_at - timedelta(hours=2))
    segment_sandbox.batch([identify(1)])
    assert len(segment_sandbox.messages()) == 2


def test_dedup_is_per_workspace(segment_sandbox):
    other = segment_sandbox.with_workspace()
    segment_sandbox.batch([identify(1)])
    other.batch([identify(1)])
    assert len(segment_sandbox.messages()) == 1
    assert len(other.messages()) == 1


def test_missing_message_id_gets_one(segment_sandbox):
    segment_sandbox.batch([{"type": "identify", "userId": "u1"}, {"type": "identify", "userId": "u1"}])
    ids = [m["messageId"] for m in segment_sandbox.messages()]
    assert len(set(ids)) == 2


def test_clear_forgets_messages_and_ids(segment_sandbox):
    segment_sandbox.batch([identify(1), {"type": "identify", "messageId": "bad"}])
    segment_sandbox.clear()
    assert segment_sandbox.counts()["received"] == 0
    assert segment_sandbox.counts()["discarded"] == 0
    segment_sandbox.batch([identify(1)])
    assert len(segment_sandbox.messages()) == 1


# --- fault knobs --------------------------------------------------------------------------------------------


def test_error_rate_one_gives_5xx_and_stores_nothing(segment_sandbox):
    segment_sandbox.set_knobs(error_rate=1.0)
    statuses = {segment_sandbox.batch([identify(i)]).status_code for i in range(12)}
    assert statuses <= {500, 502, 503, 504}
    assert segment_sandbox.counts()["received"] == 0
    segment_sandbox.set_knobs(error_rate=0)
    assert segment_sandbox.batch([identify(1)]).status_code == 200


def test_rate_limit_gives_429_with_retry_after(segment_sandbox):
    assert segment_sandbox.set_knobs(rate_limit_rate=1.0, retry_after=7)["retry_after"] == 7
    response = segment_sandbox.batch([identify(1)])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert segment_sandbox.counts()["received"] == 0
    # Knobs belong to one workspace: another one is unaffected.
    other = segment_sandbox.new_workspace()
    assert segment_sandbox.batch([identify(1)], write_key=other).status_code == 200


def test_faults_apply_with_the_key_in_the_body_too(segment_sandbox):
    segment_sandbox.set_knobs(rate_limit_rate=1.0)
    assert segment_sandbox.batch([identify(1)], auth="body").status_code == 429


def test_latency_knob(segment_sandbox):
    segment_sandbox.set_knobs(latency_ms=300)
    started = time.monotonic()
    assert segment_sandbox.batch([identify(1)]).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_knob_validation(segment_sandbox):
    response = requests.post(
        f"{segment_sandbox.base_url}/inbox/{segment_sandbox.write_key}/knobs.json", json={"error_rate": 2}
    )
    assert response.status_code == 400
    assert segment_sandbox.set_knobs()["error_rate"] == 0.0


def test_concurrent_duplicate_batches_accept_each_message_once(segment_sandbox):
    messages = [identify(i) for i in range(300)]
    orders = []
    for seed in range(4):
        shuffled = messages[:]
        random.Random(seed).shuffle(shuffled)
        orders.append(shuffled)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda batch: segment_sandbox.batch(batch).status_code, orders))
    assert statuses == [200] * 4
    counts = segment_sandbox.counts()
    assert counts["received"] == 300
    assert counts["discards_by_reason"] == {"duplicate_message_id": 900}

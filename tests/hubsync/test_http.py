from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hubsync.http import full_jitter, retry_after_seconds


def test_delta_seconds():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0


def test_http_date_in_the_future_and_past():
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds(soon) <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(past) == 0.0


def test_absent_or_unreadable_means_use_your_own_backoff():
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon-ish") is None


def test_full_jitter_stays_within_the_exponential_cap():
    delays = [full_jitter(n, base=0.5, cap=4) for n in range(10) for _ in range(50)]
    assert min(delays) >= 0 and max(delays) <= 4
    assert max(full_jitter(0, base=0.5, cap=4) for _ in range(200)) <= 0.5
    assert max(full_jitter(2, base=0.5, cap=4) for _ in range(200)) <= 2.0

"""service/retry_after.py: `Retry-After` as seconds or an HTTP date, bounded to a day."""

from __future__ import annotations

import email.utils
import math
import time

import pytest

from service.retry_after import MAX_RETRY_AFTER_S, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0", 0.0), ("1.5", 1.5), (" 3 ", 3.0), ("-5", 0.0), ("-inf", 0.0), ("86400", 86400.0)],
)
def test_seconds(value, seconds):
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value", ["86401", "1e400", "inf", "Infinity"])
def test_a_wait_past_a_day_is_read_as_a_day(value):
    assert parse_retry_after(value) == MAX_RETRY_AFTER_S == 86400.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "NaN", "Fri, 31 Feb 2025 99:00:00 GMT", "12 monkeys"])
def test_absent_or_unreadable_is_none(value):
    assert parse_retry_after(value) is None


def test_an_http_date_is_the_time_until_then():
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert parse_retry_after(in_a_minute) == pytest.approx(60, abs=2)


def test_an_http_date_in_the_past_is_no_wait_and_one_far_ahead_is_a_day():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") == MAX_RETRY_AFTER_S


def test_the_answer_is_always_finite():
    for value in ("1e308", "-1e400", "99999999999999999999"):
        answer = parse_retry_after(value)
        assert answer is not None and math.isfinite(answer)

"""service/jobs/storage/admission.parse_submit_limits: RATE_LIMIT in flask-limiter's syntax.
(The admission script itself runs against Redis: tests/test_admission.py.)"""

from __future__ import annotations

import pytest

from service.jobs.storage.admission import SubmitLimit, parse_submit_limits
from service.jobs.storage.keys import submit_window_key


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("600/minute", (SubmitLimit(600, 60),)),
        ("1/second", (SubmitLimit(1, 1),)),
        ("10 per hour", (SubmitLimit(10, 3600),)),
        ("1/day", (SubmitLimit(1, 86400),)),
        ("100/2 minutes", (SubmitLimit(100, 120),)),
        ("10/second;600/minute", (SubmitLimit(10, 1), SubmitLimit(600, 60))),
        ("10/second, 600/minute", (SubmitLimit(10, 1), SubmitLimit(600, 60))),
        ("10/second|600/minute", (SubmitLimit(10, 1), SubmitLimit(600, 60))),
    ],
)
def test_limits_in_flask_limiters_syntax(text, limits):
    assert parse_submit_limits(text) == limits


@pytest.mark.parametrize("text", ["", "fast", "10/fortnight", "-1/minute", "10/minute;", "5/s"])
def test_a_limit_that_does_not_read_is_refused(text):
    with pytest.raises(ValueError):
        parse_submit_limits(text)


def test_each_limit_has_its_own_window_key_per_client():
    second, minute = parse_submit_limits("10/second;600/minute")
    assert submit_window_key("alice", second.amount, second.window_s) == "llmjobs:ratelimit:submits:alice:10/1"
    assert submit_window_key("alice", minute.amount, minute.window_s) == "llmjobs:ratelimit:submits:alice:600/60"
    assert submit_window_key("bob", minute.amount, minute.window_s) != submit_window_key(
        "alice", minute.amount, minute.window_s
    )

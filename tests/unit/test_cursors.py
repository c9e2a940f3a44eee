"""service/jobs/storage/index.py without Redis: the index member and the opaque cursor made of it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from service.jobs.storage.index import InvalidCursor, decode_cursor, encode_cursor, job_id_of, member
from service.jobs.storage.keys import index_key

JOB_ID = "0123456789abcdef0123456789abcdef"


def test_a_member_is_microseconds_then_the_id_so_text_order_is_creation_order():
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert member(JOB_ID, at) == f"{int(at.timestamp()) * 1_000_000 + 678901:016d}:{JOB_ID}"
    earlier = member("f" * 32, datetime(2001, 9, 9, 1, 46, 39, tzinfo=UTC))  # 10**15 µs minus 1 s: fewer digits
    later = member("0" * 32, datetime(2001, 9, 9, 1, 46, 41, tzinfo=UTC))
    assert len(earlier) == len(later) and earlier < later  # zero-padded: no 9 > 10 mistakes
    assert job_id_of(member(JOB_ID, at)) == JOB_ID


def test_the_index_is_per_client():
    assert index_key("alice") == "llmjobs:client:alice:jobs" != index_key("bob")


def test_a_cursor_round_trips_and_is_url_safe_without_padding():
    for at in (datetime(2026, 5, 17, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)):
        index_member = member(JOB_ID, at)
        cursor = encode_cursor(index_member)
        assert decode_cursor(cursor) == index_member
        assert "=" not in cursor and "+" not in cursor and "/" not in cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "%%%",
        "a",  # one character is no base64 at all
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.urlsafe_b64encode(f"123:{JOB_ID}".encode()).decode(),  # too few digits
        base64.urlsafe_b64encode(f"{'1' * 16}:{JOB_ID.upper()}".encode()).decode(),  # not an id we mint
        base64.urlsafe_b64encode(f"{'1' * 16}:{JOB_ID}x".encode()).decode(),
        base64.urlsafe_b64encode(f"{'1' * 16}:{JOB_ID}\n".encode()).decode(),  # `$` alone lets a newline by
        base64.urlsafe_b64encode(f"+{'1' * 15}:{JOB_ID}".encode()).decode(),
        base64.urlsafe_b64encode(("\u0661" * 16 + f":{JOB_ID}").encode()).decode(),  # Arabic-Indic digits
    ],
)
def test_a_cursor_this_api_did_not_return_is_refused(cursor):
    with pytest.raises(InvalidCursor, match="cursor is not one this API returned"):
        decode_cursor(cursor)


def test_padding_is_optional_on_the_way_in():
    index_member = f"{'1' * 16}:{JOB_ID}"
    padded = base64.urlsafe_b64encode(index_member.encode()).decode()
    assert padded.endswith("=") and decode_cursor(padded) == decode_cursor(padded.rstrip("=")) == index_member

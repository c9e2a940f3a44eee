"""Per-client index of job ids, newest first, for listing and cursor paging.

A sorted set whose members all have score 0 and read `<created µs, 16 digits>:<job id>`,
so lexicographic order is creation order and a member is an exact, tie-free cursor.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

from redis import Redis
from redis.client import Pipeline

from service.jobs.storage import replies
from service.jobs.storage.ids import JOB_ID_PATTERN
from service.jobs.storage.keys import index_key

# Matched whole (`$` would let a trailing newline by), with ASCII digits only (`\d` takes any script's).
_MEMBER = re.compile(rf"[0-9]{{16}}:{JOB_ID_PATTERN}")


class InvalidCursor(ValueError):
    pass


def member(job_id: str, created_at: datetime) -> str:
    return f"{int(created_at.timestamp() * 1_000_000):016d}:{job_id}"


def job_id_of(index_member: str) -> str:
    return index_member.partition(":")[2]


def add(pipe: Pipeline, client: str, job_id: str, created_at: datetime) -> None:
    pipe.zadd(index_key(client), {member(job_id, created_at): 0})


def contains(connection: Redis, client: str, job_id: str, created_at: datetime) -> bool:
    return connection.zscore(index_key(client), member(job_id, created_at)) is not None


def newest_first(connection: Redis, client: str, after: str | None, count: int) -> list[str]:
    """Up to `count` members older than `after` (exclusive), newest first."""
    upper = f"({after}" if after else "+"
    members = replies.as_members(connection.zrevrangebylex(index_key(client), upper, "-", start=0, num=count))
    return [m.decode() for m in members]


def remove(connection: Redis, client: str, members: list[str]) -> None:
    if members:
        connection.zrem(index_key(client), *members)


def encode_cursor(index_member: str) -> str:
    return base64.urlsafe_b64encode(index_member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not _MEMBER.fullmatch(decoded):
        raise InvalidCursor("cursor is not one this API returned")
    return decoded

"""How many event streams a client holds open, across every API process.

One sorted set per client: a member per open stream, scored by the moment it is over
for sure (a stream ends by itself after SSE_MAX_DURATION_S). A stream's API process
removes its member when the stream ends; a member whose process died is dropped once
its score has passed, so a crash never keeps a client's slot taken for good.
"""

from __future__ import annotations

import time
from uuid import uuid4

from redis import Redis

from service.jobs.storage.scripts import registered

KEY_PREFIX = "llmjobs:streams:"
# Past a stream's own limit: the last write to a slow reader may take a while.
RELEASE_MARGIN_S = 60

# KEYS: the client's set. ARGV: now, cap, this stream's "over by" score, member, key TTL.
_CLAIM = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return 1
"""


def streams_key(client: str) -> str:
    return f"{KEY_PREFIX}{client}"


def claim_stream(connection: Redis, client: str, *, cap: int, max_duration_s: float) -> str | None:
    """A token for one more open stream of `client`, or None when it holds `cap` already."""
    token = uuid4().hex
    hold_s = int(max_duration_s) + RELEASE_MARGIN_S
    now = time.time()
    claimed = registered(connection, _CLAIM)(keys=[streams_key(client)], args=[now, cap, now + hold_s, token, hold_s])
    return token if claimed else None


def release_stream(connection: Redis, client: str, token: str) -> None:
    connection.zrem(streams_key(client), token)

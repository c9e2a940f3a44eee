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

from service.jobs.storage import scripts
from service.jobs.storage.keys import streams_key

# Past a stream's own limit: the last write to a slow reader may take a while.
RELEASE_MARGIN_S = 60


def claim_stream(connection: Redis, client: str, *, cap: int, max_duration_s: float) -> str | None:
    """A token for one more open stream of `client`, or None when it holds `cap` already."""
    token = uuid4().hex
    hold_s = int(max_duration_s) + RELEASE_MARGIN_S
    now = time.time()
    claimed = scripts.registered(connection, scripts.CLAIM_STREAM)(
        keys=[streams_key(client)], args=[now, cap, now + hold_s, token, hold_s]
    )
    return token if claimed else None


def release_stream(connection: Redis, client: str, token: str) -> None:
    connection.zrem(streams_key(client), token)

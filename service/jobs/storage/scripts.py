"""Lua scripts, registered once per connection pool: redis-py keeps each script's SHA and
sends EVALSHA, falling back to EVAL when the server has lost the script (a restart)."""

from __future__ import annotations

from redis import Redis
from redis.commands.core import Script

_REGISTERED: dict[tuple[int, str], Script] = {}


def registered(connection: Redis, source: str) -> Script:
    """The script `source` for `connection`, hashed once per connection pool (not per call)."""
    cache_key = (id(connection.connection_pool), source)
    if (script := _REGISTERED.get(cache_key)) is None:
        script = _REGISTERED[cache_key] = connection.register_script(source)
    return script

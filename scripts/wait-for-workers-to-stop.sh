#!/usr/bin/env bash
# For `make run`'s wrappers of what the workers need to the end (Redis, the fake Anthropic
# server): returns once no RQ worker is registered in REDIS_URL (read from the
# environment, never a command line), or Redis does not answer, or after 4 s (honcho
# SIGKILLs what is left after 5 s).
exec python - <<'PY'
import os
import time

import redis

connection = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=1)
deadline = time.monotonic() + 4
while time.monotonic() < deadline:
    try:
        if connection.scard("rq:workers") == 0:
            break
    except redis.RedisError:
        break
    time.sleep(0.1)
PY

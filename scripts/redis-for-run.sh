#!/usr/bin/env bash
# Redis for `make run`, stopped last. honcho signals every process at once (and Ctrl-C
# reaches the whole terminal group), but workers finishing their current job still need
# Redis. So Redis runs in its own session, and on INT/TERM this waits for the workers to
# deregister (scripts/wait-for-workers-to-stop.sh), then shuts Redis down cleanly.
# It requires the password in .run/redis-password.
set -u
mkdir -p .run/redis
# The password (made by run-stack.sh) goes in on stdin as config, and to redis-cli in its
# environment: never on a command line, where `ps` would show it.
export REDISCLI_AUTH="$(cat .run/redis-password)"
printf 'requirepass %s\n' "$REDISCLI_AUTH" | setsid redis-server - --port "$REDIS_PORT" --bind 127.0.0.1 \
  --dir .run/redis --appendonly yes --appendfsync everysec --save "" &
redis_pid=$!

stop() {
  scripts/wait-for-workers-to-stop.sh
  redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill "$redis_pid"
}
trap stop INT TERM
wait "$redis_pid"  # returns early when a trapped signal arrives
wait "$redis_pid"

#!/usr/bin/env bash
# The fake Anthropic server for `make run`, stopped after the workers. honcho signals every
# process at once (and Ctrl-C reaches the whole terminal group), but a worker finishing
# its running jobs still streams their replies from the fake: stopped first, it would cost
# each of them an attempt ("incomplete chunked read"). So the fake runs in its own session,
# and on INT/TERM this waits for the workers to deregister, then stops it.
set -u
setsid python -m fake_anthropic --port "$FAKE_ANTHROPIC_PORT" &
fake_pid=$!

stop() {
  scripts/wait-for-workers-to-stop.sh
  kill -TERM "$fake_pid" 2>/dev/null
}
trap stop INT TERM
wait "$fake_pid"  # returns early when a trapped signal arrives
wait "$fake_pid"

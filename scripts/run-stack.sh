#!/usr/bin/env bash
# `make run`: the whole stack in the foreground under honcho; Ctrl-C stops all of it.
# Starts Redis (AOF on, with a password) unless REDIS_URL points at one that answers, and
# the fake Anthropic server unless ANTHROPIC_API_KEY is set. The secrets it makes live in
# .run, readable by this user only; what it prints holds none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p .run && chmod 700 .run

# One stack per checkout: the lock is held (fd 9, inherited by honcho and every process
# it starts) until the last of them exits, also when killed. A second `make run` says so
# at once, instead of failing on a port after the whole banner.
exec 9>>.run/stack.lock
if ! flock -n 9; then
  echo "make run is already running here: API at $(cat .run/api-url 2>/dev/null || echo '(starting)'); Ctrl-C it there first" >&2
  exit 1
fi

# secret FILE PYTHON-EXPRESSION: made once (mode 0600 from the start), then reused.
secret() {
  [ -s "$1" ] || (umask 077 && python -c "import base64, secrets; print($2)" > "$1")
  chmod 600 "$1"
  cat "$1"
}
# A URL as it may be printed: without the password in it.
redacted() { sed -E 's#//[^/@]*@#//***@#' <<< "$1"; }

export API_PORT="${API_PORT:-8000}" REDIS_PORT="${REDIS_PORT:-6380}" FAKE_ANTHROPIC_PORT="${FAKE_ANTHROPIC_PORT:-8765}"
processes=(api worker scheduler)

if [ -n "${REDIS_URL:-}" ] && python -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$REDIS_URL" 2>/dev/null; then
  echo "using Redis at $(redacted "$REDIS_URL")"
else
  # scripts/redis-for-run.sh reads the same file: the password is in no command line.
  export REDIS_URL="redis://:$(secret .run/redis-password 'secrets.token_urlsafe(24)')@127.0.0.1:$REDIS_PORT/0"
  processes=(redis "${processes[@]}")
  echo "starting Redis on port $REDIS_PORT (AOF on, data in .run/redis, password in .run/redis-password)"
fi

if [ -z "${ANTHROPIC_API_KEY:-}" ]; then
  export ANTHROPIC_API_KEY="fake-key" ANTHROPIC_BASE_URL="http://127.0.0.1:$FAKE_ANTHROPIC_PORT"
  processes=(fake_anthropic "${processes[@]}")
  echo "no ANTHROPIC_API_KEY: using the bundled fake Anthropic server at $ANTHROPIC_BASE_URL"
fi

key='<a key from API_KEYS>'
if [ -z "${API_KEYS:-}" ]; then
  export API_KEYS="dev=$(secret .run/dev-api-key "'dev-' + secrets.token_urlsafe(24)")"
  key='$(cat .run/dev-api-key)'
fi
api_url="http://127.0.0.1:$API_PORT"
echo "$api_url" > .run/api-url

if [ -z "${WEBHOOK_SECRET:-}" ]; then
  WEBHOOK_SECRET="$(secret .run/webhook-secret "'whsec_' + base64.b64encode(secrets.token_bytes(32)).decode()")"
  export WEBHOOK_SECRET
fi
if [ -z "${DASHBOARD_USERNAME:-}${DASHBOARD_PASSWORD:-}" ]; then
  export DASHBOARD_USERNAME=operator DASHBOARD_PASSWORD="$(secret .run/dashboard-password 'secrets.token_urlsafe(18)')"
fi
# Local development: let callbacks reach receivers on this machine.
export CALLBACK_ALLOWED_NETWORKS="${CALLBACK_ALLOWED_NETWORKS-127.0.0.1/32,::1/128}"

cat <<MSG

  API        http://127.0.0.1:$API_PORT/v1/jobs
  API docs   http://127.0.0.1:$API_PORT/docs   (OpenAPI: /openapi.json)
  Dashboard  http://127.0.0.1:$API_PORT/dashboard/   (user $DASHBOARD_USERNAME, password in .run/dashboard-password)
  Metrics    http://127.0.0.1:$API_PORT/metrics

  The llmjobs command (.venv/bin; see docs/client.md) reads these:
    export PATH="$PWD/.venv/bin:\$PATH" LLMJOBS_URL=$api_url LLMJOBS_API_KEY="$key"
    llmjobs submit "Write a haiku about queues" --wait;  llmjobs tail <id>

  Or with curl: submit a job, then read it back (the id is in the first answer):
    curl -s -X POST http://127.0.0.1:$API_PORT/v1/jobs -H "Authorization: Bearer $key" \\
         -H "Content-Type: application/json" -d '{"prompt": "Write a haiku about queues", "priority": "high"}'
    curl -s http://127.0.0.1:$API_PORT/v1/jobs/<id> -H "Authorization: Bearer $key"
    curl -sN http://127.0.0.1:$API_PORT/v1/jobs/<id>/events -H "Authorization: Bearer $key"   # live, as SSE

  Webhooks are signed with WEBHOOK_SECRET (in .run/webhook-secret); callback URLs on
  $CALLBACK_ALLOWED_NETWORKS are allowed.

MSG
exec honcho start -f Procfile "${processes[@]}"

"""The name of every Redis key the service writes beside RQ's own (`rq:*`).

How long each one lives is in docs/development/architecture.md §3; the clean-up (operations/cleanup.py)
finds the orphans and the lost TTLs by the prefixes below.
"""

from __future__ import annotations

import hashlib
from datetime import date

# A job's own keys, `<prefix><job id>`: useless once the job's hash is gone.
EVENTS_PREFIX = "llmjobs:events:"  # the job's SSE events, a stream
ANNOUNCED_PREFIX = "llmjobs:announced:"  # set once the job's end has been published
CANCEL_PREFIX = "llmjobs:cancel:"  # a client's cancel request, read by the worker every tick
LEASE_PREFIX = "llmjobs:lease:"  # kept alive by the worker running the job; gone: the worker is
LEASE_TTL_S = 15  # a running job is presumed lost this long after its last sign of life
COMPLETED_PREFIX = "llmjobs:completed:"  # set by the first run that completes it: a job run twice ends once
LIVE_TEXT_PREFIX = "llmjobs:text:"  # the text the running attempt has streamed so far
# A batch-tier job that ended without its result (canceled, timed out): the provider batches
# whose result for it, dropped, is in its usage already (a result read twice counts once).
BILLED_PREFIX = "llmjobs:billed:"
PER_JOB_PREFIXES = (
    EVENTS_PREFIX, COMPLETED_PREFIX, ANNOUNCED_PREFIX, CANCEL_PREFIX, LEASE_PREFIX, LIVE_TEXT_PREFIX, BILLED_PREFIX,
)  # fmt: skip
# A document job's file until its text is extracted (a PDF read natively: for the job's
# lifetime), then the text, for the job's lifetime: a retry re-runs failed analyses without
# extracting again.
UPLOAD_PREFIX = "llmjobs:upload:"
DOCUMENT_TEXT_PREFIX = "llmjobs:doctext:"

# Job ids whose end is not yet fully published (the scheduler republishes a stuck one).
UNPUBLISHED_ENDS_KEY = "llmjobs:ends:unpublished"
BATCH_PREFIX = "llmjobs:batch:"
# The batch tier's provider batches (jobs/running/provider_batches.py): one record per
# provider batch until every result is read into its jobs, then deleted. `<id>` is ours
# (made before the provider's exists); the record hash, `<id>:jobs` (its job ids, a list,
# written before the create) and `<id>:lease` (its owner, renewed while it polls).
PROVIDER_BATCH_PREFIX = "llmjobs:pbatch:"
OPEN_PROVIDER_BATCHES_KEY = "llmjobs:pbatches:open"  # our ids, scored by when their jobs were collected
# The provider batches our records held, scored by when each was recorded; kept a day, so
# that a crashed create's orphan is told apart from every batch we know.
RECORDED_PROVIDER_BATCHES_KEY = "llmjobs:pbatches:recorded"
COLLECTOR_LOCK_KEY = "llmjobs:pbatches:collector"  # held by the worker collecting batch-tier jobs
# A batch-tier document job's calls: `<call id>` a hash (the request, when it was queued,
# then its result), which the job's run waits on; the calls waiting to be collected.
PROVIDER_CALL_PREFIX = "llmjobs:pbcall:"
PROVIDER_CALLS_QUEUE_KEY = "llmjobs:pbcalls:queue"

# A client's keys.
CLIENT_PREFIX = "llmjobs:client:"  # + `<client>:jobs`: the client's jobs, newest last
IDEMPOTENCY_PREFIX = "llmjobs:idempotency:"
SUBMIT_WINDOW_PREFIX = "llmjobs:ratelimit:submits:"  # the admission script's moving windows
FLASK_LIMITER_PREFIX = "llmjobs:ratelimit"  # flask-limiter's own windows (cancel, redeliver)
STREAMS_PREFIX = "llmjobs:streams:"  # the client's open event streams
PENDING_WEBHOOKS_PREFIX = "llmjobs:webhooks-pending:"
USAGE_PREFIX = "llmjobs:usage:"  # + `<YYYY-MM-DD>:<client>`
# + `<client>:spent:<YYYY-MM>`: what the client's calls cost that month (`month`) and each day
# (`<YYYY-MM-DD>`); + `<client>:reserved`: its budget's reservations (`total`, one field per job
# holding one, and the `limit` and `window` the API last admitted with).
BUDGET_PREFIX = "llmjobs:budget:"
RESERVATION_FIELDS = ("total", "limit", "window")  # the reservations hash's fields that are not a job's

# Service-wide.
METRICS_KEY = "llmjobs:metrics"  # the Prometheus series every process adds to
WORKER_REPORTS_KEY = "llmjobs:metrics:workers"  # each worker process's last report
MAINTENANCE_RUNS_KEY = "llmjobs:maintenance:runs"  # totals of the clean-up's runs
MAINTENANCE_RECENT_KEY = "llmjobs:maintenance:recent"  # its last runs
MAINTENANCE_LOCK_KEY = "llmjobs:maintenance:lock"  # held while one runs
PROVIDER_PREFIX = "llmjobs:provider:"  # + `<API key fingerprint>:<part>`: the provider gate
# Job ids a worker has taken from their queue and not yet started, scored by when (ms,
# Redis' clock): pruned by the start, or by the scheduler's recovery (storage/claims.py).
CLAIMS_KEY = "llmjobs:claims"
# Written before a WAIT (REDIS_MIN_REPLICAS_ACK): once replicas have it, they have every
# write the caller made before it (storage/replication.confirm_replicated).
REPLICATION_MARK_KEY = "llmjobs:replication-mark"
REPLICATION_MARK_TTL_S = 60


def events_key(job_id: str) -> str:
    return EVENTS_PREFIX + job_id


def announced_key(job_id: str) -> str:
    return ANNOUNCED_PREFIX + job_id


def cancel_key(job_id: str) -> str:
    return CANCEL_PREFIX + job_id


def lease_key(job_id: str) -> str:
    return LEASE_PREFIX + job_id


def completed_key(job_id: str) -> str:
    return COMPLETED_PREFIX + job_id


def live_text_key(job_id: str) -> str:
    """Its meta holds the text only once the attempt has ended."""
    return LIVE_TEXT_PREFIX + job_id


def billed_key(job_id: str) -> str:
    return BILLED_PREFIX + job_id


def upload_key(job_id: str) -> str:
    return UPLOAD_PREFIX + job_id


def document_text_key(job_id: str) -> str:
    return DOCUMENT_TEXT_PREFIX + job_id


def batch_key(batch_id: str) -> str:
    return BATCH_PREFIX + batch_id


def provider_batch_key(local_id: str, part: str = "") -> str:
    """A provider batch's record (`part` ""), its job ids (`jobs`) or its lease (`lease`)."""
    return PROVIDER_BATCH_PREFIX + local_id + (f":{part}" if part else "")


def provider_call_key(call_id: str) -> str:
    return PROVIDER_CALL_PREFIX + call_id


def index_key(client: str) -> str:
    return f"{CLIENT_PREFIX}{client}:jobs"


def idempotency_key(client: str, idempotency_key: str) -> str:
    # Hashed: the client's key may be long or odd; its hash is a safe, fixed-size name.
    return f"{IDEMPOTENCY_PREFIX}{client}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


def submit_window_key(client: str, amount: int, window_s: int) -> str:
    return f"{SUBMIT_WINDOW_PREFIX}{client}:{amount}/{window_s}"


def streams_key(client: str) -> str:
    return STREAMS_PREFIX + client


def pending_webhooks_key(client: str) -> str:
    return PENDING_WEBHOOKS_PREFIX + client


def usage_key(day: date, client: str) -> str:
    return f"{USAGE_PREFIX}{day.isoformat()}:{client}"


def provider_key(api_key_fingerprint: str, part: str) -> str:
    return f"{PROVIDER_PREFIX}{api_key_fingerprint}:{part}"


def budget_spent_key(client: str, month: str) -> str:
    return f"{BUDGET_PREFIX}{client}:spent:{month}"


def budget_reserved_key(client: str) -> str:
    return f"{BUDGET_PREFIX}{client}:reserved"

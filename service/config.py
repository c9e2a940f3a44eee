"""Settings, read once from the environment and validated at start-up.

Every process (API, worker, scheduler) calls `load_settings()` first; a bad value stops
it with one line naming the variable instead of failing later, mid-request.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import astuple, dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Literal, cast

import limits
from environs import Env, EnvValidationError
from marshmallow import ValidationError, validate

from service.llm.pricing import ModelPrice
from service.webhooks.addresses import CallbackPolicy, CallbackRefused

# An operator password is tried over the network: short ones fall to guessing, even at
# OPERATOR_LOGIN_RATE_LIMIT.
MIN_OPERATOR_PASSWORD = 12


PROVIDER_BATCH_WINDOW_S = 24 * 3600  # Anthropic answers a Message Batch within this, or expires it


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class JobLimits:
    """Bounds on a job request, documented in docs/settings.md and the OpenAPI description."""

    # The provider's own bound on a Messages request (32 MB: Anthropic's "Request size limits"):
    # a body carries images and PDFs, and any body it would refuse is refused here first.
    max_body_bytes: int = 32_000_000
    max_messages: int = 200
    max_output_tokens: int = 64000
    max_metadata_keys: int = 16
    max_timeout_s: int = 600


BudgetWindow = Literal["day", "month"]


@dataclass(frozen=True)
class ClientBudget:
    """A client's spend budget: at most `limit_micro_usd` per UTC calendar day or month."""

    limit_micro_usd: int  # micro-dollars, as the spend counters keep them (exact integers)
    window: BudgetWindow


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"  # with Sentinel: only its password and database count
    # Sentinel (host, port) pairs: every process finds the primary through them and follows
    # it when Sentinel promotes a replica; empty: REDIS_URL names the one Redis.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "llmjobs"
    # A write that answers a client (submit, batch, document, retry) is acknowledged only once
    # this many replicas have it (Redis WAIT), within redis_ack_timeout_ms, else 503.
    redis_min_replicas_ack: int = 0
    redis_ack_timeout_ms: int = 500
    api_keys: dict[str, str] = field(default_factory=dict)  # bearer key -> client name
    default_model: str = "claude-sonnet-5-5"
    limits: JobLimits = field(default_factory=JobLimits)
    result_ttl_s: int = 7 * 24 * 3600
    usage_retention_days: int = 400  # how long a day's usage counters are kept
    # LLM jobs one worker process runs at once, as asyncio tasks: each waits on the
    # provider for seconds to minutes and costs ~50 KB while it does.
    worker_concurrency: int = 200
    worker_processes: int = 1  # worker processes one `worker.py` runs (more cores)
    # Share of a process's slots never given to `low` jobs, so a flood of low work never
    # delays a `high` (or `default`) one (floored; never every slot).
    worker_high_reserve: float = 0.1
    webhook_concurrency: int = 8  # deliveries one worker process makes at once, beside its LLM slots
    worker_shutdown_grace_s: float = 30.0  # SIGTERM: running jobs get this long to finish
    llm_max_in_flight: int = 0  # LLM calls in flight across all processes; 0 = no cap
    # New calls wait for the provider's reset when its rate-limit headers say fewer than
    # this many requests (or tokens) are left.
    llm_ratelimit_request_margin: int = 1
    llm_ratelimit_token_margin: int = 1000
    progress_interval_s: float = 0.25
    max_attempts: int = 5  # LLM calls per job, retries included
    # A stream silent this long is dead (healthy ones send pings): the attempt fails as a
    # retryable timeout instead of waiting out the whole job deadline.
    llm_read_timeout_s: float = 120.0
    retry_base_s: float = 2.0  # first retry waits up to this long (full jitter), doubling each time
    retry_max_s: float = 300.0  # cap on one wait (a provider's retry-after may ask for more)
    idempotency_ttl_s: int = 24 * 3600
    cleanup_interval_s: int = 300  # the scheduler's periodic clean-up (service.tasks.maintenance)
    sse_max_streams: int = 24  # per API process; keep below API_THREADS
    sse_keepalive_s: float = 15.0  # a comment line on a silent stream, so proxies keep it open
    sse_max_streams_per_client: int = 8  # open streams of one client, across API processes
    sse_max_duration_s: float = 900.0  # then the stream ends; the client resumes with Last-Event-ID
    webhook_secret: str | None = None  # whsec_...: the secret of clients without one of their own
    # client -> its own secrets: one, or two during a rotation (each delivery signed with both)
    webhook_secrets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    callback_policy: CallbackPolicy = field(default_factory=CallbackPolicy)
    callback_resolve_timeout_s: float = 5.0  # a callback host's DNS answer, at submit and at delivery
    webhook_timeout_s: float = 10.0
    webhook_retry_schedule_s: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200)
    rate_limit: str = "600/minute"  # submits per client, flask-limiter syntax
    rate_limit_overrides: dict[str, str] = field(default_factory=dict)  # client -> limit
    change_rate_limit: str = "120/minute"  # cancel and webhook redelivery requests per client
    list_rate_limit: str = "120/minute"  # GET /v1/jobs per client: a page reads up to 100 jobs
    # MiB of document uploads per client (each counts its size, rounded up): what one client
    # can make Redis hold, whatever its submit limit.
    upload_rate_limit: str = "2048/hour"
    operator_login_rate_limit: str = "10/minute"  # wrong operator passwords per address
    webhook_max_pending_per_client: int = 100  # a redelivery past it is refused
    queue_max_depth: int = 10000  # submits to a deeper queue answer 503; 0 = no bound
    # Operator login for rq-dashboard at /dashboard/; both or neither (neither: no dashboard).
    dashboard_username: str | None = None
    dashboard_password: str | None = None
    # /metrics behind the same operator login (it shows costs, tokens and queue depths).
    metrics_operator_auth: bool = False
    max_batch_jobs: int = 100  # jobs in one POST /v1/batches
    # The batch tier (Anthropic's Message Batches API, half price): batch-tier jobs are
    # collected for up to batch_collect_s (or until batch_max_requests wait), sent as one
    # provider batch, which is polled every batch_poll_s. A batch-tier job's timeout_s
    # defaults to and may reach batch_timeout_s (None: 24 h plus the collection time).
    batch_collect_s: float = 30.0
    batch_max_requests: int = 10_000
    batch_poll_s: float = 10.0
    batch_timeout_s: int | None = None
    # model -> (USD per million input tokens, USD per million output tokens)
    price_overrides: dict[str, ModelPrice] = field(default_factory=dict)
    client_budgets: dict[str, ClientBudget] = field(default_factory=dict)  # client -> its spend budget
    # Document jobs (POST /v1/documents): upload bounds, the text one call reads before a
    # document is analysed in chunks, and the hard limit on extracting its text.
    max_document_bytes: int = 20 * 1024 * 1024
    max_document_pages: int = 500
    document_chunk_tokens: int = 50_000
    document_extract_timeout_s: float = 60.0
    # The extracted text: past either bound the job fails with a document_error, nothing cut.
    max_document_characters: int = 2_000_000
    max_document_chunks: int = 40  # chunks of DOCUMENT_CHUNK_TOKENS; each analysis makes one call per chunk
    # The callers' own tools, each off when unset: bug reports to Sentry, traces over OTLP
    # (http/protobuf; the OpenTelemetry SDK reads this and the other OTEL_* variables itself).
    sentry_dsn: str | None = None
    otlp_endpoint: str | None = None
    # Without OTEL_TRACES_SAMPLER: a caller's sampling decision is kept, and this share of the
    # requests that come with no trace context start a trace (OTEL_TRACES_SAMPLER_ARG).
    traces_sampler: str | None = None
    traces_root_ratio: float = 0.1

    @property
    def batch_tier_timeout_s(self) -> int:
        """A batch-tier job's default and largest timeout_s: the provider answers a batch
        within 24 h, after the collection."""
        return self.batch_timeout_s or PROVIDER_BATCH_WINDOW_S + math.ceil(self.batch_collect_s)

    def webhook_secrets_for(self, client: str) -> tuple[str, ...]:
        """The secrets a client's webhooks are signed with; none: webhooks are off for it."""
        if client in self.webhook_secrets:
            return self.webhook_secrets[client]
        return () if self.webhook_secret is None else (self.webhook_secret,)

    @property
    def webhooks_on(self) -> bool:
        return self.webhook_secret is not None or bool(self.webhook_secrets)


def parse_api_keys(raw: str) -> dict[str, str]:
    """`name=key,name=key` -> {key: name}. Keys must be unique and at least 16 chars."""
    keys: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, key = pair.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ValidationError("expected comma-separated name=key pairs")
        if len(key) < 16:
            raise ValidationError(f"the key of client {name!r} is shorter than 16 characters")
        if key in keys:
            raise ValidationError(f"client {name!r} reuses another client's key")
        keys[key] = name
    if not keys:
        raise ValidationError("at least one name=key pair is required")
    return keys


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` -> ((host, port), ...)."""
    sentinels = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValidationError(f"expected comma-separated host:port pairs, got {item!r}")
        sentinels.append((host.strip("[]"), int(port)))
    return tuple(sentinels)


def parse_prices(raw: str) -> dict[str, ModelPrice]:
    """JSON `{"model": [input, output]}` or `{"model": [input, output, cache_write_5m,
    cache_write_1h, cache_read]}`, USD per million tokens (a model given two figures has
    no known cache prices: a call that wrote or read the cache is not priced)."""
    try:
        data = json.loads(raw)
        prices = {str(m): ModelPrice(*(float(v) for v in p)) for m, p in data.items() if len(p) in (2, 5)}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValidationError(f'expected JSON like {{"model": [3.0, 15.0]}}: {exc}') from exc
    if len(prices) != len(data) or any(v is not None and v < 0 for p in prices.values() for v in astuple(p)):
        raise ValidationError(
            "each model needs two or five non-negative prices: [input, output] or "
            "[input, output, cache_write_5m, cache_write_1h, cache_read]"
        )
    return prices


def parse_webhook_secret(raw: str | None) -> str | None:
    """A Standard Webhooks secret: `whsec_` + base64 of at least 24 random bytes."""
    if raw is None:  # unset: webhooks are off
        return None
    return _checked_webhook_secret(raw)


def _checked_webhook_secret(raw: str) -> str:
    if not raw.startswith("whsec_"):
        raise ValidationError("expected whsec_ followed by base64")
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except ValueError as exc:
        raise ValidationError("the part after whsec_ is not base64") from exc
    if len(key) < 24:
        raise ValidationError("the secret is shorter than 24 bytes")
    return raw


def parse_webhook_secrets(raw: str) -> dict[str, tuple[str, ...]]:
    """`client=whsec_...,client=whsec_...`; a client named twice has two secrets (a rotation)."""
    secrets: dict[str, tuple[str, ...]] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        client, sep, secret = (part.strip() for part in pair.partition("="))
        if not sep or not client:
            raise ValidationError("expected comma-separated client=whsec_... pairs")
        try:
            checked = _checked_webhook_secret(secret)
        except ValidationError as exc:
            raise ValidationError(f"client {client!r}: {' '.join(exc.messages)}") from None
        secrets[client] = (*secrets.get(client, ()), checked)
        if len(secrets[client]) > 2:
            raise ValidationError(f"client {client!r} has more than two secrets (two at most, during a rotation)")
    return secrets


def parse_callback_policy(raw: str) -> CallbackPolicy:
    """`CALLBACK_ALLOWED_NETWORKS`: comma-separated CIDRs, addresses or host names."""
    try:
        return CallbackPolicy.parse(raw)
    except CallbackRefused:
        raise ValidationError("expected comma-separated CIDRs, addresses or host names") from None


def parse_schedule(raw: str) -> tuple[float, ...]:
    """`5,30,120`: seconds to wait before each retry."""
    try:
        waits = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise ValidationError("expected comma-separated seconds, e.g. 5,30,120") from exc
    if not waits or any(wait <= 0 for wait in waits):
        raise ValidationError("every wait must be a positive number of seconds")
    return waits


def parse_rate_limit(raw: str) -> str:
    """flask-limiter syntax: `600/minute`, or several: `10/second;600/minute`."""
    try:
        limits.parse_many(raw)
    except ValueError as exc:
        raise ValidationError(f"not a rate limit like 600/minute: {raw!r}") from exc
    return raw


def parse_rate_limit_overrides(raw: str) -> dict[str, str]:
    """`client=limit,client=limit`, e.g. `batch=6000/minute,trial=10/minute`."""
    overrides = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        client, sep, limit = pair.partition("=")
        if not sep or not client.strip():
            raise ValidationError("expected comma-separated client=limit pairs")
        overrides[client.strip()] = parse_rate_limit(limit.strip())
    return overrides


def parse_client_budgets(raw: str) -> dict[str, ClientBudget]:
    """`alpha=50/day,beta=1000.50/month`: USD (cents allowed) per UTC calendar day or month."""
    budgets: dict[str, ClientBudget] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        client, sep, budget = (part.strip() for part in pair.partition("="))
        amount, slash, window = (part.strip() for part in budget.partition("/"))
        if not sep or not client or not slash:
            raise ValidationError(f"expected comma-separated client=USD/day or client=USD/month pairs, not {pair!r}")
        if window not in ("day", "month"):
            raise ValidationError(f"client {client!r}: the window is day or month, not {window!r}")
        try:
            usd = Decimal(amount)
        except InvalidOperation:
            raise ValidationError(f"client {client!r}: {amount!r} is not an amount in USD") from None
        if not usd.is_finite() or usd <= 0 or usd != usd.quantize(Decimal("0.01")):
            raise ValidationError(f"client {client!r}: the budget is a positive amount in USD, cents at most")
        if client in budgets:
            raise ValidationError(f"client {client!r} has two budgets")
        budgets[client] = ClientBudget(int(usd * 1_000_000), cast(BudgetWindow, window))
    return budgets


def load_settings(*, require_api_keys: bool = False, require_llm_key: bool = False) -> Settings:
    """Read and validate every setting; raise SettingsError naming each bad variable."""
    env = Env(eager=False)
    env.add_parser("api_keys", parse_api_keys)
    env.add_parser("prices", parse_prices)
    env.add_parser("sentinels", parse_sentinels)
    env.add_parser("webhook_secret", parse_webhook_secret)
    env.add_parser("webhook_secrets", parse_webhook_secrets)
    env.add_parser("callback_policy", parse_callback_policy)
    env.add_parser("schedule", parse_schedule)
    env.add_parser("rate_limit", parse_rate_limit)
    env.add_parser("rate_limit_overrides", parse_rate_limit_overrides)
    env.add_parser("client_budgets", parse_client_budgets)
    positive = validate.Range(min=1)
    defaults, default_limits = Settings(), JobLimits()
    traces_sampler = env.str("OTEL_TRACES_SAMPLER", None)
    settings = Settings(
        redis_url=env.str("REDIS_URL", defaults.redis_url, validate=_redis_url),
        redis_sentinels=env.sentinels("REDIS_SENTINELS", ""),
        redis_sentinel_master=env.str(
            "REDIS_SENTINEL_MASTER", defaults.redis_sentinel_master, validate=validate.Length(min=1)
        ),
        redis_min_replicas_ack=env.int(
            "REDIS_MIN_REPLICAS_ACK", defaults.redis_min_replicas_ack, validate=validate.Range(min=0)
        ),
        redis_ack_timeout_ms=env.int("REDIS_ACK_TIMEOUT_MS", defaults.redis_ack_timeout_ms, validate=positive),
        # Only the API serves clients; workers and the scheduler never read the keys.
        api_keys=env.api_keys("API_KEYS") if require_api_keys else {},
        default_model=env.str("LLM_DEFAULT_MODEL", defaults.default_model, validate=validate.Length(min=1)),
        result_ttl_s=env.int("RESULT_TTL_S", defaults.result_ttl_s, validate=positive),
        usage_retention_days=env.int("USAGE_RETENTION_DAYS", defaults.usage_retention_days, validate=positive),
        worker_concurrency=env.int("WORKER_CONCURRENCY", defaults.worker_concurrency, validate=positive),
        worker_processes=env.int("WORKER_PROCESSES", defaults.worker_processes, validate=positive),
        worker_high_reserve=env.float(
            "WORKER_HIGH_RESERVE", defaults.worker_high_reserve, validate=validate.Range(min=0, max=1)
        ),
        webhook_concurrency=env.int("WEBHOOK_CONCURRENCY", defaults.webhook_concurrency, validate=positive),
        worker_shutdown_grace_s=env.float(
            "WORKER_SHUTDOWN_GRACE_S", defaults.worker_shutdown_grace_s, validate=validate.Range(min=0)
        ),
        llm_max_in_flight=env.int("LLM_MAX_IN_FLIGHT", defaults.llm_max_in_flight, validate=validate.Range(min=0)),
        llm_ratelimit_request_margin=env.int(
            "LLM_RATELIMIT_REQUEST_MARGIN", defaults.llm_ratelimit_request_margin, validate=validate.Range(min=0)
        ),
        llm_ratelimit_token_margin=env.int(
            "LLM_RATELIMIT_TOKEN_MARGIN", defaults.llm_ratelimit_token_margin, validate=validate.Range(min=0)
        ),
        progress_interval_s=env.float(
            "PROGRESS_INTERVAL_S", defaults.progress_interval_s, validate=validate.Range(min=0)
        ),
        price_overrides=env.prices("LLM_PRICES", "{}"),
        client_budgets=env.client_budgets("CLIENT_BUDGETS", ""),
        max_attempts=env.int("LLM_MAX_ATTEMPTS", defaults.max_attempts, validate=positive),
        llm_read_timeout_s=env.float(
            "LLM_READ_TIMEOUT_S", defaults.llm_read_timeout_s, validate=validate.Range(min=0, min_inclusive=False)
        ),
        retry_base_s=env.float("RETRY_BASE_S", defaults.retry_base_s, validate=validate.Range(min=0)),
        retry_max_s=env.float("RETRY_MAX_S", defaults.retry_max_s, validate=validate.Range(min=0)),
        idempotency_ttl_s=env.int("IDEMPOTENCY_TTL_S", defaults.idempotency_ttl_s, validate=positive),
        cleanup_interval_s=env.int("CLEANUP_INTERVAL_S", defaults.cleanup_interval_s, validate=positive),
        sse_max_streams=env.int("SSE_MAX_STREAMS", defaults.sse_max_streams, validate=positive),
        sse_keepalive_s=env.float("SSE_KEEPALIVE_S", defaults.sse_keepalive_s, validate=validate.Range(min=1)),
        sse_max_streams_per_client=env.int(
            "SSE_MAX_STREAMS_PER_CLIENT", defaults.sse_max_streams_per_client, validate=positive
        ),
        sse_max_duration_s=env.float("SSE_MAX_DURATION_S", defaults.sse_max_duration_s, validate=validate.Range(min=1)),
        webhook_secret=env.webhook_secret("WEBHOOK_SECRET", None),
        webhook_secrets=env.webhook_secrets("WEBHOOK_SECRETS", ""),
        callback_policy=env.callback_policy("CALLBACK_ALLOWED_NETWORKS", ""),
        callback_resolve_timeout_s=env.float(
            "CALLBACK_RESOLVE_TIMEOUT_S",
            defaults.callback_resolve_timeout_s,
            validate=validate.Range(min=0, min_inclusive=False),
        ),
        webhook_timeout_s=env.float("WEBHOOK_TIMEOUT_S", defaults.webhook_timeout_s, validate=positive),
        rate_limit=env.rate_limit("RATE_LIMIT", defaults.rate_limit),
        rate_limit_overrides=env.rate_limit_overrides("RATE_LIMIT_OVERRIDES", ""),
        change_rate_limit=env.rate_limit("CHANGE_RATE_LIMIT", defaults.change_rate_limit),
        list_rate_limit=env.rate_limit("LIST_RATE_LIMIT", defaults.list_rate_limit),
        upload_rate_limit=env.rate_limit("UPLOAD_RATE_LIMIT", defaults.upload_rate_limit),
        operator_login_rate_limit=env.rate_limit("OPERATOR_LOGIN_RATE_LIMIT", defaults.operator_login_rate_limit),
        webhook_max_pending_per_client=env.int(
            "WEBHOOK_MAX_PENDING_PER_CLIENT", defaults.webhook_max_pending_per_client, validate=positive
        ),
        queue_max_depth=env.int("QUEUE_MAX_DEPTH", defaults.queue_max_depth, validate=validate.Range(min=0)),
        dashboard_username=env.str("DASHBOARD_USERNAME", None, validate=validate.Length(min=1)),
        dashboard_password=env.str(
            "DASHBOARD_PASSWORD",
            None,
            validate=validate.Length(min=MIN_OPERATOR_PASSWORD, error="at least {min} characters"),
        ),
        metrics_operator_auth=env.bool("METRICS_OPERATOR_AUTH", defaults.metrics_operator_auth),
        max_batch_jobs=env.int("MAX_BATCH_JOBS", defaults.max_batch_jobs, validate=positive),
        batch_collect_s=env.float("BATCH_COLLECT_S", defaults.batch_collect_s, validate=validate.Range(min=0)),
        batch_max_requests=env.int(
            "BATCH_MAX_REQUESTS", defaults.batch_max_requests, validate=validate.Range(min=1, max=100_000)
        ),
        batch_poll_s=env.float(
            "BATCH_POLL_S", defaults.batch_poll_s, validate=validate.Range(min=0, min_inclusive=False)
        ),
        batch_timeout_s=env.int("BATCH_TIMEOUT_S", None, validate=positive),
        max_document_bytes=env.int("MAX_DOCUMENT_BYTES", defaults.max_document_bytes, validate=positive),
        max_document_pages=env.int("MAX_DOCUMENT_PAGES", defaults.max_document_pages, validate=positive),
        document_chunk_tokens=env.int(
            "DOCUMENT_CHUNK_TOKENS", defaults.document_chunk_tokens, validate=validate.Range(min=100)
        ),
        document_extract_timeout_s=env.float(
            "DOCUMENT_EXTRACT_TIMEOUT_S",
            defaults.document_extract_timeout_s,
            validate=validate.Range(min=0, min_inclusive=False),
        ),
        max_document_characters=env.int("MAX_DOCUMENT_CHARACTERS", defaults.max_document_characters, validate=positive),
        max_document_chunks=env.int("MAX_DOCUMENT_CHUNKS", defaults.max_document_chunks, validate=positive),
        sentry_dsn=env.str("SENTRY_DSN", None, validate=_http_url),
        otlp_endpoint=env.str("OTEL_EXPORTER_OTLP_ENDPOINT", None, validate=_http_url),
        traces_sampler=traces_sampler,
        # With OTEL_TRACES_SAMPLER set, its ARG is that sampler's, read by the SDK.
        traces_root_ratio=defaults.traces_root_ratio
        if traces_sampler
        else env.float("OTEL_TRACES_SAMPLER_ARG", defaults.traces_root_ratio, validate=validate.Range(min=0, max=1)),
        webhook_retry_schedule_s=env.schedule(
            "WEBHOOK_RETRY_SCHEDULE", ",".join(map(str, defaults.webhook_retry_schedule_s))
        ),
        limits=JobLimits(
            max_body_bytes=env.int("MAX_BODY_BYTES", default_limits.max_body_bytes, validate=positive),
            max_messages=env.int("MAX_MESSAGES", default_limits.max_messages, validate=positive),
            max_output_tokens=env.int("MAX_OUTPUT_TOKENS", default_limits.max_output_tokens, validate=positive),
            max_metadata_keys=env.int(
                "MAX_METADATA_KEYS", default_limits.max_metadata_keys, validate=validate.Range(min=0)
            ),
            max_timeout_s=env.int("JOB_TIMEOUT_S", default_limits.max_timeout_s, validate=positive),
        ),
    )
    if require_llm_key:
        # Read by the anthropic SDK itself; checked here so a worker fails at start, not per job.
        env.str("ANTHROPIC_API_KEY", validate=validate.Length(min=1))
        env.str("ANTHROPIC_BASE_URL", None, validate=validate.URL(require_tld=False, schemes={"http", "https"}))
    try:
        env.seal()
    except EnvValidationError as exc:
        # environs builds error_messages as a dict of lists (typed as marshmallow's messages)
        raise SettingsError(
            "; ".join(
                f"{name}: {' '.join(map(str, msgs))}"
                for name, msgs in sorted(cast("dict[str, list[str]]", exc.error_messages).items())
            )
        ) from None
    if (settings.dashboard_username is None) != (settings.dashboard_password is None):
        raise SettingsError("DASHBOARD_USERNAME, DASHBOARD_PASSWORD: set both (dashboard on) or neither (off)")
    if settings.redis_sentinels and settings.redis_url.startswith("unix://"):
        raise SettingsError("REDIS_URL: with REDIS_SENTINELS it gives the password and database: use redis://")
    if settings.metrics_operator_auth and settings.dashboard_password is None:
        raise SettingsError("METRICS_OPERATOR_AUTH: needs the operator login (DASHBOARD_USERNAME, DASHBOARD_PASSWORD)")
    # One policy object carries the deadline to both the API's check and the delivery's.
    return replace(
        settings,
        callback_policy=replace(settings.callback_policy, resolve_timeout_s=settings.callback_resolve_timeout_s),
    )


_http_url = validate.URL(require_tld=False, schemes={"http", "https"})


def _redis_url(value: str) -> None:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValidationError("must start with redis://, rediss:// or unix://")

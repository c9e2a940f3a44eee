"""The job record: our fields of an RQ job, declared once with their types and defaults.

They live in `job.meta`, which RQ serializes (JSON), saves and restores with the job: every
save path (`job.save_meta()`, RQ's own saves, the guarded save of a running job) keeps
working on it. `JobRecord(job)` is a typed view over that dict; it holds the job, not the
dict, because code rebinds `job.meta` (adopting a winner's record, undoing a start). A
field that is absent reads as its default and is not written by the read: the stored JSON
is exactly what was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, NotRequired, Protocol, TypedDict, TypeVar, overload

T = TypeVar("T")

Priority = Literal["high", "default", "low"]  # in dequeue order (storage/queues.PRIORITIES)
Tier = Literal["standard", "batch"]  # storage/queues.TIERS; "batch": through a provider batch
Kind = Literal["message", "document"]
MESSAGE: Final = "message"  # one Messages call
DOCUMENT: Final = "document"  # a document's extraction and analyses
StepStatus = Literal["pending", "running", "succeeded", "failed", "canceled"]  # documents/steps.STEP_*
WebhookDeliveryState = Literal["pending", "delivered", "failed", "gone"]  # pending -> delivered | failed | gone (410)

# The error types the service writes itself. A provider's error keeps the provider's own
# `type` (rate_limit_error, overloaded_error, invalid_request_error, authentication_error,
# permission_error, not_found_error, request_too_large, api_error, ..., or http_<status>
# when it sent none): that list is the provider's, open-ended, so it is typed `str`.
ServiceErrorType = Literal[
    "timeout",  # the job's deadline passed, or the provider did not answer in time
    "connection_error",  # the provider could not be reached
    "api_error",  # the SDK failed in a way it does not classify
    "canceled",  # canceled on request
    "stopped",  # stopped by an operator
    "worker_lost",  # its worker died and it had no attempts left
    "budget_exceeded",  # its client's spend budget had no room for another run (a retry, a recovery)
    "document_error",  # a document could not be read
    "invalid_output",  # a reply that is not the JSON asked for (structured outputs; a JSON analysis, twice)
    "analysis_failed",  # every analysis of a document failed
    "internal_error",  # failed without recording why (shown, never stored)
    "unreadable_record",  # its record was rewritten by another serializer (shown, never stored)
]
ErrorType = ServiceErrorType | str


class JobError(TypedDict):
    type: ErrorType
    message: str
    retryable: bool


def job_error(error_type: ServiceErrorType, message: str, *, retryable: bool = False) -> JobError:
    """An error the service itself records."""
    return {"type": error_type, "message": message, "retryable": retryable}


class Usage(TypedDict):
    """Tokens as the provider reports them, under its names. `input_tokens` excludes the
    prompt cache's (written and read tokens are counted apart); `output_tokens` includes
    thinking (`output_tokens_details.thinking_tokens` is a part of it, never added)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: NotRequired[int]  # the prompt cache's, when the provider reports them
    cache_read_input_tokens: NotRequired[int]
    cache_creation: NotRequired[dict[str, int]]  # the written tokens by lifetime (ephemeral_5m/1h_input_tokens)
    output_tokens_details: NotRequired[dict[str, int]]
    server_tool_use: NotRequired[dict[str, int]]  # web_search_requests, web_fetch_requests
    service_tier: NotRequired[str | None]
    inference_geo: NotRequired[str | None]
    speed: NotRequired[str | None]


class MessageResult(TypedDict):
    """A message job's completed reply (its text is the record's `text`)."""

    message: dict[str, Any]  # the Message as the provider finished it: every block, stop and usage field
    output: Any  # the parsed JSON when the request asked for structured outputs, else None
    stop_reason: str | None
    usage: Usage
    cost_usd: float | None  # None: the table cannot price it


class AnalysisResult(TypedDict):
    """One analysis of a document, answered."""

    output: Any  # the parsed JSON for a JSON analysis, else the text
    text: str  # the reply as the model wrote it
    usage: Usage
    cost_usd: float | None


class DocumentResult(TypedDict):
    """A document job's result: the analyses that succeeded, and the totals of every step."""

    analyses: dict[str, AnalysisResult]
    usage: Usage
    cost_usd: float | None


class Document(TypedDict):
    """What was uploaded for a document job."""

    filename: str
    media_type: str
    bytes: int
    pages: int | None  # known once extracted
    characters: int | None  # the extracted text's length (None for a PDF the model reads itself)


class Step(TypedDict):
    """One step of a document job: `extract`, then one per analysis."""

    name: str
    status: StepStatus
    attempts: int  # LLM calls made for it
    usage: Usage
    cost_usd: float | None
    error: JobError | None


class WebhookState(TypedDict):
    """A webhook's delivery state (a job's, or a batch's)."""

    id: str  # the webhook-id, the same across retries and redeliveries
    url: str
    state: WebhookDeliveryState
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: float | None  # epoch s


class ProviderBatchRef(TypedDict):
    """The provider batch a batch-tier job is in, while it is there."""

    id: str  # the provider's (msgbatch_...)
    submitted_at: str  # ISO 8601, when it was created


class HasMeta(Protocol):
    meta: dict[str, Any]


_ABSENT: Any = object()


class Field(Generic[T]):
    """One key of `job.meta`, named after the attribute. Without a default or a factory it
    is required: reading it absent raises KeyError, as `meta[key]` would."""

    def __init__(self, default: T = _ABSENT, *, factory: Callable[[], T] | None = None) -> None:
        self.default, self.factory = default, factory

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, record: None, owner: type) -> Field[T]: ...
    @overload
    def __get__(self, record: JobRecord, owner: type) -> T: ...
    def __get__(self, record: JobRecord | None, owner: type) -> Field[T] | T:
        if record is None:
            return self
        try:
            return record.job.meta[self.key]
        except KeyError:
            if self.factory is not None:
                return self.factory()  # a fresh value, not stored: store it by assigning it
            if self.default is _ABSENT:
                raise
            return self.default

    def __set__(self, record: JobRecord, value: T) -> None:
        record.job.meta[self.key] = value

    def __delete__(self, record: JobRecord) -> None:
        record.job.meta.pop(self.key, None)


class JobRecord:
    """Our fields of one job, read and written in its `job.meta`."""

    __slots__ = ("job",)

    # Set at submit, fixed for the job's life.
    client = Field[str]()  # who submitted it: the only client that sees it, and is billed for it
    priority = Field[Priority]()  # the queue it runs on
    model = Field[str]()  # the model asked for
    metadata = Field[dict[str, str]](factory=dict)  # the client's own small map, echoed back
    timeout_s = Field[int]()  # the job's deadline, from its first attempt
    callback_url = Field[str | None](None)  # where its webhook goes (None: no webhook)
    batch_id = Field[str | None](None)  # the batch it was submitted in
    kind = Field[Kind](MESSAGE)  # stored for document jobs only
    tier = Field[Tier]("standard")  # stored for batch-tier jobs only: sent through the Message Batches API
    # The submit's trace context (W3C `traceparent`, `tracestate`), when tracing is on: the
    # worker's spans and the webhook continue the caller's trace (service/tracing.py). A
    # webhook delivery job carries its job's.
    trace_context = Field[dict[str, str] | None](None)
    # A budgeted client's job: the worst case of one run, in micro-USD, which its client's
    # budget holds reserved while it runs (0: no budget, nothing reserved).
    reservation_micro_usd = Field[int](0)

    # A run's progress.
    attempts = Field[int](0)  # LLM calls made for the job, over all its runs
    attempt_limit = Field[int](1)  # `attempts` may reach this in the current run
    deadline_at = Field[float | None](None)  # epoch s; set by the run's first attempt, deleted for a new run
    text = Field[str]("")  # the reply's text once the attempt ended (meanwhile in its live text key)
    output_tokens = Field[int](0)  # streamed so far (chunks), then the exact count
    next_attempt_at = Field[float | None](None)  # epoch s, while it waits to retry
    result = Field[MessageResult | DocumentResult | None](None)  # set once, by the completing save
    error = Field[JobError | None](None)  # the last attempt's error; the final one once failed
    canceled_at = Field[float | None](None)  # epoch s: it ended because a client canceled it
    webhook = Field[WebhookState | None](None)  # its webhook's delivery, from its end on
    provider_batch = Field[ProviderBatchRef | None](None)  # a batch-tier job's, from its send to its result

    # A document job's own.
    document = Field[Document]()  # what was uploaded
    steps = Field[list[Step]](factory=list)  # extract, then one per analysis
    analyses = Field[dict[str, AnalysisResult]](factory=dict)  # answered analyses, by name
    partials = Field[dict[str, list[str]]](factory=dict)  # a long text's chunk answers so far, by analysis
    percent = Field[int](0)  # how much of its work is done
    counted_in_usage = Field[bool](False)  # its completion is in /v1/usage's `jobs`: a re-run's is not again

    # rq-scheduler's, on a periodic job (the clean-up), not ours.
    interval = Field[int | None](None)  # seconds between runs

    def __init__(self, job: HasMeta):
        self.job = job


def has_unreadable_record(job: HasMeta) -> bool:
    """RQ keeps a meta it cannot deserialize as `{"unserialized": <raw>}`: another tool
    rewrote the job with another serializer (`rq requeue` without `--serializer` pickles
    it). Our fields are gone; the raw bytes are never unpickled."""
    return set(job.meta) == {"unserialized"}


@dataclass
class _Unsaved:
    """A job not created yet: its meta alone."""

    meta: dict[str, Any] = field(default_factory=dict)


def new_meta(
    *,
    client: str,
    priority: Priority,
    model: str,
    metadata: dict[str, str],
    timeout_s: int,
    attempt_limit: int,
    callback_url: str | None,
    batch_id: str | None = None,
    document: Document | None = None,
    steps: list[Step] | None = None,
    trace_context: dict[str, str] | None = None,
    reservation_micro_usd: int = 0,
    tier: Tier = "standard",
) -> dict[str, Any]:
    """A new job's meta, for `Queue.prepare_data`; a document job has its `document` and `steps`."""
    record = JobRecord(_Unsaved())
    record.client = client
    record.priority = priority
    record.model = model
    record.metadata = metadata
    record.timeout_s = timeout_s
    record.attempts = 0
    record.attempt_limit = attempt_limit  # fixed per run, like its deadline
    record.output_tokens = 0
    record.text = ""
    record.callback_url = callback_url
    if document is not None:
        record.kind = DOCUMENT
        record.document = document
        record.steps = steps or []
        record.percent = 0
    if batch_id is not None:
        record.batch_id = batch_id
    if trace_context is not None:
        record.trace_context = trace_context
    if reservation_micro_usd:
        record.reservation_micro_usd = reservation_micro_usd
    if tier != "standard":
        record.tier = tier
    return record.job.meta


def delivery_meta(*, trace_context: dict[str, str] | None) -> dict[str, Any] | None:
    """A webhook delivery job's meta: its job's trace context, when it has one."""
    if trace_context is None:
        return None
    record = JobRecord(_Unsaved())
    record.trace_context = trace_context
    return record.job.meta

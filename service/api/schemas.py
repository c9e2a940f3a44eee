"""Request and response schemas: validation here, OpenAPI from the same classes.

Fixed bounds live on the fields; bounds an operator can configure (see
`service.config.JobLimits`) are checked in `JobRequestSchema.check_limits`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, get_args

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

from service.api.auth import current_client
from service.api.context import EXTENSION_KEY
from service.config import BudgetWindow, Settings
from service.jobs.observability.usage import GROUP_BYS, MAX_REPORT_DAYS
from service.jobs.push.batches import BatchStatus
from service.jobs.storage.queues import PRIORITIES, TIERS
from service.jobs.storage.record import Kind, StepStatus, WebhookDeliveryState
from service.jobs.storage.status import PUBLIC_STATUSES
from service.llm.params import schema_for
from service.webhooks.addresses import CallbackRefused, CallbackTarget, parse_callback_url

METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
MODEL_NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$", error="not a model name")


def metadata_field(description: str) -> fields.Dict:
    """A client's string map, echoed back (a job's or a batch's)."""
    return fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=METADATA_KEY_MAX)),
        values=fields.String(validate=validate.Length(max=METADATA_VALUE_MAX)),
        load_default=dict,
        metadata={"description": description},
    )


def tier_field() -> fields.String:
    return fields.String(
        load_default="standard",
        validate=validate.OneOf(TIERS),
        metadata={"description": "`batch`: each call goes through Anthropic's Message Batches API at half price, "
                  "answered within 24 h (most within an hour); `standard` (the default): called at once."},
    )  # fmt: skip


def callback_url_field(description: str) -> fields.String:
    """Where a webhook goes; its address is checked by `callback_url_errors` at load."""
    return fields.String(validate=validate.Length(max=2048), metadata={"format": "uri", "description": description})


class TextBlockSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["text"]))
    text = fields.String(required=True, validate=validate.Length(min=1))


TEXT_BLOCK_OPENAPI = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string", "minLength": 1}},
    "required": ["type", "text"],
    "additionalProperties": False,
}


class MessageContent(fields.Field):
    """Anthropic's `content`: a string, or a list of text blocks."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValidationError("must not be empty")
            return value
        if isinstance(value, list) and value:
            return TextBlockSchema(many=True).load(value)
        raise ValidationError("must be a non-empty string or a non-empty list of text blocks")


class MessageSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["user", "assistant"]))
    content = MessageContent(
        required=True,
        metadata={
            "oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": TEXT_BLOCK_OPENAPI, "minItems": 1}]
        },
    )


def callback_url_errors(settings: Any, url: str) -> list[str]:
    """Why `url` may not be a callback URL of this client, read without any network work
    (empty: it may, if its host resolves to allowed addresses; see `refused_addresses`)."""
    if not settings.webhook_secrets_for(current_client()):
        return ["webhooks are off for this client (no WEBHOOK_SECRET, nor one in WEBHOOK_SECRETS)"]
    try:
        parse_callback_url(url)
    except CallbackRefused as exc:
        return [str(exc)]
    return []


def refused_addresses(settings: Any, urls: dict[Any, str]) -> dict[Any, list[str]]:
    """The callback URLs (already found well-formed) whose host resolves to an address not
    allowed, or not in time: every distinct host at once, within one deadline."""
    targets: dict[Any, CallbackTarget] = {key: parse_callback_url(url) for key, url in urls.items()}
    admitted = settings.callback_policy.admit_all(targets.values())
    return {key: [str(admitted[t])] for key, t in targets.items() if isinstance(admitted[t], CallbackRefused)}


# Why the simple form's `temperature` is refused rather than sent (docs/api.md, the job request table).
TEMPERATURE_REFUSED = (
    "not accepted: the Messages API version this service speaks (anthropic 2.11, anthropic-version "
    "2026-10-21) has no temperature, top_p or top_k, and current models answer a non-default one with a 400; "
    "leave it out"
)
# Fields of the simple forms that a `params` request carries inside it instead.
INSIDE_PARAMS = ("system", "model", "max_tokens", "temperature")
DEFAULT_MAX_TOKENS = 1024
# The settings' defaults, which the descriptions state; the bounds a deployment configured
# are the document's keywords (`maximum`, `maxItems`: service/api/openapi.py).
DEFAULTS = Settings()


class MessagesRequest(fields.Dict):
    """`params`: a Messages API request as a JSON object, checked against the SDK's own
    types by `JobRequestSchema.check_params` once the defaults are in."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError("must be an object: a Messages API request")
        params = dict(value)
        params.setdefault("model", current_app.extensions[EXTENSION_KEY].settings.default_model)
        if "max_tokens" not in params:
            thinking = params.get("thinking")
            budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
            params["max_tokens"] = DEFAULT_MAX_TOKENS + (budget if isinstance(budget, int) and budget > 0 else 0)
        return params


class JobRequestSchema(Schema):
    # A batch resolves its jobs' callback hosts itself, together, once its size is checked.
    resolves_callback = True

    prompt = fields.String(
        validate=validate.Length(min=1), metadata={"description": "A single user message. Give this, `messages` "
                                                   "or `params`."}
    )  # fmt: skip
    messages = fields.List(
        fields.Nested(MessageSchema),
        validate=validate.Length(min=1),
        metadata={
            "description": "The conversation, first message from the user; at most MAX_MESSAGES "
            f"({DEFAULTS.limits.max_messages} by default)."
        },
    )
    params = MessagesRequest(
        metadata={
            "description": "Any Messages API request, as the pinned anthropic SDK types it (tools, tool_choice, "
            "images, documents, thinking, output_config, stop_sequences, cache_control, ...; with `betas`, the "
            f"beta endpoint's). `model` defaults to LLM_DEFAULT_MODEL, `max_tokens` to {DEFAULT_MAX_TOKENS} (plus "
            "`thinking.budget_tokens`); `stream` is refused. `system`, `model` and `max_tokens` go inside it."
        }
    )
    system = fields.String(validate=validate.Length(min=1))
    model = fields.String(validate=MODEL_NAME, metadata={"description": "Defaults to LLM_DEFAULT_MODEL."})
    max_tokens = fields.Integer(
        strict=True,
        metadata={"description": f"1..MAX_OUTPUT_TOKENS ({DEFAULTS.limits.max_output_tokens} by default); "
                  f"default {DEFAULT_MAX_TOKENS}."},
    )  # fmt: skip
    temperature = fields.Raw(metadata={"description": "Refused: " + TEMPERATURE_REFUSED})
    priority = fields.String(load_default="default", validate=validate.OneOf(PRIORITIES))
    tier = tier_field()
    metadata = metadata_field(
        f"Echoed back; at most MAX_METADATA_KEYS ({DEFAULTS.limits.max_metadata_keys} by default) keys of "
        f"<= {METADATA_KEY_MAX} chars, values <= {METADATA_VALUE_MAX}."
    )
    timeout_s = fields.Integer(
        strict=True,
        metadata={
            "description": "Deadline for the whole job, 1..JOB_TIMEOUT_S, which is also the default "
            f"({DEFAULTS.limits.max_timeout_s} unless configured); for a batch-tier job 1..BATCH_TIMEOUT_S "
            "(24 h plus BATCH_COLLECT_S unless configured), also its default."
        },
    )
    callback_url = callback_url_field(
        "http(s) URL that gets the job, signed (Standard Webhooks), when it ends. Needs a webhook secret; "
        "internal addresses are refused unless CALLBACK_ALLOWED_NETWORKS lists them."
    )

    @validates_schema
    def check_shape(self, data: dict[str, Any], **_: Any) -> None:
        if sum(form in data for form in ("prompt", "messages", "params")) != 1:
            raise ValidationError("give exactly one of `prompt`, `messages` or `params`", "_schema")
        if "temperature" in data:
            raise ValidationError(TEMPERATURE_REFUSED, "temperature")
        if "params" in data and (beside := [name for name in INSIDE_PARAMS if name in data]):
            raise ValidationError({name: [f"give it inside `params` (params.{name})"] for name in beside})
        if "messages" in data and data["messages"][0]["role"] != "user":
            raise ValidationError("the first message must come from the user", "messages")

    @validates_schema
    def check_params(self, data: dict[str, Any], **_: Any) -> None:
        """Against the SDK's own types; each problem named by its path (`params.messages.0.content.1.type`)."""
        if "params" not in data:
            return
        params = data["params"]
        if "stream" in params:
            raise ValidationError("not accepted: the service always streams the reply; leave it out", "params.stream")
        if problems := schema_for(params).problems(params):
            raise ValidationError({problem.where(): [problem.message] for problem in problems})
        limits = current_app.extensions[EXTENSION_KEY].settings.limits
        errors: dict[str, list[str]] = {}
        if MODEL_NAME.regex.match(params["model"]) is None:
            errors["params.model"] = ["not a model name"]
        if not 1 <= params["max_tokens"] <= limits.max_output_tokens:
            errors["params.max_tokens"] = [f"must be between 1 and {limits.max_output_tokens}"]
        if len(params["messages"]) > limits.max_messages:
            errors["params.messages"] = [f"at most {limits.max_messages} messages"]
        if errors:
            raise ValidationError(errors)

    @validates_schema
    def check_limits(self, data: dict[str, Any], **_: Any) -> None:
        settings = current_app.extensions[EXTENSION_KEY].settings
        limits = settings.limits
        errors: dict[str, list[str]] = {}
        if len(data.get("messages", [])) > limits.max_messages:
            errors["messages"] = [f"at most {limits.max_messages} messages"]
        if not 1 <= data.get("max_tokens", 1) <= limits.max_output_tokens:
            errors["max_tokens"] = [f"must be between 1 and {limits.max_output_tokens}"]
        if len(data.get("metadata", {})) > limits.max_metadata_keys:
            errors["metadata"] = [f"at most {limits.max_metadata_keys} keys"]
        batch_tier = data.get("tier") == "batch"
        max_timeout_s = settings.batch_tier_timeout_s if batch_tier else limits.max_timeout_s
        if "timeout_s" in data and not 1 <= data["timeout_s"] <= max_timeout_s:
            errors["timeout_s"] = [f"must be between 1 and {max_timeout_s}" + (" for a batch-tier job" * batch_tier)]
        if batch_tier and data.get("params", {}).get("betas"):
            errors["tier"] = ["a batch-tier job cannot use `params.betas` (the beta Message Batches API is not used)"]
        if "callback_url" in data and (refused := callback_url_errors(settings, data["callback_url"])):
            errors["callback_url"] = refused
        if errors:
            raise ValidationError(errors)
        if (
            self.resolves_callback
            and "callback_url" in data
            and (refused_hosts := refused_addresses(settings, {"callback_url": data["callback_url"]}))
        ):
            raise ValidationError(refused_hosts)

    @post_load
    def to_params(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Every form as the Messages request it is: `params`, with this service's defaults."""
        if "params" in data:
            return data
        settings = current_app.extensions[EXTENSION_KEY].settings
        messages = data.pop("messages") if "messages" in data else [{"role": "user", "content": data.pop("prompt")}]
        params = {
            "model": data.pop("model", settings.default_model),
            "max_tokens": data.pop("max_tokens", DEFAULT_MAX_TOKENS),
            "messages": messages,
        }
        if "system" in data:
            params["system"] = data.pop("system")
        data["params"] = params
        return data


class IdempotencyHeaderSchema(Schema):
    # Headers: unknown ones are ignored, not refused.
    class Meta:
        unknown = EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=255),
        metadata={
            "description": f"Same key and body within IDEMPOTENCY_TTL_S ({DEFAULTS.idempotency_ttl_s} s by "
            "default): the first job comes back."
        },
    )


class JobListArgsSchema(Schema):
    status = fields.String(validate=validate.OneOf(PUBLIC_STATUSES))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(
        metadata={"description": "Opaque: `next_cursor` of the previous page, as given; any other value is a 422."}
    )


class UsageSchema(Schema):
    """The provider's usage, under its names (every field it reported is kept)."""

    input_tokens = fields.Integer(metadata={"description": "Not read from or written to the prompt cache."})
    output_tokens = fields.Integer(metadata={"description": "Thinking included (output_tokens_details)."})
    cache_creation_input_tokens = fields.Integer()
    cache_read_input_tokens = fields.Integer()
    cache_creation = fields.Dict(metadata={"description": "The cache writes by lifetime (5 min, 1 h)."})
    output_tokens_details = fields.Dict()
    server_tool_use = fields.Dict()
    service_tier = fields.String(allow_none=True)


class ProgressSchema(Schema):
    output_tokens = fields.Integer(metadata={"description": "Approximate while running, exact once finished."})
    text = fields.String()
    percent = fields.Integer(metadata={"description": "Document jobs: work done, 0..100, as steps and chunks end."})


class ResultSchema(Schema):
    message = fields.Dict(
        metadata={"description": "The Message as the provider finished it: `id`, `model`, `content` with every "
                  "block (text with citations, thinking with its signature, tool_use with its input, server tool "
                  "use and results), `stop_reason`, `stop_sequence`, `usage`."}
    )  # fmt: skip
    output = fields.Raw(
        allow_none=True,
        metadata={"description": "The parsed JSON, checked against `params.output_config.format.schema` when the "
                  "request asked for structured outputs (a reply that is not fails the job: `invalid_output`)."},
    )  # fmt: skip
    text = fields.String(metadata={"description": "The text blocks, joined."})
    analyses = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={"description": "Document jobs."})
    stop_reason = fields.String(allow_none=True)
    usage = fields.Nested(UsageSchema)
    cost_usd = fields.Float(allow_none=True, metadata={"description": "null for a model with no known price."})


class ErrorInfoSchema(Schema):
    type = fields.String()
    message = fields.String()
    retryable = fields.Boolean()


class WebhookSchema(Schema):
    id = fields.String(metadata={"description": "The `webhook-id` header: the same on every retry."})
    url = fields.String()
    state = fields.String(metadata={"enum": list(get_args(WebhookDeliveryState))})
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = fields.String(allow_none=True)


class DocumentInfoSchema(Schema):
    filename = fields.String()
    media_type = fields.String()
    bytes = fields.Integer()
    pages = fields.Integer(allow_none=True, metadata={"description": "Known once extracted (PDF, some DOCX)."})
    characters = fields.Integer(allow_none=True, metadata={"description": "Of the extracted text."})


class StepSchema(Schema):
    name = fields.String(metadata={"description": "`extract`, or an analysis's name."})
    status = fields.String(metadata={"enum": list(get_args(StepStatus))})
    attempts = fields.Integer(metadata={"description": "LLM calls made for this step."})
    usage = fields.Nested(UsageSchema)
    cost_usd = fields.Float(allow_none=True)
    error = fields.Nested(ErrorInfoSchema, allow_none=True)


class ProviderBatchSchema(Schema):
    id = fields.String(metadata={"description": "The provider's Message Batch id."})
    submitted_at = fields.String()


class JobSchema(Schema):
    """Documents the resource built by `service.jobs.storage.resource.job_resource`."""

    id = fields.String()
    kind = fields.String(metadata={"enum": list(get_args(Kind))})
    status = fields.String(metadata={"enum": list(PUBLIC_STATUSES)})
    priority = fields.String(metadata={"enum": list(PRIORITIES)})
    tier = fields.String(metadata={"enum": list(TIERS)})
    model = fields.String()
    progress = fields.Nested(ProgressSchema)
    result = fields.Nested(
        ResultSchema,
        allow_none=True,
        metadata={"description": "A document job's: `analyses.<name>` (`output`, `text`, `usage`, `cost_usd`), "
                  "`usage` and `cost_usd` (the totals)."},
    )  # fmt: skip
    error = fields.Nested(ErrorInfoSchema, allow_none=True)
    attempts = fields.Integer(metadata={"description": "LLM calls made for this job."})
    next_attempt_at = fields.String(
        allow_none=True, metadata={"description": "When a job waiting to retry will be tried again."}
    )
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String())
    webhook = fields.Nested(WebhookSchema, allow_none=True, metadata={"description": "Set once the job has ended."})
    provider_batch = fields.Nested(
        ProviderBatchSchema,
        allow_none=True,
        metadata={"description": "A batch-tier job's provider batch, while it is in one (status `running`)."},
    )
    links = fields.Dict(keys=fields.String(), values=fields.String())
    document = fields.Nested(DocumentInfoSchema, metadata={"description": "Document jobs only."})
    steps = fields.List(fields.Nested(StepSchema), metadata={"description": "Document jobs only: extract, then "
                        "each analysis."})  # fmt: skip


class JobPageSchema(Schema):
    data = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(allow_none=True)


USAGE_DEFAULT_DAYS = 30  # `from` defaults to this many days before `to`


class UsageArgsSchema(Schema):
    date_from = fields.Date(
        data_key="from",
        metadata={
            "description": f"First UTC day (YYYY-MM-DD), included; defaults to `to` - {USAGE_DEFAULT_DAYS} days. "
            f"At most {MAX_REPORT_DAYS} days before `to`, and not after it (else 422)."
        },
    )
    date_to = fields.Date(data_key="to", metadata={"description": "Last UTC day, included; defaults to today (UTC)."})
    group_by = fields.String(load_default="day", validate=validate.OneOf(GROUP_BYS))

    @post_load
    def fill_range(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        date_to = data.setdefault("date_to", datetime.now(UTC).date())
        if "date_from" not in data:
            data["date_from"] = date.fromordinal(max(1, date_to.toordinal() - USAGE_DEFAULT_DAYS))
        if data["date_from"] > date_to:
            raise ValidationError("must not be after `to`", "from")
        if (date_to - data["date_from"]).days > MAX_REPORT_DAYS:
            raise ValidationError(f"`from` and `to` may be at most {MAX_REPORT_DAYS} days apart", "from")
        return data


class UsageFiguresSchema(Schema):
    jobs = fields.Integer(metadata={"description": "Jobs completed (succeeded), each counted once."})
    input_tokens = fields.Integer(metadata={"description": "Not read from or written to the prompt cache."})
    output_tokens = fields.Integer(metadata={"description": "Thinking included."})
    cache_creation_input_tokens = fields.Integer(metadata={"description": "Written to the prompt cache."})
    cache_read_input_tokens = fields.Integer(metadata={"description": "Read from the prompt cache."})
    cost_usd = fields.Float(metadata={"description": "Jobs of a model with no known price add nothing here."})
    unpriced_jobs = fields.Integer(metadata={"description": "Jobs of a model with no known price."})


class UsageRowSchema(UsageFiguresSchema):
    """One group: `day`, `model` or `client`, as `group_by` says."""

    day = fields.String(metadata={"format": "date"})
    model = fields.String()
    client = fields.String()


class BudgetSchema(Schema):
    limit = fields.Float(metadata={"description": "USD per window (CLIENT_BUDGETS)."})
    window = fields.String(
        metadata={"enum": list(get_args(BudgetWindow)), "description": "A UTC calendar day or month."}
    )
    resets_at = fields.String(metadata={"description": "When the window ends (UTC, ISO 8601)."})
    spent = fields.Float(metadata={"description": "USD the window's calls cost."})
    reserved = fields.Float(metadata={"description": "USD held for the worst case of jobs not ended yet."})
    remaining = fields.Float(metadata={"description": "limit - spent - reserved: what a new job may reserve."})


class UsageReportSchema(Schema):
    date_from = fields.Date(data_key="from")
    date_to = fields.Date(data_key="to")
    group_by = fields.String(metadata={"enum": list(GROUP_BYS)})
    data = fields.List(fields.Nested(UsageRowSchema), metadata={"description": "Groups with usage, by their key."})
    total = fields.Nested(UsageFiguresSchema)
    budget = fields.Nested(
        BudgetSchema, allow_none=True, metadata={"description": "Your spend budget now; null: you have none."}
    )


class BatchJobRequestSchema(JobRequestSchema):
    resolves_callback = False


class BatchRequestSchema(Schema):
    """`{"jobs": [<job request>, ...]}`: every job is validated before any is queued; the
    number of jobs first, then each job, and only then the hosts of their callback URLs."""

    jobs = fields.List(
        fields.Nested(BatchJobRequestSchema),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": f"1..MAX_BATCH_JOBS ({DEFAULTS.max_batch_jobs} by default) job requests; an error "
            "names the job by its index."
        },
    )
    callback_url = callback_url_field(
        "http(s) URL that gets the batch, signed, once every job of it has ended; checked like a job's callback_url."
    )
    metadata = metadata_field("Echoed back; bounded like a job's metadata.")

    @pre_load
    def check_size(self, data: Any, **_: Any) -> Any:
        """Before any job is read: a batch too large is refused for its size alone."""
        settings = current_app.extensions[EXTENSION_KEY].settings
        if (
            isinstance(data, dict)
            and isinstance(data.get("jobs"), list)
            and len(data["jobs"]) > settings.max_batch_jobs
        ):
            raise ValidationError([f"at most {settings.max_batch_jobs} jobs (MAX_BATCH_JOBS)"], "jobs")
        return data

    @validates_schema
    def check_limits(self, data: dict[str, Any], **_: Any) -> None:
        settings = current_app.extensions[EXTENSION_KEY].settings
        errors: dict[str, Any] = {}
        if len(data.get("metadata", {})) > settings.limits.max_metadata_keys:
            errors["metadata"] = [f"at most {settings.limits.max_metadata_keys} keys"]
        if "callback_url" in data and (refused := callback_url_errors(settings, data["callback_url"])):
            errors["callback_url"] = refused
        if errors:
            raise ValidationError(errors)
        # Keys: a job's index, or None for the batch's own callback_url.
        urls: dict[int | None, str] = {
            index: job["callback_url"] for index, job in enumerate(data["jobs"]) if "callback_url" in job
        }
        if "callback_url" in data:
            urls[None] = data["callback_url"]
        refused_hosts = refused_addresses(settings, urls)
        if None in refused_hosts:
            errors["callback_url"] = refused_hosts.pop(None)
        if refused_hosts:
            errors["jobs"] = {index: {"callback_url": messages} for index, messages in refused_hosts.items()}
        if errors:
            raise ValidationError(errors)


class BatchCountsSchema(Schema):
    queued = fields.Integer()
    running = fields.Integer()
    succeeded = fields.Integer()
    failed = fields.Integer()
    canceled = fields.Integer()


class BatchSchema(Schema):
    """Documents the resource built by `service.jobs.push.batches.batch_resource`."""

    id = fields.String()
    status = fields.String(
        metadata={"enum": list(get_args(BatchStatus)), "description": "`done` once every job has ended (and stays so)."}
    )
    counts = fields.Nested(BatchCountsSchema, metadata={"description": "The jobs by their current status."})
    job_ids = fields.List(fields.String(), metadata={"description": "In request order."})
    created_at = fields.String()
    finished_at = fields.String(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String())
    webhook = fields.Nested(WebhookSchema, allow_none=True, metadata={"description": "Set once the batch is done."})
    links = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={"description": "`self`, and `jobs`: "
                        "each job's URL, in request order."})  # fmt: skip

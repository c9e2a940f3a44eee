"""Typed views of the API's resources. Each keeps the JSON it was read from in `raw`, so
a field this version does not know yet is still there (and `--json` prints it as sent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Usage:
    """Tokens under the provider's names: `input_tokens` excludes the prompt cache's (written
    and read, counted apart); `output_tokens` includes `thinking_tokens`."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    thinking_tokens: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # every field, cache_creation too

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            input_tokens=data.get("input_tokens", 0),
            output_tokens=data.get("output_tokens", 0),
            cache_creation_input_tokens=data.get("cache_creation_input_tokens"),
            cache_read_input_tokens=data.get("cache_read_input_tokens"),
            thinking_tokens=(data.get("output_tokens_details") or {}).get("thinking_tokens"),
            raw=data,
        )


@dataclass(frozen=True)
class TextBlock:
    text: str
    citations: list[dict[str, Any]] | None = None
    type: str = "text"


@dataclass(frozen=True)
class ThinkingBlock:
    thinking: str
    signature: str
    type: str = "thinking"


@dataclass(frozen=True)
class RedactedThinkingBlock:
    data: str
    type: str = "redacted_thinking"


@dataclass(frozen=True)
class ToolUseBlock:
    """A call of a tool: `type` is `tool_use` (yours to run), or `server_tool_use` (the provider ran it)."""

    id: str
    name: str
    input: dict[str, Any]
    type: str = "tool_use"


@dataclass(frozen=True)
class OtherBlock:
    """A block this version has no class for (a server tool's result, say): as sent."""

    type: str
    raw: dict[str, Any]


ContentBlock = TextBlock | ThinkingBlock | RedactedThinkingBlock | ToolUseBlock | OtherBlock


def content_block(data: dict[str, Any]) -> ContentBlock:
    kind = data.get("type", "")
    if kind == "text":
        return TextBlock(text=data.get("text", ""), citations=data.get("citations"))
    if kind == "thinking":
        return ThinkingBlock(thinking=data.get("thinking", ""), signature=data.get("signature", ""))
    if kind == "redacted_thinking":
        return RedactedThinkingBlock(data=data.get("data", ""))
    if kind in ("tool_use", "server_tool_use"):
        return ToolUseBlock(id=data.get("id", ""), name=data.get("name", ""), input=data.get("input") or {}, type=kind)
    return OtherBlock(type=kind, raw=data)


@dataclass(frozen=True)
class Message:
    """The Message as the provider finished it: every block, the stop and the usage."""

    id: str | None
    model: str | None
    role: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return [block for block in self.content if isinstance(block, ToolUseBlock) and block.type == "tool_use"]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=data.get("id"),
            model=data.get("model"),
            role=data.get("role", "assistant"),
            content=[content_block(block) for block in data.get("content") or []],
            stop_reason=data.get("stop_reason"),
            stop_sequence=data.get("stop_sequence"),
            usage=Usage.from_dict(data.get("usage") or {}),
            raw=data,
        )


@dataclass(frozen=True)
class Progress:
    output_tokens: int
    text: str


@dataclass(frozen=True)
class Result:
    text: str  # the text blocks, joined
    stop_reason: str | None
    usage: Usage
    cost_usd: float | None  # None for a usage the price table cannot price
    message: Message | None = None  # every block (a document job has none)
    output: Any = None  # the parsed JSON when the request asked for structured outputs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        return cls(
            text=data.get("text", ""),
            stop_reason=data.get("stop_reason"),
            usage=Usage.from_dict(data.get("usage") or {}),
            cost_usd=data.get("cost_usd"),
            message=Message.from_dict(data["message"]) if data.get("message") else None,
            output=data.get("output"),
        )


@dataclass(frozen=True)
class JobError:
    type: str
    message: str
    retryable: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobError:
        return cls(type=data.get("type", ""), message=data.get("message", ""), retryable=bool(data.get("retryable")))


@dataclass(frozen=True)
class WebhookState:
    """A webhook's delivery, as the job or batch shows it."""

    id: str
    url: str
    state: str  # pending, delivered, failed, gone
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WebhookState | None:
        if data is None:
            return None
        return cls(
            id=data["id"],
            url=data.get("url", ""),
            state=data.get("state", ""),
            attempts=data.get("attempts", 0),
            last_status_code=data.get("last_status_code"),
            last_error=data.get("last_error"),
            next_attempt_at=_time(data.get("next_attempt_at")),
        )


@dataclass(frozen=True)
class Job:
    id: str
    status: str  # queued, running, succeeded, failed, canceled
    priority: str | None
    tier: str | None  # standard, or batch (the Message Batches API, half price)
    model: str | None
    progress: Progress
    result: Result | None
    error: JobError | None
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    metadata: dict[str, str]
    webhook: WebhookState | None
    links: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        """The job has ended: succeeded, failed or canceled."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        progress = data.get("progress") or {}
        result, error = data.get("result"), data.get("error")
        return cls(
            id=data["id"],
            status=data["status"],
            priority=data.get("priority"),
            tier=data.get("tier"),
            model=data.get("model"),
            progress=Progress(output_tokens=progress.get("output_tokens", 0), text=progress.get("text", "")),
            result=Result.from_dict(result) if result else None,
            error=JobError.from_dict(error) if error else None,
            attempts=data.get("attempts", 0),
            next_attempt_at=_time(data.get("next_attempt_at")),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            metadata=dict(data.get("metadata") or {}),
            webhook=WebhookState.from_dict(data.get("webhook")),
            links=dict(data.get("links") or {}),
            raw=data,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first; pass `next_cursor` back for the next (None at the end)."""

    data: list[Job]
    next_cursor: str | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobPage:
        return cls(data=[Job.from_dict(job) for job in data.get("data", [])], next_cursor=data.get("next_cursor"))


@dataclass(frozen=True)
class BatchCounts:
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0


@dataclass(frozen=True)
class Batch:
    id: str
    status: str  # running, then done once every job has ended
    counts: BatchCounts
    job_ids: list[str]
    created_at: datetime | None
    finished_at: datetime | None
    metadata: dict[str, str]
    webhook: WebhookState | None
    links: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        counts = data.get("counts") or {}
        return cls(
            id=data["id"],
            status=data["status"],
            counts=BatchCounts(**{name: counts.get(name, 0) for name in BatchCounts.__dataclass_fields__}),
            job_ids=list(data.get("job_ids") or []),
            created_at=_time(data.get("created_at")),
            finished_at=_time(data.get("finished_at")),
            metadata=dict(data.get("metadata") or {}),
            webhook=WebhookState.from_dict(data.get("webhook")),
            links=dict(data.get("links") or {}),
            raw=data,
        )


@dataclass(frozen=True)
class UsageFigures:
    jobs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_jobs: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageFigures:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True)
class UsageRow:
    """One group: `key` is its day (YYYY-MM-DD), model or client, as `group_by` says."""

    key: str
    figures: UsageFigures


@dataclass(frozen=True)
class Budget:
    """Your spend budget now, in USD: `remaining = limit - spent - reserved` is what a new
    job's worst case may take; `reserved` is held by your jobs that have not ended."""

    limit: float
    window: str  # day or month (UTC calendar)
    resets_at: datetime | None
    spent: float
    reserved: float
    remaining: float

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Budget | None:
        if not data:
            return None
        return cls(
            limit=data["limit"], window=data["window"], resets_at=_time(data.get("resets_at")),
            spent=data["spent"], reserved=data["reserved"], remaining=data["remaining"],
        )  # fmt: skip


@dataclass(frozen=True)
class UsageReport:
    date_from: date
    date_to: date
    group_by: str  # day, model or client
    data: list[UsageRow]
    total: UsageFigures
    raw: dict[str, Any] = field(repr=False, compare=False)
    budget: Budget | None = None  # None: you have no spend budget

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageReport:
        group_by = data["group_by"]
        return cls(
            date_from=date.fromisoformat(data["from"]),
            date_to=date.fromisoformat(data["to"]),
            group_by=group_by,
            data=[UsageRow(key=row[group_by], figures=UsageFigures.from_dict(row)) for row in data.get("data", [])],
            total=UsageFigures.from_dict(data.get("total") or {}),
            raw=data,
            budget=Budget.from_dict(data.get("budget")),
        )


@dataclass(frozen=True)
class ProgressUpdate:
    """A `progress` event: the text new since the previous one. When `attempt` grows, a
    retry began and the text starts again. `deltas`: the other blocks' pieces (thinking,
    tool input, citations), each a dict with its `block` index and `type`
    (`{"block": 1, "type": "input_json_delta", "partial_json": "..."}`)."""

    text: str
    output_tokens: int
    attempt: int | None
    deltas: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: `progress` (data: a `ProgressUpdate`), then one of
    `succeeded`, `failed`, `canceled` (data: the `Job`). `id` resumes the stream after it."""

    id: str | None
    event: str
    data: ProgressUpdate | Job | Any

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_STATUSES

    @classmethod
    def from_sse(cls, id: str | None, event: str, data: Any) -> Event:
        if event == "progress" and isinstance(data, dict):
            data = ProgressUpdate(
                text=data.get("text", ""), output_tokens=data.get("output_tokens", 0), attempt=data.get("attempt"),
                deltas=list(data.get("deltas") or []),
            )  # fmt: skip
        elif event in TERMINAL_STATUSES and isinstance(data, dict):
            data = Job.from_dict(data)
        return cls(id=id or None, event=event, data=data)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook's payload (Standard Webhooks shape): `type` is `job.succeeded`,
    `job.failed`, `job.canceled` or `batch.done`; `data` the `Job` or `Batch`."""

    type: str
    timestamp: datetime | None
    data: Job | Batch
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> WebhookEvent:
        kind = payload["type"]
        resource = payload["data"]
        return cls(
            type=kind,
            timestamp=_time(payload.get("timestamp")),
            data=Batch.from_dict(resource) if kind.startswith("batch.") else Job.from_dict(resource),
            raw=payload,
        )

"""The document task: extract the text of an upload, then run each analysis over it.

Shaped like the LLM task (`llm_job`): an asyncio task in the worker, the deadline and a
cancel stop it from outside, a retryable provider error returns RQ's `Retry` (the job
waits without a slot), the provider's shared limit puts it back in its queue. What a
document job adds: steps (`extract`, then one per analysis) recorded in its meta as they
move, each failing alone; a long text analysed chunk by chunk and the answers combined;
a JSON answer checked and asked for once more with the error. A run resumes where the
last one stopped: steps that succeeded (and chunk answers already in) are kept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar, assert_never, cast

from rq import Retry
from rq.job import Job

from service import tracing
from service.documents import formats
from service.documents.analyses import (
    CACHED,
    JSON,
    SYSTEM,
    Analysis,
    InvalidOutput,
    analysis_of,
    combine_prompt,
    document_prompt,
    native_prompt,
    parse_output,
    repair_prompt,
)
from service.documents.chunks import extract_chunks, split_text
from service.documents.extract import DocumentError, Extracted, inspect_pdf
from service.documents.isolation import IsolatedTimeout, run_isolated
from service.documents.steps import (
    STEP_CANCELED,
    STEP_FAILED,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SUCCEEDED,
    percent_done,
)
from service.jobs.observability.counters import HashIncrements
from service.jobs.observability.usage import job_usage, token_counts
from service.jobs.observability.worst_case import extracted_text_bound
from service.jobs.running.progress import (
    call_counters,
    record_error,
    record_progress,
)
from service.jobs.storage.connection import read_value
from service.jobs.storage.keys import document_text_key as text_key
from service.jobs.storage.keys import upload_key
from service.jobs.storage.record import (
    DocumentResult,
    JobError,
    JobRecord,
    Step,
    StepStatus,
    Usage,
    job_error,
)
from service.llm.client import CallUsage, LLMRequest
from service.llm.errors import LLMError
from service.llm.pricing import cost_usd, is_priced
from service.tasks.attempts import begin_attempt, until_stopped
from service.tasks.batch_tier import call_in_provider_batch
from service.tasks.failed_calls import next_move, provider_error, requeue, schedule_retry, timeout_error
from service.tasks.llm_spans import llm_call_span
from service.tasks.outcomes import JobFailed, logged_attempt
from service.tasks.runtime import TaskRuntime

T = TypeVar("T")
UNPACKED_FACTOR = 10  # a DOCX may unpack to this many times MAX_DOCUMENT_BYTES, no more


async def run_document_job(job: Job, runtime: TaskRuntime, request: dict[str, Any]) -> DocumentResult | Retry:
    """Entry point named by `service.jobs.storage.queues.DOCUMENT_TASK`."""
    return await logged_attempt(job, DocumentRun(job, runtime, request).run())


class _StepFailed(Exception):
    def __init__(self, error: JobError):
        super().__init__(error["message"])
        self.error = error


class DocumentRun:
    def __init__(self, job: Job, runtime: TaskRuntime, request: dict[str, Any]):
        self.job, self.runtime, self.settings = job, runtime, runtime.settings
        self.model: str = request["model"]
        self.max_tokens: int = request["max_tokens"]
        self.record = JobRecord(job)
        self.native: bool = request["extraction"] == "native" and self.record.document["media_type"] == formats.PDF
        self.analyses = {stored["name"]: analysis_of(stored) for stored in request["analyses"]}
        self.unsaved: list[HashIncrements] = []  # usage of calls made since the last save
        self.text = ""
        self.chunks: list[str] = []  # the text cut to DOCUMENT_CHUNK_TOKENS, once it is known
        self.pdf = b""
        self.pdf_base64 = ""  # encoded once, sent by every analysis
        self.last_call_billed = False
        self.deadline = 0.0
        self.structured_refused = False  # the model answered output_config with a 400: asked in words

    async def run(self) -> DocumentResult | Retry:
        assert self.runtime.llm is not None, "document jobs are taken only by workers of the LLM queues"
        self.deadline = await begin_attempt(self.job, self.runtime)
        for step in self.record.steps:
            if step["status"] == STEP_RUNNING:  # the run that left it so was cut short
                step["status"] = STEP_PENDING
        return await until_stopped(self.job, self.runtime, self.deadline, self._steps, self._fail)

    async def _steps(self) -> DocumentResult | Retry:
        extract_step, *analysis_steps = self.record.steps
        with _step_span(extract_step):
            await self._extract(extract_step)
        for step in analysis_steps:
            if step["status"] != STEP_PENDING:
                continue
            with _step_span(step):
                try:
                    await self._analyse(step, self.analyses[step["name"]])
                except LLMError as error:
                    if (retry := self._after_error(step, error)) is not None:
                        return retry
                except _StepFailed as failed:
                    self._end_step(step, STEP_FAILED, failed.error)
        return self._complete()

    # --- extraction ----------------------------------------------------------------------

    async def _extract(self, step: Step) -> None:
        connection = self.job.connection
        if step["status"] == STEP_SUCCEEDED:
            if self.native:
                self._set_pdf(read_value(connection, upload_key(self.job.id)) or b"")
            elif text := (read_value(connection, text_key(self.job.id)) or b"").decode():
                self.text, self.chunks = (
                    text,
                    await self._isolated(
                        split_text, text, self.settings.document_chunk_tokens, self.settings.max_document_chunks
                    ),
                )
            if self.pdf or self.text:
                return
            error = "the document's extracted text has expired; upload the document again"
            self._end_step(step, STEP_FAILED, _document_error(error))
            self._fail(_document_error(error))
        self._begin(step)
        try:
            extracted = await self._run_extraction()
        except DocumentError as exc:
            # A file that cannot be read will not be read on a retry either: it is not kept.
            connection.delete(upload_key(self.job.id))
            self._end_step(step, STEP_FAILED, _document_error(str(exc)))
            self._fail(_document_error(str(exc)))
        document = self.record.document
        document["pages"] = extracted.pages
        if self.record.reservation_micro_usd and not self.native:
            self._check_reserved_for(step, extracted.text)
        if not self.native:
            self.text, self.chunks = extracted.text, list(extracted.chunks)
            document["characters"] = len(extracted.text)
            with connection.pipeline(transaction=False) as pipe:
                pipe.set(text_key(self.job.id), extracted.text, ex=self.job.result_ttl)
                pipe.delete(upload_key(self.job.id))
                pipe.execute()
        self._end_step(step, STEP_SUCCEEDED)

    def _check_reserved_for(self, step: Step, text: str) -> None:
        """A budgeted job's reservation assumed at most `extracted_text_bound` bytes of text:
        more (a PDF or DOCX that unpacks to far more text than its size) fails before any call."""
        document = self.record.document
        bound = extracted_text_bound(document["media_type"], document["bytes"])
        if len(text.encode()) > bound:
            error = _document_error(
                f"the document's text is {len(text.encode())} bytes, more than the {bound} its spend budget "
                "reserved for (see docs/budgets.md)"
            )
            self._end_step(step, STEP_FAILED, error)
            self._fail(error)

    async def _run_extraction(self) -> Extracted:
        """The upload's text cut into chunks (or, for a PDF the model reads, its check), in
        a child process. The upload is read from Redis once a slot is free: waiting jobs hold
        no file in memory."""
        settings = self.settings
        async with self.runtime.extractions:  # a few at once per process: they compute
            data = read_value(self.job.connection, upload_key(self.job.id))
            if data is None:
                raise DocumentError("the upload has expired; upload the document again")
            if self.native:
                extracted = await self._isolated(inspect_pdf, data, max_pages=settings.max_document_pages)
                self._set_pdf(data)
                return extracted
            return await self._isolated(
                extract_chunks, data, self.record.document["media_type"], max_pages=settings.max_document_pages,
                max_unpacked_bytes=settings.max_document_bytes * UNPACKED_FACTOR,
                max_characters=settings.max_document_characters, chunk_tokens=settings.document_chunk_tokens,
                max_chunks=settings.max_document_chunks,
            )  # fmt: skip

    async def _isolated(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`func` in a child process, within DOCUMENT_EXTRACT_TIMEOUT_S."""
        limit_s = self.settings.document_extract_timeout_s
        try:
            return await run_isolated(func, *args, timeout_s=limit_s, **kwargs)
        except IsolatedTimeout:
            raise DocumentError(
                f"extracting the text took longer than {limit_s:g} s (DOCUMENT_EXTRACT_TIMEOUT_S); refused"
            ) from None

    # --- analyses ------------------------------------------------------------------------

    async def _analyse(self, step: Step, analysis: Analysis) -> None:
        self._begin(step)
        if self.native:
            document = {"type": "base64", "media_type": formats.PDF, "data": self.pdf_base64}
            content = [
                {
                    "type": "document",
                    "source": document,
                    "cache_control": CACHED,
                },  # read from the cache after the first
                {"type": "text", "text": native_prompt(analysis)},
            ]
            reply = await self._call(step, [{"role": "user", "content": content}], self._structured(analysis))
            return await self._finish(step, analysis, content, reply)
        chunks = self.chunks
        if len(chunks) == 1:
            prompt = document_prompt(analysis, chunks[0])
            reply = await self._call(step, _user(prompt), self._structured(analysis))
            return await self._finish(step, analysis, prompt, reply)
        by_step = self.record.partials
        self.record.partials = by_step  # stored, with the answers appended below
        partials = by_step.setdefault(step["name"], [])
        for number in range(len(partials) + 1, len(chunks) + 1):  # a retried run resumes after the last answer
            part = document_prompt(analysis, chunks[number - 1], number, len(chunks))
            partials.append(await self._call(step, _user(part), self._structured(analysis)))
            self._save({"step": step["name"], "status": STEP_RUNNING, "chunk": number, "chunks": len(chunks)})
        combined = combine_prompt(analysis, partials)
        await self._finish(
            step, analysis, combined, await self._call(step, _user(combined), self._structured(analysis))
        )

    async def _finish(self, step: Step, analysis: Analysis, content: Any, reply: str) -> None:
        """Record the step's answer; a JSON one is checked first and, when it is not the
        JSON asked for, asked for once more with what was wrong."""
        output: Any = reply
        if analysis.output == JSON:
            try:
                output = parse_output(analysis, reply, self._structured(analysis) is not None)
            except InvalidOutput as first:
                messages = [
                    {"role": "user", "content": content},
                    {"role": "assistant", "content": reply or "(empty)"},
                    {"role": "user", "content": repair_prompt(analysis, str(first))},
                ]
                reply = await self._call(step, messages, self._structured(analysis))
                try:
                    output = parse_output(analysis, reply, self._structured(analysis) is not None)
                except InvalidOutput as second:
                    message = f"the reply was not the JSON asked for, twice: {second}"
                    raise _StepFailed(job_error("invalid_output", message)) from None
        analyses = self.record.analyses
        analyses[step["name"]] = {
            "output": output, "text": reply, "usage": step["usage"].copy(), "cost_usd": step["cost_usd"],
        }  # fmt: skip
        self.record.analyses = analyses
        self.record.partials.pop(step["name"], None)
        self._end_step(step, STEP_SUCCEEDED)

    def _structured(self, analysis: Analysis) -> dict[str, Any] | None:
        """The schema a JSON analysis asks structured outputs for (None: asked in words only,
        a client's own analysis, or a model that refused the parameter)."""
        return None if self.structured_refused else analysis.schema

    async def _call(self, step: Step, messages: list[dict[str, Any]], schema: dict[str, Any] | None = None) -> str:
        """One Messages call; its usage is added to the step (and, with the next save, to
        the client's usage and the metrics), also when it fails or is cut short. A model that
        refuses structured outputs is asked again without (the reply is then checked as
        JSON asked for in words, and re-asked once if it is not)."""
        params: dict[str, Any] = {
            "model": self.model, "max_tokens": self.max_tokens, "messages": messages, "system": SYSTEM,
        }  # fmt: skip
        if schema is not None:
            params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        try:
            return await self._sent(step, LLMRequest(params))
        except LLMError as error:
            if schema is None or not _refuses_structured_outputs(error):
                raise
            self.structured_refused = True
            del params["output_config"]
            return await self._sent(step, LLMRequest(params))

    async def _sent(self, step: Step, request: LLMRequest) -> str:
        usage = CallUsage()
        step["attempts"] += 1
        try:
            with llm_call_span(self.model, usage) as note_reply:
                if JobRecord(self.job).tier == "batch":  # through a provider batch, at half price
                    reply = await call_in_provider_batch(self.job, request, usage)
                else:
                    reply = await self.runtime.llm.stream(request, on_delta=_ignore, usage=usage)  # type: ignore[union-attr]
                note_reply(reply)
        finally:
            self.last_call_billed = usage.billed
            self._count(step, usage)
        return reply.text

    def _count(self, step: Step, usage: CallUsage) -> None:
        if not usage.billed:
            return
        tokens = cast("Usage", usage.as_usage())
        cost = cost_usd(self.model, tokens, self.settings.price_overrides)
        step["usage"] = _added(step["usage"], tokens)
        if cost is not None:
            step["cost_usd"] = round((step["cost_usd"] or 0) + cost, 8)
        self.unsaved += call_counters(self.job, tokens, cost, retention_days=self.settings.usage_retention_days)

    def _after_error(self, step: Step, error: LLMError) -> Retry | None:
        """A failed call: wait for the provider's limit in the queue, retry the job later
        (resuming at this step), or fail this step alone."""
        move = next_move(self.job, error, self.runtime, deadline=self.deadline, billed=self.last_call_billed)
        match move.kind:
            case "past_deadline":
                self._fail(timeout_error(self.job, last_error=error))
            case "requeue":
                step["status"] = STEP_PENDING
                self._flush_counters()
                requeue(self.job, error, move.reopens_at)
            case "retry":
                step["status"], step["error"] = STEP_PENDING, provider_error(error)
                return schedule_retry(self.job, error, move.delay_s, counters=self._take_counters())
            case "give_up" | "no_time_to_retry":  # this step fails alone; the others carry on
                self._end_step(step, STEP_FAILED, provider_error(error))
                return None
            case _:
                assert_never(move.kind)

    # --- the end -------------------------------------------------------------------------

    def _complete(self) -> DocumentResult:
        record = self.record
        analysis_steps = record.steps[1:]
        if not any(step["status"] == STEP_SUCCEEDED for step in analysis_steps):
            errors = "; ".join(f"{s['name']}: {s['error']['message']}" for s in analysis_steps if s["error"])
            self._fail(job_error("analysis_failed", f"every analysis failed ({errors})"))
        steps = record.steps
        totals: Usage = {"input_tokens": 0, "output_tokens": 0}
        for step in steps:
            totals = _added(totals, step["usage"])
        priced = is_priced(self.model, self.settings.price_overrides)
        cost = round(sum(step["cost_usd"] or 0 for step in steps), 8) if priced else None
        analyses = {s["name"]: record.analyses[s["name"]] for s in analysis_steps if s["status"] == STEP_SUCCEEDED}
        result: DocumentResult = {"analyses": analyses, "usage": totals, "cost_usd": cost}
        record.result, record.percent = result, 100
        # The calls' tokens were counted as they were made: the job itself counts here, once
        # (a re-run of its failed steps completes it again).
        no_tokens: Usage = {"input_tokens": 0, "output_tokens": 0}
        job_count = job_usage(
            record.client, self.model, no_tokens, 0.0 if priced else None, self.settings.usage_retention_days,
            completed=not record.counted_in_usage,
        )  # fmt: skip
        record.counted_in_usage = True
        self._keep_inputs()
        record_progress(
            self.job, {"step": None, "status": STEP_SUCCEEDED, "percent": 100},
            counters=[*self._take_counters(), job_count], completes_for_s=self.settings.result_ttl_s,
        )  # fmt: skip
        return result

    def _fail(self, error: JobError, *, canceled: bool = False) -> NoReturn:
        for step in self.record.steps:
            if step["status"] == STEP_RUNNING:
                step["status"], step["error"] = STEP_CANCELED if canceled else STEP_FAILED, error
        self._keep_inputs()
        record_error(self.job, error, canceled=canceled, counters=self._take_counters())
        raise JobFailed(error)

    # --- bookkeeping ---------------------------------------------------------------------

    def _keep_inputs(self) -> None:
        """The extracted text (or the PDF the model reads) lives as long as the ended job, so a
        retry within its retention never finds it gone (its TTL ran from extraction or upload)."""
        with self.job.connection.pipeline(transaction=False) as pipe:
            pipe.expire(text_key(self.job.id), self.settings.result_ttl_s)
            pipe.expire(upload_key(self.job.id), self.settings.result_ttl_s)
            pipe.execute()

    def _begin(self, step: Step) -> None:
        step["status"], step["error"] = STEP_RUNNING, None
        self._save({"step": step["name"], "status": STEP_RUNNING})

    def _end_step(self, step: Step, status: StepStatus, error: JobError | None = None) -> None:
        step["status"], step["error"] = status, error
        self._save({"step": step["name"], "status": status})

    def _save(self, event: dict[str, Any]) -> None:
        self.record.percent = percent_done(self.record, self._chunks())
        record_progress(self.job, {**event, "percent": self.record.percent}, counters=self._take_counters())

    def _flush_counters(self) -> None:
        if self.unsaved:
            record_progress(self.job, {"step": None, "status": STEP_PENDING}, counters=self._take_counters())

    def _take_counters(self) -> list[HashIncrements]:
        taken, self.unsaved = self.unsaved, []
        return taken

    def _set_pdf(self, data: bytes) -> None:
        self.pdf, self.pdf_base64 = data, base64.b64encode(data).decode()

    def _chunks(self) -> int:
        """Calls one analysis of this document takes: one per chunk, and one to combine."""
        return len(self.chunks) + 1 if len(self.chunks) > 1 else 1


def _refuses_structured_outputs(error: LLMError) -> bool:
    return error.status_code == 400 and ("output_config" in error.message or "output_format" in error.message)


@contextmanager
def _step_span(step: Step) -> Iterator[None]:
    """A span per step run, in the job's trace: its name and how it ended (no text)."""
    with tracing.span(f"document step {step['name']}", attributes={"llmjobs.step": step["name"]}) as current:
        try:
            yield
        finally:
            if current is not None:
                current.set_attributes(
                    {"llmjobs.step.status": step["status"], "llmjobs.step.attempts": step["attempts"]}
                )
                if step["status"] == STEP_FAILED and step["error"] is not None:
                    tracing.mark_failed(current, step["error"]["type"])


def _user(prompt: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def _document_error(message: str) -> JobError:
    return job_error("document_error", message)


def _added(total: Usage, usage: Usage) -> Usage:
    """Token counts summed (the prompt cache's only where there are some)."""
    counts = {
        name: a + b for (name, a), b in zip(token_counts(total).items(), token_counts(usage).values(), strict=True)
    }
    return cast("Usage", {name: n for name, n in counts.items() if n or name in ("input_tokens", "output_tokens")})


def _ignore(_index: int, _delta: dict[str, Any]) -> None:
    """A step's answer is recorded once it is complete; its text is not streamed."""

"""`llmjobs`: the command line for the LLM job service.

    export LLMJOBS_URL=http://127.0.0.1:8000 LLMJOBS_API_KEY=...   # `make run` prints this line
    llmjobs submit "Write a haiku about queues" --priority high --metadata ticket=T-1
    llmjobs submit "Summarise last night's tickets" --tier batch   # half price, within 24 h
    llmjobs submit "Summarise ..." --wait       # a progress line on stderr, then the job
    llmjobs tail JOB_ID                          # the text as it streams; a summary on stderr
    llmjobs get JOB_ID;  llmjobs list --status running;  llmjobs cancel JOB_ID;  llmjobs retry JOB_ID
    llmjobs batch submit "first prompt" "second prompt" --wait;  llmjobs batch get BATCH_ID
    llmjobs usage --group-by model --from 2026-11-01
    llmjobs analyze report.pdf --wait            # a document: a live progress bar, then its analyses
    llmjobs get JOB_ID --json                    # any command: the API's JSON, for scripts

Exit codes: 0 done (for `--wait`, `wait` and `tail`: the job succeeded), 1 the job failed,
was canceled or is still running when waiting gave up, 2 an API, connection or usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from llmjobs.client import JobsClient
from llmjobs.errors import APIConnectionError, APIError, WaitTimeout
from llmjobs.types import Batch, Job, JobPage, ProgressUpdate, UsageReport

EXIT_OK, EXIT_JOB_NOT_SUCCEEDED, EXIT_ERROR = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # as a process killed by SIGPIPE: the reader went away (`... | head`)
DEFAULT_WAIT_S = 600.0

# What a terminal would act on instead of printing: CSI sequences (colours, cursor moves,
# screen clears; also the 8-bit CSI), OSC/DCS/PM/APC strings (window titles, hyperlinks,
# clipboard writes) with their terminator, any other ESC pair, then every C0/C1 control but
# newline and tab. An ESC whose sequence a chunk boundary cut is still removed (the lone
# ESC rule), leaving only inert text.
TERMINAL_CONTROL = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


class UsageError(Exception):
    """A bad command line: printed as `error: ...`, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    # --url/--key/--json are accepted before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="API base URL (env LLMJOBS_URL)")
    common.add_argument("--key", default=argparse.SUPPRESS, help="API key (env LLMJOBS_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")

    parser = argparse.ArgumentParser(prog="llmjobs", description="Submit and follow LLM jobs.", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    job_fields = argparse.ArgumentParser(add_help=False)
    job_fields.add_argument("--priority", choices=["high", "default", "low"])
    job_fields.add_argument(
        "--tier", choices=["standard", "batch"], help="batch: Anthropic's Message Batches API, half price, within 24 h"
    )
    job_fields.add_argument("--model")
    job_fields.add_argument("--max-tokens", type=int)
    job_fields.add_argument("--system", help="the system prompt")
    job_fields.add_argument("--timeout-s", type=int, help="deadline for the whole job, in seconds")
    submit_fields = argparse.ArgumentParser(add_help=False)
    submit_fields.add_argument(
        "--metadata", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="echoed back"
    )
    submit_fields.add_argument("--callback-url", help="URL to receive a signed webhook at the end")
    submit_fields.add_argument("--idempotency-key", help="a repeat with the same key returns the first answer")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="wait for the end, with a progress line on stderr")
    waiting.add_argument("--wait-timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait (600)")

    submit = commands.add_parser(
        "submit", parents=[common, job_fields, submit_fields, waiting], help="queue a job and print it"
    )
    submit.add_argument("prompt", nargs="?", help="the prompt (a single user message)")
    submit.add_argument(
        "--params",
        type=Path,
        metavar="FILE",
        help="a Messages API request as JSON ('-': stdin), not a PROMPT",
    )

    for name, text in (
        ("get", "print a job"),
        ("cancel", "cancel a job"),
        ("retry", "run a failed or canceled job again"),
        ("redeliver", "send an ended job's webhook again"),
    ):
        commands.add_parser(name, parents=[common], help=text).add_argument("job_id", metavar="ID")
    wait = commands.add_parser("wait", parents=[common], help="wait for a job to end, then print it")
    wait.add_argument("job_id", metavar="ID")
    wait.add_argument("--wait-timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait (600)")

    listing = commands.add_parser("list", parents=[common], help="print a page of your jobs, newest first")
    listing.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "canceled"])
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")

    tail = commands.add_parser("tail", parents=[common], help="print a job's text as it streams")
    tail.add_argument("job_id", metavar="ID")

    batch = commands.add_parser("batch", parents=[common], help="many jobs in one request")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True, metavar="COMMAND")
    batch_submit = batch_commands.add_parser(
        "submit", parents=[common, job_fields, submit_fields, waiting], help="queue a batch and print it"
    )
    batch_submit.add_argument("prompts", nargs="*", metavar="PROMPT", help="one job per prompt")
    batch_submit.add_argument(
        "--file", type=Path, help="job requests, one JSON object a line ('-': stdin), after the PROMPTs"
    )
    batch_get = batch_commands.add_parser("get", parents=[common, waiting], help="print a batch")
    batch_get.add_argument("batch_id", metavar="ID")
    batch_redeliver = batch_commands.add_parser("redeliver", parents=[common], help="send its webhook again")
    batch_redeliver.add_argument("batch_id", metavar="ID")

    analyze = commands.add_parser(
        "analyze", parents=[common, submit_fields, waiting], help="upload a document for analysis"
    )
    analyze.add_argument("file", type=Path, help="a PDF, DOCX, HTML, Markdown or text file")
    analyze.add_argument("--analyses", help="comma-separated built-in names (default: all four)")
    analyze.add_argument("--extraction", choices=["text", "native"], help="native: the model reads the PDF itself")
    analyze.add_argument("--priority", choices=["high", "default", "low"])
    analyze.add_argument("--model")
    analyze.add_argument("--max-tokens", type=int, help="per call of a step")
    analyze.add_argument("--timeout-s", type=int, help="deadline for the whole job, in seconds")

    usage = commands.add_parser("usage", parents=[common], help="tokens and cost by day, model or client")
    usage.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first UTC day (30 days ago)")
    usage.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last UTC day (today)")
    usage.add_argument("--group-by", choices=["day", "model", "client"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except BrokenPipeError:
        # The reader went away: say nothing, and keep Python from failing again when it
        # flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        with JobsClient(getattr(args, "url", None), getattr(args, "key", None)) as client:
            command = args.command if args.command != "batch" else f"batch {args.batch_command}"
            return COMMANDS[command](client, args, Output(getattr(args, "json", False)))
    except UsageError as exc:
        return fail(f"error: {exc}")
    except APIConnectionError as exc:
        return fail(f"error: {exc.message}")
    except APIError as exc:
        return fail(f"error {exc.code}: {exc.message}" if exc.code else f"error: {exc.message}")
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- commands


def cmd_submit(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    if (args.prompt is None) == (args.params is None):
        raise UsageError("give a PROMPT or --params FILE, not both")
    options = job_options(args)
    if args.params is not None:
        # --model, --max-tokens and --system go inside the request; the job options beside it.
        inside: dict[str, Any] = {}
        for name in ("model", "max_tokens", "system"):
            if name in options:
                inside[name] = options.pop(name)
        job = client.submit(params={**read_params(args.params), **inside}, **options, **submit_options(args))
    else:
        job = client.submit(args.prompt, **options, **submit_options(args))
    return wait_and_show(client, job, args, out) if args.wait else out.job(job)


def cmd_analyze(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    analyses = [name.strip() for name in args.analyses.split(",") if name.strip()] if args.analyses else None
    try:
        job = client.analyze(
            args.file, analyses=analyses, extraction=args.extraction, priority=args.priority, model=args.model,
            max_tokens=args.max_tokens, timeout_s=args.timeout_s, **submit_options(args),
        )  # fmt: skip
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    return wait_and_show(client, job, args, out) if args.wait else out.job(job)


def cmd_get(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.job(client.get(args.job_id))


def cmd_wait(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return wait_and_show(client, client.get(args.job_id), args, out)


def cmd_cancel(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.job(client.cancel(args.job_id))


def cmd_retry(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.job(client.retry(args.job_id))


def cmd_redeliver(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.job(client.redeliver_webhook(args.job_id))


def cmd_list(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.page(client.list(status=args.status, limit=args.limit, cursor=args.cursor))


def cmd_usage(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.usage(client.usage(args.date_from, args.date_to, args.group_by))


def cmd_batch_submit(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    shared = job_options(args)
    jobs: list[dict[str, Any]] = [{"prompt": prompt, **shared} for prompt in args.prompts]
    if args.file is not None:
        jobs += [{**shared, **request} for request in read_job_lines(args.file)]
    if not jobs:
        raise UsageError("no jobs: give PROMPTs or --file")
    options = submit_options(args)
    batch = client.submit_batch(jobs, **options)
    return wait_and_show_batch(client, batch, args, out) if args.wait else out.batch(batch)


def cmd_batch_get(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    batch = client.get_batch(args.batch_id)
    return wait_and_show_batch(client, batch, args, out) if args.wait else out.batch(batch)


def cmd_batch_redeliver(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    return out.batch(client.redeliver_batch_webhook(args.batch_id))


# What `tail` calls the pieces of a block other than text, on the line that opens them.
DELTA_LABELS = {"thinking_delta": "thinking", "input_json_delta": "tool input", "citations_delta": "citation"}
DELTA_FIELDS = {"thinking_delta": "thinking", "input_json_delta": "partial_json"}


def cmd_tail(client: JobsClient, args: argparse.Namespace, out: Output) -> int:
    """The progress text to stdout as it arrives; thinking and tool input in sections of
    their own, each opened by a "[thinking, block N]" / "[tool input, block N]" line and
    closed by "[text]" when the text goes on; "[attempt N]" on stderr when a retry starts;
    a one-line summary on stderr at the end (with --json: each event, a line)."""
    attempt: int | None = None
    view = _TailView(out)
    for event in client.stream(args.job_id):
        if out.as_json:
            data = event.data.raw if isinstance(event.data, Job) else asdict(event.data)
            out.line(json.dumps({"id": event.id, "event": event.event, "data": data}, ensure_ascii=False))
        elif event.event == "progress" and isinstance(event.data, ProgressUpdate):
            update = event.data
            if update.attempt is not None:
                if update.attempt != attempt and (attempt is not None or update.attempt > 1):
                    view.end_line()
                    out.note(f"[attempt {update.attempt}]")
                attempt = update.attempt
            # A thinking block comes before the text it leads to, a tool call after it.
            before = [d for d in update.deltas if d.get("type") == "thinking_delta"]
            view.deltas(before)
            view.text(update.text)
            view.deltas([d for d in update.deltas if d.get("type") != "thinking_delta"])
        if event.terminal:
            if not out.as_json:
                view.end_line()
                if isinstance(event.data, Job):  # always, from this API: an end event carries the job
                    out.note(printable(summary(event.data)))
            return EXIT_OK if event.event == "succeeded" else EXIT_JOB_NOT_SUCCEEDED
    out.note("error: the stream ended without the job's end")
    return EXIT_ERROR


class _TailView:
    """Writes the streamed blocks one after another, each section labelled."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.section: tuple[Any, str] | None = None  # the non-text block (index, kind) being written, if any
        self.at_line_start = True

    def write(self, text: str) -> None:
        text = printable(text)  # model text: never raw to a terminal
        if text:
            self.out.write(text)
            self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self.at_line_start:
            self.write("\n")

    def text(self, text: str) -> None:
        if text and self.section is not None:
            self.end_line()
            self.write("[text]\n")
            self.section = None
        self.write(text)

    def deltas(self, deltas: list[dict[str, Any]]) -> None:
        for delta in deltas:
            kind = delta.get("type", "")
            if kind not in DELTA_LABELS:
                continue  # a signature: nothing a person reads
            if self.section != (delta.get("block"), kind):
                self.end_line()
                self.write(f"[{DELTA_LABELS[kind]}, block {delta.get('block')}]\n")
                self.section = (delta.get("block"), kind)
            if kind == "citations_delta":
                self.write(f"{(delta.get('citation') or {}).get('cited_text', '')}\n")
            else:
                self.write(str(delta.get(DELTA_FIELDS[kind], "")))


COMMANDS = {
    "submit": cmd_submit,
    "get": cmd_get,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "redeliver": cmd_redeliver,
    "list": cmd_list,
    "tail": cmd_tail,
    "usage": cmd_usage,
    "analyze": cmd_analyze,
    "batch submit": cmd_batch_submit,
    "batch get": cmd_batch_get,
    "batch redeliver": cmd_batch_redeliver,
}


# --------------------------------------------------------------------------- waiting


def wait_and_show(client: JobsClient, job: Job, args: argparse.Namespace, out: Output) -> int:
    line = ProgressLine(sys.stderr)
    started = time.monotonic()

    def show(seen: Job) -> None:
        if seen.raw.get("kind") == "document":
            bar = document_bar(seen.raw)
            line.update(f"{seen.status} {bar}", f"job {seen.id}: {bar} ({time.monotonic() - started:.0f} s)")
            return
        detail = f", {seen.progress.output_tokens} output tokens" if seen.status == "running" else ""
        line.update(seen.status, f"job {seen.id}: {seen.status}{detail} ({time.monotonic() - started:.0f} s)")

    show(job)
    try:
        job = job if job.done else client.wait(job.id, timeout=args.wait_timeout, on_update=show)
    except WaitTimeout as exc:
        line.end()
        if exc.job is not None:
            out.job(exc.job)
        out.note(f"error: {exc}")
        return EXIT_JOB_NOT_SUCCEEDED
    line.end()
    out.job(job)
    return EXIT_OK if job.status == "succeeded" else EXIT_JOB_NOT_SUCCEEDED


def wait_and_show_batch(client: JobsClient, batch: Batch, args: argparse.Namespace, out: Output) -> int:
    line = ProgressLine(sys.stderr)
    started = time.monotonic()

    def show(seen: Batch) -> None:
        line.update(
            f"{seen.status} {seen.counts}", f"batch {seen.id}: {counts(seen)} ({time.monotonic() - started:.0f} s)"
        )

    show(batch)
    try:
        batch = batch if batch.done else client.wait_batch(batch.id, timeout=args.wait_timeout, on_update=show)
    except WaitTimeout as exc:
        line.end()
        out.batch(exc.job)
        out.note(f"error: {exc}")
        return EXIT_JOB_NOT_SUCCEEDED
    line.end()
    out.batch(batch)
    ended_well = batch.counts.succeeded == len(batch.job_ids)
    return EXIT_OK if ended_well else EXIT_JOB_NOT_SUCCEEDED


def document_bar(job: dict[str, Any], width: int = 20) -> str:
    """`[########............]  40% summary` for a document job: its percent done and the
    step running (else its status)."""
    percent = (job.get("progress") or {}).get("percent")
    percent = max(0, min(100, percent)) if isinstance(percent, int) else 0
    running = [step.get("name") for step in job.get("steps") or [] if step.get("status") == "running"]
    filled = width * percent // 100
    what = printable(str(running[0] if running else job.get("status")))
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}% {what}"


class ProgressLine:
    """A status line on stderr while waiting: rewritten in place on a terminal; elsewhere
    (a log, a pipe) one line each time the state changes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.state: str | None = None
        self.shown = False

    def update(self, state: str, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        elif state != self.state:
            self.stream.write(text + "\n")
        else:
            return
        self.state, self.shown = state, True
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- output


class Output:
    """What a command prints: the API's JSON with --json, else a short text for people."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def job(self, job: Job) -> int:
        if self.as_json:
            return self.json(job.raw)
        self.line(f"job {job.id}: {job.status}  ({job.priority}, {job.model}, {plural(job.attempts, 'attempt')})")
        if job.done:
            self.line("  " + printable(summary(job)))
        for name, analysis in ((job.raw.get("result") or {}).get("analyses") or {}).items():
            output = analysis.get("output")  # a document job's: one line per analysis
            self.line(f"{printable(name)}: {printable(output if isinstance(output, str) else json.dumps(output))}")
        text = job.result.text if job.result else job.progress.text
        if text:
            self.line(printable(text))
        return EXIT_OK

    def page(self, page: JobPage) -> int:
        if self.as_json:
            return self.json({"data": [job.raw for job in page.data], "next_cursor": page.next_cursor})
        for job in page.data:
            created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else "-"
            self.line(f"{job.id}  {job.status:<9}  {created}  {job.model or '-'}")
        if page.next_cursor:
            self.line(f"(more: --cursor {page.next_cursor})")
        return EXIT_OK

    def batch(self, batch: Batch) -> int:
        if self.as_json:
            return self.json(batch.raw)
        self.line(f"batch {batch.id}: {counts(batch)}")
        for job_id in batch.job_ids:
            self.line(f"  {job_id}")
        return EXIT_OK

    def usage(self, report: UsageReport) -> int:
        if self.as_json:
            return self.json(report.raw)
        self.line(f"{report.group_by.upper():<24} {'JOBS':>8} {'INPUT':>12} {'OUTPUT':>12} {'COST_USD':>12}")
        rows = [(printable(row.key), row.figures) for row in report.data] + [("total", report.total)]
        for key, figures in rows:
            self.line(
                f"{key:<24} {figures.jobs:>8} {figures.input_tokens:>12} {figures.output_tokens:>12} "
                f"{figures.cost_usd:>12.6f}"
            )
        if (budget := report.budget) is not None:
            resets = budget.resets_at.strftime("%Y-%m-%d %H:%M UTC") if budget.resets_at else "?"
            self.line(
                f"budget: {budget.spent:.6f} spent + {budget.reserved:.6f} reserved of {budget.limit:.2f} USD "
                f"per {budget.window}; {budget.remaining:.6f} remaining, resets {resets}"
            )
        return EXIT_OK

    def json(self, document: Any) -> int:
        self.line(json.dumps(document, indent=2, ensure_ascii=False))
        return EXIT_OK

    @staticmethod
    def line(text: str) -> None:
        print(text, flush=True)

    @staticmethod
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    @staticmethod
    def note(text: str) -> None:
        sys.stdout.flush()
        print(text, file=sys.stderr, flush=True)


def printable(text: str) -> str:
    """`text` without the terminal control sequences in it (see TERMINAL_CONTROL)."""
    return TERMINAL_CONTROL.sub("", text)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def counts(batch: Batch) -> str:
    """`running, 3 jobs: 1 queued, 2 succeeded` (statuses with no job left out)."""
    by_status = [f"{n} {status}" for status, n in vars(batch.counts).items() if n]
    return f"{batch.status}, {plural(len(batch.job_ids), 'job')}: " + ", ".join(by_status)


def summary(job: Job) -> str:
    """`succeeded: 12 input + 40 output tokens, $0.000424` (and the error for a failure)."""
    if job.result:
        usage = job.result.usage
        tokens = f"{usage.input_tokens} input + {usage.output_tokens} output tokens"
        cost = job.result.cost_usd
    else:
        tokens, cost = f"{job.progress.output_tokens} output tokens", None
    parts = [tokens, f"${cost:.6f}" if cost is not None else "cost unknown"]
    if job.attempts > 1:
        parts.append(f"{job.attempts} attempts")
    if job.status != "succeeded" and job.error:
        parts.append(f"{job.error.type}: {job.error.message}")
    return f"{job.status}: " + ", ".join(parts)


# --------------------------------------------------------------------------- arguments


def job_options(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields given on the command line (None: not given)."""
    options = {
        "priority": args.priority, "tier": args.tier, "model": args.model, "max_tokens": args.max_tokens,
        "system": args.system, "timeout_s": args.timeout_s,
    }  # fmt: skip
    return {name: value for name, value in options.items() if value is not None}


def submit_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "metadata": parse_metadata(args.metadata),
        "callback_url": args.callback_url,
        "idempotency_key": args.idempotency_key,
    }


def parse_metadata(pairs: Sequence[str]) -> dict[str, str] | None:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, not {pair!r}")
        metadata[key] = value
    return metadata or None


def read_input(path: Path) -> str:
    """A file's text; '-' reads stdin."""
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def read_params(path: Path) -> dict[str, Any]:
    """A Messages API request, one JSON object; '-' reads stdin."""
    try:
        params = json.loads(read_input(path))
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(params, dict):
        raise UsageError(f"{path}: a Messages request is a JSON object")
    return params


def read_job_lines(path: Path) -> list[dict[str, Any]]:
    """Job requests, one JSON object a line (blank lines skipped); '-' reads stdin."""
    requests = []
    for number, line in enumerate(read_input(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(request, dict):
            raise UsageError(f"{path}:{number}: a job request is a JSON object")
        requests.append(request)
    return requests


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

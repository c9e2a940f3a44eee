"""Command line for the LLM job service: `python -m service.cli`.

    export LLMJOBS_API_KEY=...                  # and LLMJOBS_URL (default http://127.0.0.1:8000)
    python -m service.cli submit "Write a haiku about queues" --priority high --metadata ticket=T-1
    python -m service.cli submit "Summarise ..." --wait  # prints the final job; exit 0 if it succeeded
    python -m service.cli get JOB_ID
    python -m service.cli list --status running
    python -m service.cli cancel JOB_ID
    python -m service.cli retry JOB_ID
    python -m service.cli tail JOB_ID                # the text as it streams; a summary on stderr

Exit codes: 0 done (for `--wait` and `tail`: the job succeeded), 1 the job failed, was
canceled or is still running when `--wait` gave up, 2 an API, connection or usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from service.client import APIConnectionError, APIError, JobsClient, WaitTimeout

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_JOB_NOT_SUCCEEDED, EXIT_ERROR = 0, 1, 2

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
    # --url/--key are accepted before or after the subcommand.
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", default=argparse.SUPPRESS, help=f"API base URL (env LLMJOBS_URL, {DEFAULT_URL})")
    connection.add_argument("--key", default=argparse.SUPPRESS, help="API key (env LLMJOBS_API_KEY)")

    parser = argparse.ArgumentParser(
        prog="python -m service.cli", description="Submit and follow LLM jobs.", parents=[connection]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", parents=[connection], help="queue a job and print it")
    submit.add_argument("prompt", help="the prompt (a single user message)")
    submit.add_argument("--priority", choices=["high", "default", "low"])
    submit.add_argument("--model")
    submit.add_argument("--max-tokens", type=int)
    submit.add_argument("--temperature", type=float)
    submit.add_argument("--system", help="the system prompt")
    submit.add_argument(
        "--metadata", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="echoed back with the job"
    )
    submit.add_argument("--timeout-s", type=int, help="deadline for the whole job, in seconds")
    submit.add_argument("--callback-url", help="URL to receive a signed webhook when the job ends")
    submit.add_argument("--idempotency-key", help="a repeat with the same key returns the first job")
    submit.add_argument("--wait", action="store_true", help="wait for the job to end and print the final job")
    submit.add_argument("--wait-timeout", type=float, default=600.0, help="seconds --wait waits (default 600)")

    for name, text in (("get", "print a job"), ("cancel", "cancel a job"), ("retry", "run a failed job again")):
        command = commands.add_parser(name, parents=[connection], help=text)
        command.add_argument("job_id", metavar="ID")

    listing = commands.add_parser("list", parents=[connection], help="print a page of your jobs, newest first")
    listing.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "canceled"])
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")

    tail = commands.add_parser("tail", parents=[connection], help="print a job's text as it streams")
    tail.add_argument("job_id", metavar="ID")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        client = make_client(args)
        with client:
            return COMMANDS[args.command](client, args)
    except UsageError as exc:
        return fail(f"error: {exc}")
    except APIConnectionError as exc:
        return fail(f"error: {exc.message}")
    except APIError as exc:
        return fail(f"error {exc.code}: {exc.message}")
    except KeyboardInterrupt:
        return 130


def make_client(args: argparse.Namespace) -> JobsClient:
    url = getattr(args, "url", None) or os.environ.get("LLMJOBS_URL") or DEFAULT_URL
    key = getattr(args, "key", None) or os.environ.get("LLMJOBS_API_KEY")
    if not key:
        raise UsageError("no API key: set LLMJOBS_API_KEY or pass --key")
    return JobsClient(url, key)


def cmd_submit(client: JobsClient, args: argparse.Namespace) -> int:
    job = client.submit(
        args.prompt,
        priority=args.priority,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        system=args.system,
        metadata=parse_metadata(args.metadata),
        timeout_s=args.timeout_s,
        callback_url=args.callback_url,
        idempotency_key=args.idempotency_key,
    )
    if not args.wait:
        print_json(job)
        return EXIT_OK
    try:
        job = client.wait(job["id"], timeout=args.wait_timeout)
    except WaitTimeout as exc:
        if exc.job is not None:
            print_json(exc.job)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_JOB_NOT_SUCCEEDED
    print_json(job)
    return EXIT_OK if job["status"] == "succeeded" else EXIT_JOB_NOT_SUCCEEDED


def cmd_get(client: JobsClient, args: argparse.Namespace) -> int:
    print_json(client.get(args.job_id))
    return EXIT_OK


def cmd_cancel(client: JobsClient, args: argparse.Namespace) -> int:
    print_json(client.cancel(args.job_id))
    return EXIT_OK


def cmd_retry(client: JobsClient, args: argparse.Namespace) -> int:
    print_json(client.retry(args.job_id))
    return EXIT_OK


def cmd_list(client: JobsClient, args: argparse.Namespace) -> int:
    print_json(client.list(status=args.status, limit=args.limit, cursor=args.cursor))
    return EXIT_OK


def cmd_tail(client: JobsClient, args: argparse.Namespace) -> int:
    """The progress text to stdout as it arrives; "[attempt N]" on stderr when a retry
    starts; a one-line summary on stderr at the end."""
    out, err = sys.stdout, sys.stderr
    attempt: int | None = None
    at_line_start = True
    for event in client.stream(args.job_id):
        if event.event == "progress" and isinstance(event.data, dict):
            new_attempt = event.data.get("attempt")
            if new_attempt is not None and new_attempt != attempt and (attempt is not None or new_attempt > 1):
                if not at_line_start:
                    out.write("\n")
                    at_line_start = True
                out.flush()
                print(f"[attempt {new_attempt}]", file=err, flush=True)
            if new_attempt is not None:
                attempt = new_attempt
            text = printable(event.data.get("text") or "")  # model text: never raw to a terminal
            if text:
                out.write(text)
                out.flush()
                at_line_start = text.endswith("\n")
        elif event.event in ("succeeded", "failed", "canceled"):
            if not at_line_start:
                out.write("\n")
            out.flush()
            job = event.data if isinstance(event.data, dict) else {}
            print(printable(summary(event.event, job)), file=err, flush=True)
            return EXIT_OK if event.event == "succeeded" else EXIT_JOB_NOT_SUCCEEDED
    print("error: the stream ended without the job's end", file=err)
    return EXIT_ERROR


def printable(text: str) -> str:
    """`text` without the terminal control sequences in it (see TERMINAL_CONTROL)."""
    return TERMINAL_CONTROL.sub("", text)


def summary(status: str, job: dict[str, Any]) -> str:
    """`succeeded: 12 input + 40 output tokens, $0.000424` (or the error for a failure)."""
    result = job.get("result") or {}
    usage = result.get("usage") or {}
    if usage:
        tokens = f"{usage.get('input_tokens', '?')} input + {usage.get('output_tokens', '?')} output tokens"
    else:
        tokens = f"{(job.get('progress') or {}).get('output_tokens', 0)} output tokens"
    cost = result.get("cost_usd")
    parts = [tokens, f"${cost:.6f}" if isinstance(cost, int | float) else "cost unknown"]
    if job.get("attempts", 1) > 1:
        parts.append(f"{job['attempts']} attempts")
    error = job.get("error")
    if status != "succeeded" and error:
        parts.append(f"{error.get('type')}: {error.get('message')}")
    return f"{status}: " + ", ".join(parts)


def parse_metadata(pairs: Sequence[str]) -> dict[str, str] | None:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, not {pair!r}")
        metadata[key] = value
    return metadata or None


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False), flush=True)


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_ERROR


COMMANDS = {
    "submit": cmd_submit,
    "get": cmd_get,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "list": cmd_list,
    "tail": cmd_tail,
}

if __name__ == "__main__":
    sys.exit(main())

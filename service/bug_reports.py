"""Bug reports to the callers' Sentry, when SENTRY_DSN is set (`setup_bug_reports`, once per
process). Off, nothing of sentry-sdk is loaded and `report_bug` returns at once.

A bug is what the service did not expect: a `500` from the API, a task that raised
something unexpected, an error in one of the worker's or the scheduler's loops. An
expected end of a job (the provider refused it, its deadline passed, it was canceled, it
failed after its retries) is no bug and is never reported: the code that reports sits
only where those are already told apart (service/worker/async_worker.py, the API's
unhandled exceptions, scheduler.py).

What leaves: the exception's type and stack (files, functions, lines and the service's own
source around them), the process and the tags given (job id, client, queue, kind) and the
trace id. What sentry-sdk would send by default and does not here: the exception's message
(it may quote what the code was handling: a prompt, a reply; the report says only its
length), the local variables of every frame (a task's are its prompt), request bodies and headers, log
lines as breadcrumbs (and log records as events), the command line and installed
packages, and every integration that patches a library: its Anthropic one reports
provider errors with their request, its RQ one cannot see this worker's jobs anyway, its
HTTP ones add outgoing URLs (webhook addresses) as breadcrumbs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service import tracing

if TYPE_CHECKING:  # sentry-sdk is imported only when SENTRY_DSN is set
    from sentry_sdk.types import Event

ON = False  # set once by setup_bug_reports


def setup_bug_reports(process: str, dsn: str | None) -> None:
    global ON
    if dsn is None:
        return
    import sentry_sdk
    from sentry_sdk.integrations.atexit import AtexitIntegration
    from sentry_sdk.integrations.dedupe import DedupeIntegration
    from sentry_sdk.integrations.excepthook import ExcepthookIntegration

    sentry_sdk.init(
        dsn=dsn,
        # Only these three: flush at exit, drop a second report of the same exception, and
        # report one that ends the process (uncaught).
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[AtexitIntegration(), DedupeIntegration(), ExcepthookIntegration()],
        include_local_variables=False,
        send_default_pii=False,
        max_request_body_size="never",
        max_breadcrumbs=0,
        send_client_reports=False,
        auto_session_tracking=False,
        before_send=_without_messages,
    )
    sentry_sdk.get_global_scope().set_tag("process", process)
    ON = True


def _without_messages(event: Event, hint: dict[str, Any]) -> Event:
    """No exception's message leaves: `KeyError(prompt)` or `ValueError(f"bad {reply}")` would
    carry the text the service must not send. Its type, stack and tags say where the bug is."""
    for exception in event.get("exception", {}).get("values", []):
        if exception.get("value"):
            exception["value"] = f"(a message of {len(exception['value'])} characters, not sent)"
    return event


def report_bug(exc: BaseException, **tags: Any) -> None:
    """Report `exc` as a bug, tagged with `tags` (those that are None are left out) and the
    current trace's id, so the report and the trace find each other."""
    if not ON:
        return
    import sentry_sdk

    given = {name: str(value) for name, value in tags.items() if value is not None}
    if (ids := tracing.ids_of_current_span()) is not None:
        given["trace_id"] = ids[0]
    sentry_sdk.capture_exception(exc, tags=given)

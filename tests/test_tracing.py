"""Traces end to end: the API, a worker and a webhook receiver as real processes, exporting
over OTLP (http/protobuf) to a receiver in the test, which decodes the real
opentelemetry-proto messages. A job belongs to the trace of the request that submitted it."""

from __future__ import annotations

import io
import json
import secrets
import subprocess

import pytest
import requests
from rq.job import Job

from service.jobs.storage.lookup import fetch_job
from service.jobs.storage.queues import LLM_TASK, SERIALIZER
from service.jobs.storage.record import JobRecord
from tests import documents
from tests.otlp_receiver import Collector, ReceivedSpan
from tests.support.jobs import get, post_job, post_job_in_app, submit, wait_until_finished
from tests.support.keys import ALICE
from tests.support.paths import PYTHON, ROOT
from tests.support.waiting import wait_for
from tests.support.webhooks import WEBHOOKS_ON, webhook_of

SECRET_PROMPT = "the-secret-launch-code-4711"
SERVER, CLIENT, CONSUMER = 2, 3, 5  # opentelemetry.proto's SpanKind


@pytest.fixture
def collector():
    collector = Collector()
    server = collector.serve()
    yield collector
    server.shutdown()
    server.server_close()


def tracing_to(collector: Collector) -> dict[str, str]:
    # Spans are exported in batches every 100 ms instead of 5 s, so the test sees them soon.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}


def caller_context() -> tuple[str, str, dict[str, str]]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, {**ALICE, "traceparent": f"00-{trace_id}-{span_id}-01"}


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    (span,) = [span for span in spans if span.name == name]
    return span


def test_a_job_continues_its_callers_trace_through_the_queue_to_its_webhook(
    start_api, start_worker, receiver, collector, processes
):
    env = {**WEBHOOKS_ON, **tracing_to(collector)}
    api = start_api(**env)
    worker = start_worker(**env)  # every queue, webhook deliveries included
    trace_id, caller_span_id, headers = caller_context()

    body = {"prompt": f"{SECRET_PROMPT} [[fake: tokens=5]]", "callback_url": receiver.url}
    job = post_job(api, body, headers).json()
    webhook_of(api, job["id"], "delivered")
    done = get(api, job["id"])
    names = {"POST /v1/jobs", "message job queued", "message job", "chat claude-sonnet-5-5"}
    names |= {"webhook delivery queued", "webhook delivery", "POST"}
    wait_for(lambda: names <= {span.name for span in collector.in_trace(trace_id)}, what="the job's spans")
    spans = collector.in_trace(trace_id)

    # The submit continues the caller's span; every run of the job is its child.
    submit_span = one(spans, "POST /v1/jobs")
    assert (submit_span.service, submit_span.kind, submit_span.parent_id) == ("llm-jobs-api", SERVER, caller_span_id)
    assert submit_span.attributes["http.response.status_code"] == 202
    run, queued, delivery = one(spans, "message job"), one(spans, "message job queued"), one(spans, "webhook delivery")
    assert {span.parent_id for span in (run, delivery)} == {submit_span.span_id}
    assert run.service == delivery.service == "llm-jobs-worker" and run.kind == delivery.kind == CONSUMER
    assert run.attributes["messaging.message.id"] == job["id"]
    assert (run.attributes["llmjobs.client"], run.attributes["llmjobs.outcome"]) == ("alice", "succeeded")
    assert queued.end_ns == run.start_ns and queued.start_ns <= queued.end_ns

    # The LLM call, with the GenAI semantic conventions' attributes.
    call = one(spans, "chat claude-sonnet-5-5")
    assert (call.parent_id, call.kind) == (run.span_id, CLIENT)
    usage = done["result"]["usage"]
    assert {
        name: call.attributes[name]
        for name in (
            "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
            "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons",
        )
    } == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-5-5", "gen_ai.usage.input_tokens": usage["input_tokens"],
        "gen_ai.usage.output_tokens": usage["output_tokens"],
        "gen_ai.response.finish_reasons": [done["result"]["stop_reason"]],
    }  # fmt: skip

    # The webhook's request is a span of the delivery, and it sends that span on.
    request = one(spans, "POST")
    assert (request.parent_id, request.kind, request.attributes["http.response.status_code"]) == (
        delivery.span_id, CLIENT, 200,
    )  # fmt: skip
    (sent,) = receiver.deliveries
    assert sent.headers["traceparent"] == f"00-{trace_id}-{request.span_id}-01"

    # Only the service's own spans: none of the anthropic SDK's, which it makes by itself
    # when a tracer provider is set up (and would fill with the prompt given one variable).
    assert {span.scope for span in collector.spans} == {"llmjobs"}

    # No prompt or reply text in anything exported.
    exported = b"".join(collector.bodies)
    assert SECRET_PROMPT.encode() not in exported
    assert done["result"]["text"] and done["result"]["text"].encode() not in exported

    # The worker's log lines of the job's run carry the trace and the run's span.
    lines = [json.loads(line) for line in processes.log_of(worker).splitlines() if line.startswith("{")]
    (ended,) = [line for line in lines if line.get("job_id") == job["id"] and line["message"] == "attempt ended"]
    assert (ended["trace_id"], ended["span_id"]) == (trace_id, run.span_id)


def test_a_failed_call_is_an_error_span_with_the_providers_error_type(start_api, start_worker, collector):
    env = tracing_to(collector)
    api = start_api(**env)
    start_worker("high", "default", "low", **env)
    trace_id, _, headers = caller_context()

    job = submit(api, {"prompt": "[[fake: error=400]]"}, headers)
    wait_for(lambda: get(api, job["id"])["status"] == "failed", what="the job to fail")  # polls untraced
    assert get(api, job["id"], headers)["status"] == "failed"  # a read its caller traces
    names = {"message job", "chat claude-sonnet-5-5", "GET /v1/jobs/<job_id>"}
    wait_for(lambda: names <= {s.name for s in collector.in_trace(trace_id)}, what="the spans")
    spans = collector.in_trace(trace_id)
    # Reads are traced only when their caller sends a trace context: the polls were not.
    assert [span.trace_id for span in collector.spans if span.name.startswith("GET")] == [trace_id]
    call, run = one(spans, "chat claude-sonnet-5-5"), one(spans, "message job")
    error = 2
    assert (call.status_code, call.attributes["error.type"]) == (error, "invalid_request_error")
    assert (run.status_code, run.attributes["llmjobs.outcome"]) == (error, "failed")


def test_a_document_job_has_a_span_per_step_and_none_holds_its_text(start_api, start_worker, collector):
    env = tracing_to(collector)
    api = start_api(**env)
    start_worker("high", "default", "low", **env)
    trace_id, _, headers = caller_context()
    analyses = ["summary", {"name": "refused", "prompt": "Say no. [[fake: error=400]]"}]
    upload = requests.post(
        f"{api}/v1/documents",
        files={
            "file": ("minutes.docx", io.BytesIO(documents.docx([SECRET_PROMPT, "It approved the plan."]))),
            "options": (None, json.dumps({"analyses": analyses})),
        },
        headers=headers,
        timeout=30,
    )
    assert upload.status_code == 202, upload.text
    assert wait_until_finished(api, upload.json()["id"], timeout=60)["status"] == "succeeded"
    steps = {"document step extract", "document step summary", "document step refused"}
    wait_for(lambda: steps | {"document job"} <= {s.name for s in collector.in_trace(trace_id)}, what="the steps")

    spans = collector.in_trace(trace_id)
    run = one(spans, "document job")
    by_name = {span.name: span for span in spans if span.name in steps}
    assert {span.parent_id for span in by_name.values()} == {run.span_id}
    assert {name: span.attributes["llmjobs.step.status"] for name, span in by_name.items()} == {
        "document step extract": "succeeded", "document step summary": "succeeded",
        "document step refused": "failed",
    }  # fmt: skip
    assert by_name["document step refused"].attributes["error.type"] == "invalid_request_error"
    calls = [span for span in spans if span.name == "chat claude-sonnet-5-5"]
    assert {call.parent_id for call in calls} == {by_name["document step summary"].span_id,
                                                 by_name["document step refused"].span_id}  # fmt: skip
    assert SECRET_PROMPT.encode() not in b"".join(collector.bodies)


def test_a_submit_without_a_trace_context_starts_one_at_the_root_ratio(start_api, collector):
    api = start_api(**tracing_to(collector), OTEL_TRACES_SAMPLER_ARG="0")
    submit(api, {"prompt": "no caller trace"}, ALICE)  # first: its span would be exported first
    trace_id, _, headers = caller_context()
    submit(api, {"prompt": "traced"}, headers)  # sampled by its caller: kept whatever the ratio
    wait_for(lambda: collector.in_trace(trace_id), what="the traced submit's span")
    assert [span.trace_id for span in collector.spans if span.name == "POST /v1/jobs"] == [trace_id]


def test_tracing_off_stores_no_trace_context(client, redis_conn):
    # OTEL_EXPORTER_OTLP_ENDPOINT unset: the caller's traceparent is not even read.
    _, _, headers = caller_context()
    response = post_job_in_app(client, headers=headers)
    assert response.status_code == 202
    job = fetch_job(redis_conn, response.get_json()["id"])
    assert job is not None and JobRecord(job).trace_context is None and "trace_context" not in job.meta


def test_off_no_sdk_is_set_up(service_env):
    # The worker's and the API's modules, set up as their entry points do, with neither
    # OTEL_EXPORTER_OTLP_ENDPOINT nor SENTRY_DSN: no tracer provider (the API's no-op proxy
    # stays), no exporter and no sentry-sdk loaded. (redis-py imports parts of the
    # OpenTelemetry SDK when it is installed, for metrics it records only when asked to.)
    script = """
import sys
import service.app, service.worker.async_worker
from opentelemetry import trace
from service.bug_reports import setup_bug_reports
from service.config import load_settings
from service.tracing import setup_tracing
settings = load_settings()
setup_tracing("worker", settings)
setup_bug_reports("worker", settings.sentry_dsn)
print(type(trace.get_tracer_provider()).__name__)
print(sorted(name for name in sys.modules if name.startswith(("opentelemetry.exporter", "sentry_sdk"))))
"""
    env = {k: v for k, v in service_env.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    done = subprocess.run([PYTHON, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["ProxyTracerProvider", "[]"]


def test_a_line_the_api_logs_in_a_request_carries_the_requests_trace(start_api, collector, processes, redis_conn):
    api = start_api(**tracing_to(collector), WEB_CONCURRENCY="1")
    # A record that lost its fields (another tool wrote it): reading it is a 500, which the
    # app logs with its traceback.
    broken = Job.create(
        LLM_TASK, connection=redis_conn, serializer=SERIALIZER, id=secrets.token_hex(16), meta={"client": "alice"}
    )
    broken.save()
    trace_id, _, headers = caller_context()

    assert requests.get(f"{api}/v1/jobs/{broken.id}", headers=headers, timeout=10).status_code == 500

    def logged() -> list[dict]:
        lines = (
            json.loads(line) for line in processes.log_of(processes.started[-1][1]).splitlines() if line[:1] == "{"
        )
        return [line for line in lines if line["level"] == "ERROR" and broken.id in line["message"]]

    (line,) = wait_for(logged, what="the 500's log line")
    request_span = wait_for(lambda: collector.in_trace(trace_id), what="the request's span")[0]
    assert (line["trace_id"], line["span_id"]) == (trace_id, request_span.span_id)

"""Traces for the callers' own tools: OpenTelemetry over OTLP (http/protobuf).

On when OTEL_EXPORTER_OTLP_ENDPOINT is set (`setup_tracing`, once per process, before it
serves); the SDK reads the other standard OTEL_* variables itself (OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER, OTEL_BSP_*,
OTEL_PROPAGATORS, OTEL_SDK_DISABLED, ...). Off, no SDK is set up and every helper here
returns at once after reading `ON`: a process without tracing does no work for it.

A job carries its submit's trace context through Redis (`JobRecord.trace_context`, the W3C
`traceparent`/`tracestate` as the propagator writes them), so the worker's spans and the
webhook it sends belong to the caller's trace. Spans carry ids, names, counts and states,
never a prompt, a reply or a document's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from service.config import Settings

ON = False  # set once by setup_tracing; read on every hot path, so a plain module global
TRACER = trace.get_tracer("llmjobs")  # a proxy: it follows the provider set up later
SERVICE_PREFIX = "llm-jobs-"  # the default service.name: llm-jobs-api, llm-jobs-worker, llm-jobs-scheduler

Carrier = dict[str, str]


def setup_tracing(process: str, settings: Settings) -> None:
    """Export this process's spans to `settings.otlp_endpoint` (read by the exporter from
    the environment, with its /v1/traces path), in batches from a thread of the SDK's own.

    Unless OTEL_TRACES_SAMPLER says otherwise, a request that carries its caller's trace
    context follows its caller's sampling decision, and `settings.traces_root_ratio` of the
    others start a trace: tracing every submit cost the API 8-22 % more CPU per submit
    (bench/RESULTS.md), and a job is traced for its caller's tools, which send the context."""
    global ON
    if settings.otlp_endpoint is None:
        return
    # Imported only here: a process without tracing never loads the exporter (nor sets up
    # the SDK, whose metrics part redis-py imports when it is installed, to use it only if asked).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE_PREFIX + process}))
    # sampler=None: the SDK's own, as OTEL_TRACES_SAMPLER (and its ARG) name it
    sampler = None if settings.traces_sampler else ParentBasedTraceIdRatio(settings.traces_root_ratio)
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    ON = True


def current_carrier() -> Carrier | None:
    """The current trace context as headers (`traceparent`, ...), to store or send on; None
    when tracing is off or there is no trace."""
    if not ON:
        return None
    carrier: Carrier = {}
    propagate.inject(carrier)
    return carrier or None


def propagated_headers() -> set[str]:
    """The headers that carry a trace context (`traceparent`, `tracestate`, `baggage` with
    the default propagators)."""
    return propagate.get_global_textmap().fields


def context_of(carrier: Any) -> context.Context | None:
    """The trace context `carrier` (a dict, or a request's headers) holds; None when
    tracing is off or it holds none."""
    if not ON or not carrier:
        return None
    return propagate.extract(carrier)


def _type_name(exc: BaseException) -> str:
    return type(exc).__name__


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    error_type: Callable[[BaseException], str] = _type_name,
) -> Iterator[Span | None]:
    """A child span of the current one, current inside the block; None (and no work) when
    tracing is off or the block is in no trace. An exception ends it with an error status
    naming its `error_type` (by default the exception's type), never its message, which
    may quote text."""
    if not ON or not trace.get_current_span().get_span_context().is_valid:
        yield None
        return
    with TRACER.start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_failed(current, error_type(exc))
            raise


def annotate(attributes: Mapping[str, Any], *, error_type: str | None = None) -> None:
    """Add `attributes` to the current span, and mark it failed with `error_type` if given;
    no work when tracing is off."""
    if ON:
        current = trace.get_current_span()
        current.set_attributes(attributes)
        if error_type is not None:
            mark_failed(current, error_type)


def mark_failed(target: Span | None, error_type: str) -> None:
    """Mark `target` failed with `error_type` (the semantic conventions' `error.type`)."""
    if target is not None:
        target.set_attribute("error.type", error_type)
        target.set_status(Status(StatusCode.ERROR, error_type))


def ids_of_current_span() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as hex, for a log line; None outside a trace."""
    if not ON:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")

"""The span of one LLM call, with the OpenTelemetry GenAI semantic conventions' attributes:
the operation, the provider, the model asked for and the one that answered, the tokens in
and out (also of a call cut short: the provider bills them) and why the reply stopped.
Never the prompt or the reply: the conventions' content attributes are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry.trace import Span, SpanKind

from service import tracing
from service.llm.client import CallUsage, LLMReply
from service.llm.errors import LLMError

PROVIDER = "anthropic"


def _error_type(exc: BaseException) -> str:
    return exc.type if isinstance(exc, LLMError) else type(exc).__name__


@contextmanager
def llm_call_span(model: str, usage: CallUsage) -> Iterator[Callable[[LLMReply], None]]:
    """The block makes one call of `model` whose bill `usage` keeps; it hands the reply to
    the function it is given."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.system": PROVIDER,  # the name before the conventions' 1.37: older backends read it
        "gen_ai.request.model": model,
    }
    with tracing.span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes, error_type=_error_type) as call:
        try:
            yield (lambda reply: _note_reply(call, reply)) if call is not None else _ignore
        finally:
            if call is not None:
                call.set_attributes(
                    {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}
                )


def _note_reply(call: Span, reply: LLMReply) -> None:
    if (model := reply.message.get("model")) is not None:
        call.set_attribute("gen_ai.response.model", model)
    if reply.stop_reason is not None:
        call.set_attribute("gen_ai.response.finish_reasons", [reply.stop_reason])


def _ignore(_reply: LLMReply) -> None:
    """Tracing is off, or the call is in no trace."""

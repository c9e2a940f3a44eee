"""Parse ``[[fake: key=value ...]]`` directives embedded in a prompt.

Tests drive the fake through the whole job service, so the only channel they
control end to end is the prompt text. A directive in the last user message
chooses the fake's behaviour for that one request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .wire import ERROR_TYPE_BY_STATUS, STATUS_BY_ERROR_TYPE

DIRECTIVE_RE = re.compile(r"\[\[fake:(?P<body>[^\]]*)\]\]")

# Integer keys and the smallest value each accepts.
_INT_KEYS = {
    "tokens": 0,
    "chunk_delay_ms": 0,
    "latency_ms": 0,
    "error": 100,
    "retry_after": 0,
    "spend_limit": 0,
    "after": 0,
    "hang": 0,
    "fail_times": 0,
    "broken_json": 0,
    "cache_read": 0,
    "tool_use": 0,
    "no_structured": 0,
    # The Message Batches API's (batches.py).
    "batch_delay_ms": 0,
    "batch_expire": 0,
    "create_delay_ms": 0,
    "create_error": 100,
    "created_delay_ms": 0,
    "result_delay_ms": 0,
    "clock_behind_ms": 0,
}
_BOOL_KEYS = {"hang", "spend_limit", "broken_json", "tool_use", "no_structured", "batch_expire"}
_STR_KEYS = {"mid_stream_error", "key"}
KNOWN_KEYS = frozenset(_INT_KEYS) | _STR_KEYS


class DirectiveError(ValueError):
    """A directive is malformed; surfaced to the client as a 400."""


@dataclass
class Directives:
    """Behaviour requested for a single request (defaults = plain success)."""

    tokens: int = 16
    chunk_delay_ms: int | None = None  # None: use the server-wide default
    latency_ms: int = 0
    error: int | None = None
    retry_after: int = 1
    spend_limit: bool = False
    mid_stream_error: str | None = None
    after: int | None = None  # None: per-behaviour default (2 for errors, 0 for hang)
    hang: bool = False
    fail_times: int | None = None
    key: str | None = None
    broken_json: bool = False  # a reply in JSON (as a prompt asked) is cut in half: not JSON
    cache_read: int | None = None  # given: the reply reports the prompt cache's counts, this many read
    tool_use: bool = False  # with tool_choice auto (or none given): the reply calls the first tool
    no_structured: bool = False  # the model refuses output_config.format with a 400, as older models do
    batch_delay_ms: int | None = None  # in a batch: it ends this long after its create (None: the server's)
    batch_expire: bool = False  # in a batch: this request's result is `expired`
    create_delay_ms: int = 0  # in a batch: its create waits this long before making it
    create_error: int | None = None  # in a batch: its create is refused with this status (with fail_times: so often)
    created_delay_ms: int = 0  # in a batch: its create's answer waits this long after making it
    result_delay_ms: int = 0  # in a batch: its results stream pauses this long before this request's line
    clock_behind_ms: int = 0  # in a batch: its created_at is stamped this long before now (a clock behind the caller's)

    def input_usage(self, input_tokens: int) -> dict[str, int]:
        """A reply's input token counts; the prompt cache's too when asked for, as the real API gives them."""
        if self.cache_read is None:
            return {"input_tokens": input_tokens}
        return {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cache_read,
        }

    def has_failure(self) -> bool:
        return (
            self.error is not None
            or self.mid_stream_error is not None
            or self.hang
            or self.broken_json
            or self.create_error is not None
        )

    def without_failures(self) -> Directives:
        """Copy with every failure behaviour removed (used once fail_times is spent)."""
        return Directives(
            tokens=self.tokens,
            chunk_delay_ms=self.chunk_delay_ms,
            latency_ms=self.latency_ms,
            cache_read=self.cache_read,
            tool_use=self.tool_use,
            no_structured=self.no_structured,
        )


def parse_directives(text: str) -> Directives:
    """Merge every ``[[fake: ...]]`` block in ``text`` (later keys win).

    Pairs are separated by whitespace and/or commas. Unknown keys and bad values
    raise DirectiveError so that a typo in a test fails loudly instead of
    silently running the happy path.
    """
    raw: dict[str, str] = {}
    for match in DIRECTIVE_RE.finditer(text):
        for pair in re.split(r"[\s,]+", match.group("body").strip()):
            if not pair:
                continue
            name, sep, value = pair.partition("=")
            if not sep or not name or not value:
                raise DirectiveError(f"fake directive: expected key=value, got {pair!r}")
            if name not in KNOWN_KEYS:
                known = ", ".join(sorted(KNOWN_KEYS))
                raise DirectiveError(f"fake directive: unknown key {name!r} (known: {known})")
            raw[name] = value

    values: dict[str, object] = {}
    for name, value in raw.items():
        if name in _STR_KEYS:
            values[name] = value
            continue
        try:
            number = int(value)
        except ValueError:
            raise DirectiveError(f"fake directive: {name} must be an integer, got {value!r}") from None
        if number < _INT_KEYS[name]:
            raise DirectiveError(f"fake directive: {name} must be >= {_INT_KEYS[name]}, got {number}")
        values[name] = (
            bool(number)
            if name in ("hang", "spend_limit", "broken_json", "tool_use", "no_structured", "batch_expire")
            else number
        )

    directives = Directives(**values)  # type: ignore[arg-type]
    _check_combinations(directives)
    return directives


def _check_combinations(d: Directives) -> None:
    if d.create_error is not None and not 400 <= d.create_error <= 599:
        raise DirectiveError("fake directive: create_error must be an HTTP error status (400..599)")
    if d.error is not None and d.error not in ERROR_TYPE_BY_STATUS:
        statuses = ", ".join(str(s) for s in sorted(ERROR_TYPE_BY_STATUS))
        raise DirectiveError(f"fake directive: error must be one of {statuses}, got {d.error}")
    if d.mid_stream_error is not None and d.mid_stream_error not in STATUS_BY_ERROR_TYPE:
        types = ", ".join(sorted(STATUS_BY_ERROR_TYPE))
        raise DirectiveError(f"fake directive: mid_stream_error must be one of {types}")
    if d.fail_times is not None and not d.key:
        raise DirectiveError("fake directive: fail_times needs key=SOMESTRING to count requests by")
    if d.fail_times is not None and not d.has_failure():
        # Documented default: fail with 529 overloaded until the budget is spent.
        d.error = 529

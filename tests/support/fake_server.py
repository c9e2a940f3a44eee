"""The fake Anthropic server (fake_anthropic/) from a test: prompts that script what it
answers, and its app served in a thread for the tests of the fake itself."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

# Short waits so the suite stays quick; the policy itself is the production one.
FAST_RETRIES = {"RETRY_BASE_S": "0.2", "RETRY_MAX_S": "1", "LLM_MAX_ATTEMPTS": "3"}


def directive(**fields: object) -> str:
    return "[[fake: " + " ".join(f"{k}={v}" for k, v in fields.items()) + "]]"


def fails_first(times: int, **fields: object) -> str:
    """A prompt whose first `times` provider calls fail as `fields` say, then succeed."""
    return f"flaky {directive(fail_times=times, key=uuid.uuid4().hex, **fields)}"


@contextlib.contextmanager
def fake_in_thread(**options: Any) -> Iterator[str]:
    """The fake Anthropic server's app (`create_app(**options)`) served in a thread of the test
    process; yields its base URL. For tests of the fake itself, which need no process of it."""
    from werkzeug.serving import make_server

    from fake_anthropic import create_app

    server = make_server("127.0.0.1", 0, create_app(**options), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()

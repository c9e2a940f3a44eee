"""Webhooks in a test: the settings that turn them on, a job's webhook state, and receivers
(`Receiver` scripts its answers and keeps each delivery; `Listener` only records requests,
for the tests of which addresses a callback may reach)."""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.jobs import get
from tests.support.waiting import wait_for

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


WEBHOOKS_ON = {"WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32", "WEBHOOK_RETRY_SCHEDULE": "1,1,1"}


def webhook_of(api: str, job_id: str, state: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (hook := get(api, job_id)["webhook"]) and hook["state"] == state and hook, timeout=timeout,
        what=f"the webhook to be {state}",
    )  # fmt: skip


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, headers, delay); 200 when the script runs out."""

    url: str = ""
    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append(Delivery(dict(self.headers.items()), body, time.time()))
                status, headers, delay = receiver.script.pop(0) if receiver.script else (200, {}, 0.0)
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_port}/hooks"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


class Listener:
    """An HTTP server on `host:port` that records every request it gets (line and Host)."""

    def __init__(self, host: str, port: int = 0):
        self.requests: list[tuple[str, str]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                listener.requests.append((self.requestline, self.headers.get("Host", "")))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def allowed_and_internal() -> Iterator[tuple[Listener, Listener]]:
    """An allowed receiver on 127.0.0.1 and an "internal" service on 127.0.0.2, same port."""
    allowed = Listener("127.0.0.1")
    internal = Listener("127.0.0.2", allowed.port)
    try:
        yield allowed, internal
    finally:
        allowed.close()
        internal.close()

"""The callback address policy and the delivery, in-process: name resolution is given to
`CallbackPolicy` as a function (the seam a test can play a name server at)."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace

from service.webhooks.addresses import CallbackPolicy
from service.webhooks.delivery import send
from tests.support.webhooks import SECRET, allowed_and_internal


def test_the_connection_uses_the_one_answer_of_the_injected_resolver():
    with allowed_and_internal() as (allowed, internal):
        answers = iter([["127.0.0.1"], ["127.0.0.2"]])
        policy = replace(CallbackPolicy.parse("127.0.0.1/32"), resolver=lambda host, port: next(answers))
        outcome = send(f"http://rebind.test:{allowed.port}/x?y=1", "{}", webhook_id="msg_1", secrets=[SECRET],
                       timeout_s=5, policy=policy)  # fmt: skip
        assert outcome.delivered, outcome
        assert allowed.requests == [("POST /x?y=1 HTTP/1.1", f"rebind.test:{allowed.port}")]
        assert internal.requests == []
        assert next(answers) == ["127.0.0.2"]  # asked once only


def test_a_delivery_gives_up_on_a_name_server_that_never_answers():
    never = threading.Event()
    policy = CallbackPolicy(resolve_timeout_s=0.2, resolver=lambda host, port: never.wait() and [])
    outcome = send("https://hang.test/x", "{}", webhook_id="msg_1", secrets=[SECRET], timeout_s=5, policy=policy)
    never.set()
    assert not outcome.delivered and outcome.final
    assert outcome.error == "callback_url's host did not resolve in time"


def test_tls_goes_to_the_checked_address_with_the_urls_name_as_sni():
    server = socket.create_server(("127.0.0.1", 0))
    hellos: list[bytes] = []

    def first_bytes() -> None:
        connection, _ = server.accept()
        with connection:
            hellos.append(connection.recv(65536))  # then hang up: no certificate to check

    reader = threading.Thread(target=first_bytes)
    reader.start()
    policy = replace(CallbackPolicy.parse("127.0.0.1/32"), resolver=lambda host, port: ["127.0.0.1"])
    url = f"https://callback.test:{server.getsockname()[1]}/x"
    outcome = send(url, "{}", webhook_id="msg_1", secrets=[SECRET], timeout_s=5, policy=policy)
    reader.join(timeout=10)
    server.close()
    (hello,) = hellos
    assert hello[0] == 0x16 and b"callback.test" in hello  # a TLS ClientHello naming the URL's host (SNI)
    assert not outcome.delivered and not outcome.final

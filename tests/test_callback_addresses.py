"""Where a callback may go (SSRF): the address policy at submit and at delivery.

Name resolution is played by tests/fake_dns (a `sitecustomize` loaded by the processes
these tests start) or, in-process, by a resolver given to `CallbackPolicy`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from rq.job import Job

from service.app import create_app
from service.jobs.push.job_webhooks import queue_delivery
from service.jobs.storage.queues import SERIALIZER
from tests.support.jobs import post_job, post_job_in_app, submit
from tests.support.keys import ALICE
from tests.support.paths import ROOT
from tests.support.webhooks import SECRET, Listener, allowed_and_internal, webhook_of

FAKE_DNS_PATH = str(ROOT / "tests" / "fake_dns")


def fake_dns(answers: str, **settings: str) -> dict[str, str]:
    """Settings for a process whose name lookups of the names in `answers` are scripted."""
    return {"WEBHOOK_SECRET": SECRET, "PYTHONPATH": FAKE_DNS_PATH, "FAKE_DNS": answers, **settings}


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener]]:
    with allowed_and_internal() as pair:
        yield pair


def api_client(monkeypatch: pytest.MonkeyPatch, service_env: dict[str, str], **settings: str):
    for name in ("REDIS_URL", "API_KEYS"):
        monkeypatch.setenv(name, service_env[name])
    for name in ("WEBHOOK_SECRET", "WEBHOOK_SECRETS", "CALLBACK_ALLOWED_NETWORKS", "MAX_BATCH_JOBS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return create_app().test_client()


def deliver_directly(redis_conn, job_id: str, url: str) -> None:
    """Queue a delivery to `url` for the job, as if its URL had been stored before a check
    that refuses it existed: the delivery must check it again by itself."""
    job = Job.fetch(job_id, connection=redis_conn, serializer=SERIALIZER)
    job.meta["webhook"] = {"id": "msg_direct", "url": url, "state": "pending", "attempts": 0,
                           "last_status_code": None, "last_error": None, "next_attempt_at": None}  # fmt: skip
    job.save_meta()
    queue_delivery(job, {"id": job_id, "status": "succeeded"})


# --- 1. backslash ---------------------------------------------------------------------------


@pytest.mark.parametrize("internal", ["127.0.0.1:{port}", "169.254.169.254"])
def test_a_backslash_url_is_refused_at_submit(service_env, monkeypatch, receiver, internal):
    # The operator allows one public receiver by name; the URL names it only after a backslash.
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET, CALLBACK_ALLOWED_NETWORKS="public.example")
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://{internal.format(port=port)}\\@public.example/hooks"
    response = post_job_in_app(client, {"prompt": "hi", "callback_url": url})
    assert response.status_code == 422, response.get_json()
    assert "backslash" in response.get_json()["errors"]["json"]["callback_url"][0]


def test_a_backslash_url_never_reaches_the_listener_at_delivery(start_api, start_worker, redis_conn, receiver):
    settings = {"WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOWED_NETWORKS": "public.example"}
    api = start_api(**settings)
    start_worker("webhooks", **settings)
    job = submit(api, {"prompt": "hi"})  # no LLM worker: it stays queued, and sends nothing itself
    port = receiver.url.split(":")[2].split("/")[0]
    deliver_directly(redis_conn, job["id"], f"http://127.0.0.1:{port}\\@public.example/hooks")
    hook = webhook_of(api, job["id"], "failed")
    assert receiver.deliveries == []
    assert "backslash" in hook["last_error"] and hook["attempts"] == 1


# --- 2. one resolution: the connection goes to the address checked --------------------------


def test_dns_rebinding_cannot_redirect_a_delivery(start_api, start_worker, listeners):
    allowed, internal = listeners
    # Each process's first lookup of rebind.test answers the allowed address, later ones the internal one.
    settings = fake_dns("rebind.test=127.0.0.1|127.0.0.2", CALLBACK_ALLOWED_NETWORKS="127.0.0.1/32")
    api = start_api(**settings)
    start_worker(**settings)
    start_worker("webhooks", **settings)
    job = submit(api, {"prompt": "hi [[fake: tokens=2]]", "callback_url": f"http://rebind.test:{allowed.port}/hooks"})
    webhook_of(api, job["id"], "delivered")
    assert internal.requests == []
    assert allowed.requests == [("POST /hooks HTTP/1.1", f"rebind.test:{allowed.port}")]  # Host: the URL's name


def test_a_name_of_loopback_is_refused_at_submit_and_at_delivery(
    start_api, start_worker, redis_conn, service_env, monkeypatch, receiver
):
    url = receiver.url.replace("127.0.0.1", "localhost")
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET)
    response = post_job_in_app(client, {"prompt": "hi", "callback_url": url})
    assert response.status_code == 422
    assert "internal address" in response.get_json()["errors"]["json"]["callback_url"][0]

    api = start_api(WEBHOOK_SECRET=SECRET)
    start_worker("webhooks", WEBHOOK_SECRET=SECRET)
    job = submit(api, {"prompt": "hi"})
    deliver_directly(redis_conn, job["id"], url)
    hook = webhook_of(api, job["id"], "failed")
    assert receiver.deliveries == [] and "internal address" in hook["last_error"]


# --- 3. one IDNA encoding --------------------------------------------------------------------


def test_the_check_and_the_connection_encode_a_name_alike(start_api, listeners):
    allowed, _ = listeners
    # IDNA 2003 makes ß.example ss.example; IDNA 2008 (what an HTTP client connects to) xn--zca.example.
    api = start_api(**fake_dns("ss.example=127.0.0.1;xn--zca.example=127.0.0.2", CALLBACK_ALLOWED_NETWORKS="127.0.0.1"))
    url = f"http://ß.example:{allowed.port}/hooks"
    response = post_job(api, {"prompt": "hi", "callback_url": url})
    assert response.status_code == 422, response.text
    assert response.json()["errors"]["json"]["callback_url"] == ["callback_url's host resolves to an internal address"]


# --- 4. ranges, 5. userinfo and ports, 6. the message ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://100.100.100.200/latest/meta-data",  # carrier-grade NAT: one cloud's metadata service
        "http://100.64.0.1/x",
        "http://[2002:7f00:1::]/x",  # 6to4 of 127.0.0.1
        "http://[2002:808:808::]/x",  # 6to4 at all
        "http://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
        "http://[::ffff:a9fe:a9fe]/x",  # IPv4-mapped 169.254.169.254
        "http://192.0.0.8/x",
        "http://239.255.255.250/x",  # multicast
        "http://[fec0::1]/x",  # site-local
        "http://[ff0e::1]/x",
    ],
)
def test_addresses_that_are_not_globally_routable_are_refused(service_env, monkeypatch, url):
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET)
    response = post_job_in_app(client, {"prompt": "hi", "callback_url": url})
    assert response.status_code == 422, response.get_json()
    assert "internal address" in response.get_json()["errors"]["json"]["callback_url"][0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://user:secret@127.0.0.1:9/x", "user name or password"),
        ("http://127.0.0.1@127.0.0.1:9/x", "user name or password"),
        ("http://127.0.0.1:99999/x", "port"),
        ("http://127.0.0.1:abc/x", "port"),
        ("http://127.0.0.1:0/x", "port"),
        ("http://127.0.0.1:/x", "port"),
        ("http://[::1/x", "valid URL"),
        ("http://[::1]x/", "port"),
        ("http://[127.0.0.1]/", "valid URL"),
        ("http://[fe80::1%25eth0]/", "port"),
        ("http://127.0.0.1:9/x y", "spaces"),
        ("http://%31%32%37.0.0.1/", "host name"),
    ],
)
def test_malformed_callback_urls_are_a_json_422(service_env, monkeypatch, url, message):
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET, CALLBACK_ALLOWED_NETWORKS="127.0.0.0/8,::1")
    for path, body in [("/v1/jobs", {"prompt": "hi", "callback_url": url}),
                       ("/v1/batches", {"jobs": [{"prompt": "hi", "callback_url": url}]}),
                       ("/v1/batches", {"jobs": [{"prompt": "hi"}], "callback_url": url})]:  # fmt: skip
        response = client.post(path, json=body, headers=ALICE)
        error = response.get_json()
        assert response.status_code == 422, error
        assert set(error) == {"code", "status", "message", "errors"}
        assert message in json.dumps(error["errors"]), error


def test_the_422_does_not_tell_which_internal_address_a_name_has(service_env, monkeypatch):
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET)
    response = post_job_in_app(client, {"prompt": "hi", "callback_url": "http://localhost:9/x"})
    assert response.status_code == 422
    assert "127.0.0.1" not in response.get_data(as_text=True) and "::1" not in response.get_data(as_text=True)


# --- 7. deadlines and bounds ------------------------------------------------------------------


def test_a_name_server_that_never_answers_is_a_422_not_a_hung_request(start_api):
    api = start_api(**fake_dns("hang.test=hang", CALLBACK_RESOLVE_TIMEOUT_S="1"))
    body = {"prompt": "hi", "callback_url": "http://hang.test/hooks"}
    response = post_job(api, body, timeout=20)
    assert response.status_code == 422
    assert response.json()["errors"]["json"]["callback_url"] == ["callback_url's host did not resolve in time"]


class EndlessBody:
    """Answers a POST with 200 and a body that never ends (until the client goes away)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            self.requests += 1
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                while True:
                    connection.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
            except OSError:
                return  # the client stopped reading and closed


def test_a_delivery_does_not_read_an_endless_answer(start_api, start_worker, redis_conn):
    endless = EndlessBody()
    settings = {"WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32"}
    api = start_api(**settings)
    start_worker("webhooks", **settings)
    job = submit(api, {"prompt": "hi"})
    deliver_directly(redis_conn, job["id"], endless.url)
    hook = webhook_of(api, job["id"], "delivered", timeout=30)
    assert (hook["attempts"], hook["last_status_code"], endless.requests) == (1, 200, 1)
    endless.sock.close()


# --- 12. a batch: its size before any per-job network work -----------------------------------


@pytest.fixture
def lookups(monkeypatch):
    """The names under .example the system resolver is asked for in this process (none resolves)."""
    asked: list[str] = []
    system_getaddrinfo = socket.getaddrinfo

    def lookup(host, *args, **kwargs):
        if not str(host).endswith(".example"):
            return system_getaddrinfo(host, *args, **kwargs)  # Redis, for one
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "not known")

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return asked


def test_a_batch_too_large_is_refused_before_any_lookup(service_env, monkeypatch, lookups):
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET, MAX_BATCH_JOBS="5")
    jobs = [{"prompt": "hi", "callback_url": f"http://h{index}.example/x"} for index in range(6)]
    response = client.post("/v1/batches", json={"jobs": jobs}, headers=ALICE)
    assert lookups == []
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {"jobs": ["at most 5 jobs (MAX_BATCH_JOBS)"]}


def test_a_batch_resolves_each_callback_host_once(service_env, monkeypatch, lookups):
    client = api_client(monkeypatch, service_env, WEBHOOK_SECRET=SECRET, MAX_BATCH_JOBS="5")
    jobs = [{"prompt": "hi", "callback_url": f"http://same.example/x{index}"} for index in range(5)]
    response = client.post("/v1/batches", json={"jobs": jobs}, headers=ALICE)
    assert lookups == ["same.example"]
    assert response.status_code == 422
    refused = response.get_json()["errors"]["json"]["jobs"]
    assert refused == {str(i): {"callback_url": ["callback_url's host does not resolve"]} for i in range(5)}

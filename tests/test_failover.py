"""Losing the Redis primary (DESIGN.md §11): a primary, a replica and three Sentinels, all
the same `redis-server` binary on free ports in a temp dir, with a failover that takes a few
seconds; the real API (gunicorn), worker and scheduler find the primary through Sentinel.

SIGKILL the primary with jobs in flight and submits arriving: the API answers only 202 or
503 meanwhile, is ready again within 30 s, and every job that got a 202 ends `succeeded`.
With REDIS_MIN_REPLICAS_ACK=1 a submit no replica confirms is a 503, not a 202 that a
failover could lose."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.support.jobs import post_job
from tests.support.keys import ALICE
from tests.support.network import free_port
from tests.support.paths import PYTHON
from tests.support.processes import Processes
from tests.support.prometheus import Samples, scrape
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

MASTER = "llmjobs"
SLOW_JOB = {"prompt": "[[fake: tokens=40 chunk_delay_ms=100]] a few seconds of output", "max_tokens": 100}
QUICK_JOB = {"prompt": "[[fake: tokens=4]] quick", "max_tokens": 16}
# Sentinel's own clock: a primary silent 1 s is down, a failover may take 3 s.
SENTINEL_CONFIG = """port {port}
bind 127.0.0.1
dir {directory}
sentinel monitor {master} 127.0.0.1 {primary_port} 2
sentinel down-after-milliseconds {master} 1000
sentinel failover-timeout {master} 3000
sentinel parallel-syncs {master} 1
"""


class Sentinels:
    """Three `redis-server --sentinel` processes watching one primary."""

    def __init__(self, directory: Path, primary_port: int):
        self.ports = [free_port() for _ in range(3)]
        self.processes: list[subprocess.Popen] = []
        binary = shutil.which("redis-server")
        assert binary
        for port in self.ports:
            home = directory / f"sentinel-{port}"
            home.mkdir()
            config = home / "sentinel.conf"  # Sentinel rewrites its own file
            config.write_text(
                SENTINEL_CONFIG.format(port=port, directory=home, master=MASTER, primary_port=primary_port)
            )
            self.processes.append(subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL))
        self.clients = [redis.Redis(port=port, decode_responses=True) for port in self.ports]

    @property
    def setting(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def primary_port(self) -> int | None:
        """The primary's port as a majority of the Sentinels name it (None: no majority yet)."""
        named = []
        for client in self.clients:
            try:
                named.append(int(client.sentinel_get_master_addr_by_name(MASTER)[1]))
            except (redis.RedisError, TypeError):
                continue
        best = max(set(named), key=named.count, default=None)
        return best if best is not None and named.count(best) >= 2 else None

    def failovers(self) -> int:
        """The failovers the Sentinels made: the newest configuration epoch any of them knows
        (each failover starts a new one)."""
        epochs = []
        for client in self.clients:
            try:
                epochs.append(int(client.sentinel_master(MASTER)["config-epoch"]))
            except redis.RedisError:
                continue
        return max(epochs)

    def watch_everything(self, replica_port: int) -> bool:
        """Every Sentinel knows the other two and sees the replica linked: a failover can happen."""
        try:
            for client in self.clients:
                master = client.sentinel_master(MASTER)
                replicas = client.sentinel_slaves(MASTER)
                if master["num-other-sentinels"] < 2:
                    return False
                if not any(r["port"] == replica_port and not r["is_sdown"] and r["master-link-status"] == "ok"
                           for r in replicas):  # fmt: skip
                    return False
            return True
        except redis.RedisError:
            return False

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


@pytest.fixture
def redis_ha(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, Sentinels]]:
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    replica.start()
    sentinels = Sentinels(tmp_path, primary.port)
    try:
        wait_for(lambda: sentinels.watch_everything(replica.port), timeout=30, what="the Sentinels to see everything")
        yield primary, replica, sentinels
    finally:
        sentinels.stop()
        replica.stop()
        primary.stop()


def start_worker_and_scheduler(processes: Processes, env: dict[str, str], primary: redis.Redis) -> None:
    processes.start("worker", [PYTHON, "worker.py"], env)
    processes.start("scheduler", [PYTHON, "scheduler.py", "--interval", "1"], env)
    wait_for(lambda: primary.keys("rq:worker:*") and primary.keys("rq:scheduler_instance:*"), timeout=30,
             what="the worker and the scheduler to register")  # fmt: skip


# The client's own timeout is the bound: an API that hangs during the switch fails here.
CLIENT_TIMEOUT_S = 15


class Submitter(threading.Thread):
    """Submits quick jobs back to back and keeps every answer's status and each 202's job id."""

    def __init__(self, api: str):
        super().__init__(daemon=True)
        self.api = api
        self.statuses: list[int] = []
        self.accepted: list[str] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                response = post_job(self.api, QUICK_JOB, timeout=CLIENT_TIMEOUT_S)
            except requests.RequestException as exc:  # a hang or a dropped connection: counted as a failure
                self.errors.append(repr(exc))
                continue
            self.statuses.append(response.status_code)
            if response.status_code == 202:
                self.accepted.append(response.json()["id"])
            elif response.status_code == 503:
                assert response.headers.get("Retry-After"), response.text
            self.stopping.wait(0.05)


def attempts_seen(connection: redis.Redis, job_id: str) -> int:
    """The job's attempts as this Redis holds its record (our fields are in RQ's `meta`, JSON)."""
    meta = connection.hget(f"rq:job:{job_id}", "meta")
    return json.loads(meta).get("attempts", 0) if meta else 0


def job_status(api: str, job_id: str) -> str | None:
    try:
        response = requests.get(f"{api}/v1/jobs/{job_id}", headers=ALICE, timeout=15)
    except requests.RequestException:
        return None
    return response.json()["status"] if response.status_code == 200 else None


def ready(api: str) -> dict | None:
    try:
        response = requests.get(f"{api}/readyz", timeout=15)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def test_killing_the_primary_loses_no_acknowledged_job(redis_ha, processes, service_env, start_api):
    primary, replica, sentinels = redis_ha
    env = {
        **service_env,
        # Under Sentinel the URL gives only the database: a port where nothing listens proves it.
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "REDIS_SENTINELS": sentinels.setting,
        "REDIS_MIN_REPLICAS_ACK": "1",
        "WORKER_CONCURRENCY": "20",
        "WEB_CONCURRENCY": "1",  # one API process: it is the one /readyz and /metrics describe
    }
    api = start_api(**{name: env[name] for name in ("REDIS_URL", "REDIS_SENTINELS", "REDIS_MIN_REPLICAS_ACK",
                                                    "WEB_CONCURRENCY")})  # fmt: skip
    start_worker_and_scheduler(processes, env, redis.Redis(port=primary.port))
    assert wait_for(lambda: ready(api), timeout=30, what="/readyz")["redis"]["sentinel"] is True

    slow = [post_job(api, SLOW_JOB, timeout=CLIENT_TIMEOUT_S) for _ in range(8)]
    assert [response.status_code for response in slow] == [202] * 8
    in_flight = [response.json()["id"] for response in slow]
    wait_for(lambda: all(job_status(api, job_id) == "running" for job_id in in_flight), timeout=30,
             what="the slow jobs to run")  # fmt: skip
    submitter = Submitter(api)
    submitter.start()
    wait_for(lambda: len(submitter.accepted) >= 5, timeout=30, what="submits before the kill")

    primary.crash()  # SIGKILL
    wait_for(lambda: sentinels.primary_port() == replica.port, timeout=60, what="Sentinel to promote the replica")
    body = wait_for(lambda: ready(api), timeout=30, what="/readyz to be 200 again within 30 s")
    assert body["redis"]["failovers_seen"] == 1
    # One replica and it was promoted: submits are 503 until a replica is back. The old
    # primary comes back; Sentinel makes it a replica of the new one.
    accepted_before = len(submitter.accepted)
    primary.start()
    wait_for(lambda: len(submitter.accepted) > accepted_before + 5, timeout=60, what="submits accepted again")
    submitter.stopping.set()
    submitter.join(timeout=30)

    assert submitter.errors == []
    assert set(submitter.statuses) <= {202, 503}, sorted(set(submitter.statuses))
    assert 503 in submitter.statuses  # the switch was seen, not slept through
    every_job = in_flight + submitter.accepted
    try:
        wait_for(lambda: all(job_status(api, job_id) == "succeeded" for job_id in every_job), timeout=120,
                 what="every job that got a 202 to succeed")  # fmt: skip
    finally:  # which ones did not, and how each stands in the API and in Redis (the primary now)
        now_primary = redis.Redis(port=sentinels.primary_port() or replica.port)
        for job_id in every_job:
            if (status := job_status(api, job_id)) != "succeeded":
                print(job_id, "in flight" if job_id in in_flight else "submitted", status,
                      now_primary.hmget(f"rq:job:{job_id}", "status", "origin", "started_at", "ended_at"),
                      "claimed at", now_primary.zscore("llmjobs:claims", job_id))  # fmt: skip

    reported: list[set[str]] = []

    def worker_reports_the_primary() -> bool:
        reported.append({labels["primary"] for labels, _ in _series(scrape(api), "llmjobs_redis_primary")})
        return reported[-1] == {f"127.0.0.1:{sentinels.primary_port()}"}

    # The worker followed it (the API: /readyz above); its report is rewritten at its next tick.
    # Under a loaded machine Sentinel (1 s down-after) may fail over once more, back to the
    # restarted primary: the worker must follow that one too.
    try:
        wait_for(worker_reports_the_primary, timeout=30, what="the worker's report")
    finally:
        print("primaries the worker reported, last:", reported[-1:], "Sentinel's failovers:", sentinels.failovers())
    samples = scrape(api)
    seen = [value for _, value in _series(samples, "llmjobs_redis_failovers_seen")]
    if sentinels.failovers() == 1:
        assert seen == [1]
    else:  # the worker wrote through the first (its jobs ended); a quick second may pass it unseen
        assert len(seen) == 1 and seen[0] >= 1, seen


def _series(samples: Samples, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(labels), value) for (sample, labels), value in samples.items() if sample == name]


def test_a_submit_no_replica_confirms_is_a_503(redis_ha, start_api):
    primary, replica, _sentinels = redis_ha
    api = start_api(REDIS_URL=primary.url, REDIS_MIN_REPLICAS_ACK="1", REDIS_ACK_TIMEOUT_MS="300")
    accepted = post_job(api, QUICK_JOB, timeout=CLIENT_TIMEOUT_S)
    assert accepted.status_code == 202  # the replica confirms it (no worker runs: it stays queued)
    canceled = requests.post(f"{api}/v1/jobs/{accepted.json()['id']}/cancel", headers=ALICE, timeout=15)
    assert canceled.status_code == 200

    replica.stop()
    refused = post_job(api, QUICK_JOB, timeout=CLIENT_TIMEOUT_S)
    batch = requests.post(f"{api}/v1/batches", json={"jobs": [QUICK_JOB]}, headers=ALICE, timeout=15)
    text = {"filename": "note.txt", "media_type": "text/plain", "data": base64.b64encode(b"A short note.").decode()}
    document = requests.post(f"{api}/v1/documents", json={"document": text}, headers=ALICE, timeout=15)
    retry = requests.post(f"{api}/v1/jobs/{accepted.json()['id']}/retry", headers=ALICE, timeout=15)

    for response in (refused, batch, document, retry):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        assert "REDIS_MIN_REPLICAS_ACK" in response.json()["message"]
    # Readiness says why (no worker runs here: it is a 503 for that, with the warning beside).
    warnings = requests.get(f"{api}/readyz", timeout=15).json()["errors"]["warnings"]
    assert any("fewer than REDIS_MIN_REPLICAS_ACK (1)" in warning for warning in warnings), warnings


def test_a_worker_started_before_its_redis_waits_for_it(tmp_path, processes, service_env):
    server = RedisServer(tmp_path)
    worker = processes.start("worker", [PYTHON, "worker.py"], {**service_env, "REDIS_URL": server.url})
    # Importing the SDK alone takes seconds on a busy machine.
    wait_for(lambda: "Redis not reachable" in processes.log_of(worker) or worker.poll() is not None,
             timeout=60, what="the worker to try Redis")  # fmt: skip
    assert worker.poll() is None, processes.log_of(worker)

    server.start()
    try:
        wait_for(lambda: redis.Redis(port=server.port).keys("rq:worker:*"), timeout=30, what="the worker to register")
        assert worker.poll() is None
    finally:
        server.stop()


class PrimaryRelay:
    """A TCP relay in front of the primary, the address everyone (Sentinel, the replica, the
    service) knows it by. Cut, the replication stream stops reaching the replica while both
    ends think the link is up; other clients carry on: a primary lost with writes it had not
    yet sent, as the replica it leaves behind sees it. (A replica pointed at the relay while
    Sentinel knew the primary directly would be "fixed" by Sentinel to bypass it.)"""

    REPLICATION_COMMANDS = (b"\r\nPSYNC\r\n", b"\r\nSYNC\r\n")

    def __init__(self, primary_port: int):
        self.primary_port = primary_port
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client_side, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                primary_side = socket.create_connection(("127.0.0.1", self.primary_port))
            except OSError:  # the primary is gone
                client_side.close()
                continue
            link = {"replication": False}
            threading.Thread(target=self._pump, args=(primary_side, client_side, link, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(client_side, primary_side, link, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, link: dict, from_primary: bool) -> None:
        try:
            while data := source.recv(65536):
                if not from_primary and any(command in data.upper() for command in self.REPLICATION_COMMANDS):
                    link["replication"] = True
                if not (from_primary and link["replication"] and self.cut.is_set()):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def close(self) -> None:
        self.listener.close()


def test_an_end_lost_with_the_primary_runs_again_and_is_announced_once(tmp_path, processes, service_env, start_api):
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    relay = PrimaryRelay(primary.port)
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(relay.port))
    replica.start()
    sentinels = Sentinels(tmp_path, relay.port)
    try:
        wait_for(lambda: sentinels.watch_everything(replica.port), timeout=30, what="the Sentinels to see everything")
        env = {**service_env, "REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_SENTINELS": sentinels.setting,
               "WORKER_CONCURRENCY": "4", "WEB_CONCURRENCY": "1"}  # fmt: skip
        api = start_api(**{name: env[name] for name in ("REDIS_URL", "REDIS_SENTINELS", "WEB_CONCURRENCY")})
        start_worker_and_scheduler(processes, env, redis.Redis(port=primary.port))
        job_id = post_job(api, SLOW_JOB, timeout=CLIENT_TIMEOUT_S).json()["id"]
        on_replica = redis.Redis(port=replica.port)
        # Started and its attempt counted (a moment later, once the provider gate admits the
        # call): cut before the count reached the replica, the run again would be attempt 1.
        wait_for(lambda: on_replica.hget(f"rq:job:{job_id}", "status") == b"started"
                 and attempts_seen(on_replica, job_id) == 1, timeout=30,
                 what="the replica to see the job started and its attempt counted")  # fmt: skip

        relay.cut.set()  # from here the replica hears nothing of the primary's writes
        wait_for(lambda: job_status(api, job_id) == "succeeded", timeout=30, what="the job to end on the primary")
        primary.crash()
        wait_for(lambda: sentinels.primary_port() == replica.port, timeout=60, what="Sentinel to promote the replica")
        assert on_replica.hget(f"rq:job:{job_id}", "status") != b"finished"  # its end was lost with the primary

        # Its lease lapses on the new primary; the scheduler re-queues it; it runs and ends again.
        wait_for(lambda: job_status(api, job_id) == "succeeded", timeout=90, what="the job to end again")
        job = requests.get(f"{api}/v1/jobs/{job_id}", headers=ALICE, timeout=15).json()
        assert job["attempts"] == 2
        wait_for(lambda: on_replica.zscore("llmjobs:ends:unpublished", job_id) is None, timeout=30,
                 what="its end to be published")  # fmt: skip
        events = on_replica.xrange(f"llmjobs:events:{job_id}")
        ends = [fields[b"type"] for _, fields in events if fields[b"type"] != b"progress"]
        assert ends == [b"succeeded"]  # announced once on the primary that stayed
    finally:
        processes.stop_all()
        sentinels.stop()
        replica.stop()
        primary.stop()
        relay.close()


def test_a_redis_that_stops_answering_is_a_503_within_a_client_timeout(start_api):
    """A primary's machine lost without a word (no RST): connections hang until a timeout.
    The API's are bounded (connect, read, one retry): a 503 well before a client gives up."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    try:
        api = start_api(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        response = post_job(api, QUICK_JOB, timeout=CLIENT_TIMEOUT_S)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
    finally:
        silent.close()

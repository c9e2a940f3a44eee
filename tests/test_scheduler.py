"""The scheduler's periodic clean-up: registered once under a fixed id, run on a worker,
never doubled by a second scheduler; and each clean-up function, against real Redis."""

from __future__ import annotations

import json
import pickle
import time
from datetime import UTC, date, datetime

from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.utils import utcformat
from rq_scheduler import Scheduler

from service.jobs.operations import cleanup
from service.jobs.operations.scheduler import CLEANUP_JOB_ID, CLEANUP_TASK, MaintainingScheduler, register_periodic_jobs
from service.jobs.storage import index
from service.jobs.storage.admission import Gate
from service.jobs.storage.keys import MAINTENANCE_RECENT_KEY as RECENT_KEY
from service.jobs.storage.keys import MAINTENANCE_RUNS_KEY as RUNS_KEY
from service.jobs.storage.keys import announced_key, completed_key, events_key, lease_key, usage_key
from service.jobs.storage.queues import SERIALIZER
from service.jobs.storage.submit import NewJob, submit_job
from tests.support.waiting import wait_for

DAY_S = 24 * 3600


def make_job(connection, client: str = "alice", queue: str = "high") -> Job:
    """A stored, queued LLM job (nobody serves `high` in these tests, so it stays queued)."""
    request = {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}]}
    new = NewJob(priority=queue, request=request, metadata={}, timeout_s=60)
    queues = {queue: Queue(queue, connection=connection, serializer=SERIALIZER)}
    return submit_job(connection, queues, new, gate=Gate.unlimited(client), max_attempts=1, result_ttl_s=3600).job


def members(connection, client: str) -> list[str]:
    return sorted(m.decode() for m in connection.zrange(index.index_key(client), 0, -1))


def scheduled_ids(connection) -> list[str]:
    return [j.id for j in MaintainingScheduler(connection=connection).get_jobs()]


def runs(connection) -> int:
    return int(connection.hget(RUNS_KEY, "runs") or 0)


# --- the clean-up functions, in-process ---


def test_prune_client_indexes_removes_only_members_of_gone_jobs(redis_conn):
    alice = [make_job(redis_conn) for _ in range(3)]
    bob = make_job(redis_conn, client="bob")
    redis_conn.delete(alice[0].key, alice[2].key)
    redis_conn.set("llmjobs:client:odd:jobs", "not a sorted set")  # matches the pattern; left alone

    assert cleanup.prune_client_indexes(redis_conn) == 2
    assert [index.job_id_of(m) for m in members(redis_conn, "alice")] == [alice[1].id]
    assert [index.job_id_of(m) for m in members(redis_conn, "bob")] == [bob.id]
    assert cleanup.prune_client_indexes(redis_conn) == 0
    assert redis_conn.get("llmjobs:client:odd:jobs") == b"not a sorted set"


def test_prune_orphan_job_keys_deletes_leftovers_and_fills_in_lost_ttls(redis_conn):
    live, gone = make_job(redis_conn), make_job(redis_conn)
    for job in (live, gone):
        redis_conn.xadd(events_key(job.id), {"type": "progress", "data": "{}"})  # no TTL: as if EXPIRE was lost
        redis_conn.set(completed_key(job.id), 1, ex=3600)
        redis_conn.set(announced_key(job.id), "succeeded")
        redis_conn.set(lease_key(job.id), 1, ex=15)
        redis_conn.set(f"llmjobs:cancel:{job.id}", 1)
    redis_conn.delete(gone.key)
    redis_conn.set("llmjobs:idempotency:alice:lost", "{}")  # TTL lost
    redis_conn.set("llmjobs:idempotency:alice:fine", "{}", ex=50)
    today, ancient = datetime.now(UTC).date(), date(2000, 1, 1)
    redis_conn.hset(usage_key(today, "alice"), "m:jobs", 1)  # TTL lost
    redis_conn.hset(usage_key(ancient, "alice"), "m:jobs", 1)  # TTL lost, and long past retention
    redis_conn.hset(usage_key(today, "bob"), "m:jobs", 1)
    redis_conn.expire(usage_key(today, "bob"), 77)

    counts = cleanup.prune_orphan_job_keys(redis_conn, idempotency_ttl_s=1000, usage_retention_days=30)

    assert counts == {"orphans": 5, "orphans_without_ttl": 3, "idempotency_ttls": 1, "usage_ttls": 2}
    assert not any(redis_conn.exists(k) for k in redis_conn.keys(f"*{gone.id}*"))
    assert all(
        redis_conn.exists(key)
        for key in (events_key(live.id), completed_key(live.id), announced_key(live.id), lease_key(live.id))
    )
    assert redis_conn.ttl(events_key(live.id)) == -1  # a live job's keys are not ours to touch
    assert 990 <= redis_conn.ttl("llmjobs:idempotency:alice:lost") <= 1000
    assert redis_conn.ttl("llmjobs:idempotency:alice:fine") <= 50  # an existing TTL is never changed
    assert 30 * DAY_S <= redis_conn.ttl(usage_key(today, "alice")) <= 31 * DAY_S
    assert not redis_conn.exists(usage_key(ancient, "alice"))
    assert redis_conn.ttl(usage_key(today, "bob")) <= 77
    assert cleanup.prune_orphan_job_keys(redis_conn, idempotency_ttl_s=1000, usage_retention_days=30) == dict.fromkeys(
        counts, 0
    )


def test_clean_rq_registries_drops_expired_entries_but_leaves_llm_started_jobs_to_recovery(redis_conn):
    past = time.time() - 10
    queue = Queue("default", connection=redis_conn, serializer=SERIALIZER)
    redis_conn.zadd(FinishedJobRegistry(queue=queue).key, {"old-done": past, "new-done": time.time() + 600})
    redis_conn.zadd(FailedJobRegistry(queue=queue).key, {"old-failed": past})
    started = StartedJobRegistry(queue=queue).key
    redis_conn.zadd(started, {"abandoned:exec": past})  # the lease-based recovery's to handle
    webhooks_started = StartedJobRegistry(queue=Queue("webhooks", connection=redis_conn)).key
    redis_conn.zadd(webhooks_started, {"lost-delivery:exec": past})  # its job hash is gone

    assert cleanup.clean_rq_registries(redis_conn) == 3
    assert redis_conn.zrange(FinishedJobRegistry(queue=queue).key, 0, -1) == [b"new-done"]
    assert redis_conn.zcard(FailedJobRegistry(queue=queue).key) == 0
    assert redis_conn.zrange(started, 0, -1) == [b"abandoned:exec"]
    assert redis_conn.zcard(webhooks_started) == 0


def test_registering_twice_keeps_one_periodic_job_and_a_new_interval_replaces_it(redis_conn):
    first = register_periodic_jobs(MaintainingScheduler(connection=redis_conn), cleanup_interval_s=300)
    score = redis_conn.zscore(Scheduler.scheduled_jobs_key, CLEANUP_JOB_ID)
    register_periodic_jobs(MaintainingScheduler(connection=redis_conn), cleanup_interval_s=300)
    assert scheduled_ids(redis_conn) == [CLEANUP_JOB_ID]
    assert redis_conn.zscore(Scheduler.scheduled_jobs_key, CLEANUP_JOB_ID) == score  # kept, not re-made
    assert first.func_name == CLEANUP_TASK and first.origin == "low" and first.meta["interval"] == 300

    register_periodic_jobs(MaintainingScheduler(connection=redis_conn), cleanup_interval_s=60)
    (job,) = MaintainingScheduler(connection=redis_conn).get_jobs()
    assert job.id == CLEANUP_JOB_ID and job.meta["interval"] == 60


def test_the_scheduler_lock_admits_one_scheduler_at_a_time(redis_conn):
    one, two = MaintainingScheduler(connection=redis_conn), MaintainingScheduler(connection=redis_conn)
    assert one.acquire_lock()
    assert not two.acquire_lock()
    one.remove_lock()
    assert two.acquire_lock()


# --- real processes ---


def test_the_cleanup_job_runs_on_a_worker_and_logs_what_it_removed(
    redis_conn, start_worker, start_scheduler, processes
):
    jobs = [make_job(redis_conn) for _ in range(3)]
    gone = jobs[:2]
    for job in gone:
        redis_conn.xadd(events_key(job.id), {"type": "progress", "data": "{}"})
        redis_conn.set(announced_key(job.id), "succeeded")
        redis_conn.delete(job.key)
    redis_conn.set("llmjobs:idempotency:alice:lost", "{}")

    worker = start_worker("low", CLEANUP_INTERVAL_S="1")
    start_scheduler(CLEANUP_INTERVAL_S="1")

    wait_for(lambda: runs(redis_conn) >= 1, timeout=15, what="a clean-up run")
    assert [index.job_id_of(m) for m in members(redis_conn, "alice")] == [jobs[2].id]
    assert not any(redis_conn.exists(events_key(j.id), announced_key(j.id)) for j in gone)
    assert 0 < redis_conn.ttl("llmjobs:idempotency:alice:lost") <= DAY_S
    wait_for(lambda: "clean-up done" in processes.log_of(worker), what="the run's log lines")
    log = processes.log_of(worker)
    assert "pruned 2 index entries of expired jobs" in log
    assert "removed 4 keys of expired jobs (4 of them had no TTL)" in log
    assert "gave 1 idempotency keys without a TTL" in log
    assert scheduled_ids(redis_conn) == [CLEANUP_JOB_ID]


def test_two_schedulers_register_one_job_and_never_double_a_run(redis_conn, start_worker, start_scheduler):
    start_worker("low", CLEANUP_INTERVAL_S="1")
    start_scheduler(CLEANUP_INTERVAL_S="1")
    start_scheduler(CLEANUP_INTERVAL_S="1")
    wait_for(lambda: len(redis_conn.keys("rq:scheduler_instance:*")) == 2, what="both schedulers")
    assert scheduled_ids(redis_conn) == [CLEANUP_JOB_ID]

    wait_for(lambda: runs(redis_conn) >= 1, timeout=15, what="a first clean-up run")
    before, started = runs(redis_conn), time.monotonic()
    time.sleep(3)
    window, ran = time.monotonic() - started, runs(redis_conn) - before
    # rq-scheduler re-schedules the job at (whole seconds of) enqueue time + interval, so
    # one enqueue per second at most, however many schedulers poll; doubled, it would be ~2x.
    assert 1 <= ran <= window + 2
    enqueued = [json.loads(r)["enqueued_at"] for r in redis_conn.lrange(RECENT_KEY, 0, -1)]
    assert len({int(t) for t in enqueued}) == len(enqueued), enqueued  # never two in the same second
    assert scheduled_ids(redis_conn) == [CLEANUP_JOB_ID]

    # It is the lock that serialises them: while another holder has it, neither enqueues.
    # Taken only while free: a scheduler holding it would delete it when its poll ends.
    lock = MaintainingScheduler.scheduler_lock_key
    wait_for(lambda: redis_conn.set(lock, "someone else", ex=30, nx=True), interval=0.01, what="a free lock")
    low = Queue("low", connection=redis_conn)
    wait_for(lambda: low.count == 0 and low.started_job_registry.get_job_count(cleanup=False) == 0,
             what="runs enqueued before to finish")  # fmt: skip
    held = runs(redis_conn)
    time.sleep(1.5)  # a poll or more of each scheduler
    assert runs(redis_conn) == held
    redis_conn.delete(lock)
    wait_for(lambda: runs(redis_conn) > held, timeout=5, what="runs to resume")


def test_a_restarted_scheduler_does_not_register_the_job_again(redis_conn, start_scheduler):
    for _ in range(2):
        process = start_scheduler(CLEANUP_INTERVAL_S="300")
        # rq-scheduler takes the job out of its schedule for a moment each time it runs it
        # (first run: now), then puts it back for the next interval.
        wait_for(lambda: scheduled_ids(redis_conn) == [CLEANUP_JOB_ID], what="one registration")
        process.terminate()
        process.wait(timeout=10)
        redis_conn.delete(*redis_conn.keys("rq:scheduler_instance:*") or ["none"])
    assert scheduled_ids(redis_conn) == [CLEANUP_JOB_ID]
    assert redis_conn.zcard(MaintainingScheduler.scheduled_jobs_key) == 1


def test_unreadable_records_in_a_started_registry_never_stop_the_scheduler(redis_conn, start_scheduler, processes):
    """A started registry holding records RQ cannot read: the scheduler logs and skips them
    and still recovers a genuinely abandoned job after them."""
    long_ago = datetime.now(UTC).timestamp() - 120
    started = StartedJobRegistry(queue=Queue("high", connection=redis_conn, serializer=SERIALIZER)).key
    garbage, pickled, no_data, pickled_meta, abandoned = (make_job(redis_conn) for _ in range(5))
    redis_conn.hset(garbage.key, "data", b"\x80\x04not json at all")  # job.func_name raises DeserializationError
    redis_conn.hset(pickled.key, "data", pickle.dumps(("os.system", None, ("true",), {})))
    redis_conn.hdel(no_data.key, "data")  # RQ's restore raises NoSuchJobError
    redis_conn.hset(pickled_meta.key, "meta", pickle.dumps({"client": "alice"}))  # as `rq requeue` leaves it
    for job in (garbage, pickled, no_data, pickled_meta, abandoned):
        redis_conn.lrem("rq:queue:high", 0, job.id)
        redis_conn.hset(
            job.key, mapping={"status": "started", "started_at": utcformat(datetime.fromtimestamp(long_ago, UTC))}
        )
        redis_conn.zadd(started, {f"{job.id}:exec-{job.id[:6]}": long_ago + 3600})  # entry not expired; no lease

    scheduler = start_scheduler()

    wait_for(lambda: Job.fetch(abandoned.id, connection=redis_conn, serializer=SERIALIZER).get_status() == "queued",
             timeout=20, what="the abandoned job to be re-queued")  # fmt: skip
    assert redis_conn.lrange("rq:queue:high", 0, -1) == [abandoned.id.encode()]
    time.sleep(2)  # two more polls over the same bad records
    assert scheduler.poll() is None, processes.log_of(scheduler)
    assert f"job {garbage.id} in high's started registry cannot be read" in processes.log_of(scheduler)

"""Which queues a worker's pool takes from, and how many jobs, with its free slots."""

from __future__ import annotations

from redis import Redis
from rq import Queue

from service.jobs.storage.queues import PRIORITIES, WEBHOOK_QUEUE
from service.worker.async_worker import Pool

NO_SERVER = Redis(port=1)  # the queues only name their keys: nothing is sent


def queues(*names: str) -> list[Queue]:
    return [Queue(name, connection=NO_SERVER) for name in names]


def keys(*names: str) -> list[str]:
    return [queue.key for queue in queues(*names)]


def test_beyond_the_reserve_every_queue_is_asked_for_all_but_the_reserved_slots():
    pool = Pool("llm", queues(*PRIORITIES), capacity=10, reserve=2, gated=True)
    assert pool.wanted(10) == (keys(*PRIORITIES), 8)
    assert pool.wanted(3) == (keys(*PRIORITIES), 1)


def test_the_reserved_slots_are_never_given_to_the_lowest_priority():
    pool = Pool("llm", queues(*PRIORITIES), capacity=10, reserve=2, gated=True)
    assert pool.wanted(2) == (keys(*PRIORITIES[:-1]), 2)
    assert pool.wanted(1) == (keys(*PRIORITIES[:-1]), 1)


def test_a_pool_of_the_lowest_priority_alone_has_nothing_to_reserve_for():
    pool = Pool("llm", queues(PRIORITIES[-1]), capacity=10, reserve=2, gated=True)
    assert pool.wanted(2) == (keys(PRIORITIES[-1]), 0)


def test_a_pool_without_a_reserve_takes_a_job_per_free_slot():
    pool = Pool("webhooks", queues(WEBHOOK_QUEUE), capacity=4)
    assert pool.wanted(1) == (keys(WEBHOOK_QUEUE), 1)
    assert not pool.gated

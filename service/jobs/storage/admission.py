"""Admitting new work in one round trip: a script checks the client's submit limit and the
target queues' depth and, only when both allow it, writes what the caller prepared (RQ's own
enqueue commands, the client index, the Idempotency-Key) and counts the submit.

So a `202` still means the job is stored and queued atomically, a refused submit (`429`,
`503`) writes nothing and is not counted against the client, and a submit costs the API one
Redis call. The caller's writes are recorded on a redis-py pipeline (RQ writes through one
already) and replayed inside the script. Like RQ itself, this needs one Redis, not a cluster:
the replayed commands name keys the script does not declare.

The submit limit is a moving window, as flask-limiter's: at most `amount` submits in any
`window_s` seconds, one sorted set per client and limit, scored by the submit's time.

A client with a spend budget reserves each new job's worst case in the same script, after
the limit and the queues allowed it (see `service.jobs.observability.budgets`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import limits
from redis import Redis
from redis.client import Pipeline
from rq import Queue

from service.config import ClientBudget
from service.jobs.observability.budgets import now_window, refusal_message, today
from service.jobs.storage import replies, scripts
from service.jobs.storage.idempotency import IdempotencyClaim
from service.jobs.storage.keys import budget_reserved_key, budget_spent_key, submit_window_key

Created = TypeVar("Created")


@dataclass(frozen=True)
class SubmitLimit:
    amount: int
    window_s: int


@functools.lru_cache(maxsize=64)
def parse_submit_limits(text: str) -> tuple[SubmitLimit, ...]:
    """`600/minute`, or several (`10/second;600/minute`), in flask-limiter's syntax."""
    return tuple(SubmitLimit(item.amount, item.get_expiry()) for item in limits.parse_many(text))


@dataclass(frozen=True)
class Allowance:
    """The tightest of the client's limits after this submit: what `X-RateLimit-*` report."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds: the oldest submit counted leaves the window


@dataclass(frozen=True)
class Gate:
    """What a submit must pass: its client's limits, the depth of each queue it fills, and
    its spend budget."""

    client: str
    limits: tuple[SubmitLimit, ...]
    queue_caps: tuple[tuple[str, int], ...]  # (queue name, most jobs waiting; 0: no cap)
    budget: ClientBudget | None = None  # CLIENT_BUDGETS' entry

    @classmethod
    def unlimited(cls, client: str) -> Gate:
        """For work the service submits itself (and tests): no limit, no depth cap."""
        return cls(client, (), ())


class OverLimit(Exception):
    def __init__(self, limit: int, retry_after_s: float, reset_at: float) -> None:
        super().__init__(f"over the submit limit of {limit}")
        self.allowance = Allowance(limit, 0, reset_at)
        self.retry_after_s = retry_after_s


class OverBudget(Exception):
    """The jobs' worst case does not fit in what the client's budget has left this window."""

    def __init__(self, budget: ClientBudget, spent: int, reserved: int, wanted: int, resets_at: datetime) -> None:
        super().__init__(refusal_message(budget.limit_micro_usd, budget.window, spent, reserved, wanted))
        self.budget, self.resets_at = budget, resets_at
        self.spent, self.reserved, self.wanted = spent, reserved, wanted


class QueueFull(Exception):
    def __init__(self, queue: str, cap: int) -> None:
        super().__init__(f"the {queue} queue is full ({cap} jobs waiting); retry later")
        self.queue = queue


@dataclass(frozen=True)
class Admitted(Generic[Created]):
    created: Created
    new: bool  # False: an earlier request with the same Idempotency-Key created it
    allowance: Allowance | None  # None: the client has no limit


def admit(
    connection: Redis,
    gate: Gate,
    *,
    hit_id: str,
    write: Callable[[Pipeline], Created],
    idempotency: IdempotencyClaim | None = None,
    earlier: Callable[[str], Created | None] | None = None,
    reservations: Sequence[tuple[str, int]] = (),
) -> Admitted[Created]:
    """Admit one submit (`hit_id`: unique to it) and run `write`'s commands with it, atomically;
    with a budget in the gate, `reservations` (job id, micro-USD) are reserved with it.

    With an Idempotency-Key whose record names something `earlier(id)` still finds, that is
    returned instead and nothing is written or counted. Raises OverLimit, QueueFull,
    OverBudget, or IdempotencyConflict (the key was used with another body)."""
    seen = ""
    while True:
        with connection.pipeline(transaction=False) as pipe:
            created = write(pipe)
            if idempotency is not None:
                pipe.set(idempotency.redis_key, idempotency.record(hit_id), ex=idempotency.ttl_s)
            commands = [args for args, _options in pipe.command_stack]
        keys, args = _call(gate, hit_id, idempotency, seen, commands, reservations)
        answer = replies.as_list(scripts.registered(connection, scripts.ADMIT_SUBMIT)(keys=keys, args=args))
        verdict = answer[0].decode()
        if verdict == "replay":
            assert idempotency is not None and earlier is not None
            seen = answer[1].decode()
            found = earlier(idempotency.replayed_id(answer[1]))
            if found is not None:
                return Admitted(found, False, None)
            continue  # what it named has expired meanwhile: this request creates it anew
        _raise_refusal(gate, answer)
        allowance = Allowance(int(answer[1]), int(answer[2]), int(answer[3]) / 1000) if len(answer) > 1 else None
        return Admitted(created, True, allowance)


def check_admissible(connection: Redis, gate: Gate) -> None:
    """Raise OverLimit or QueueFull when a submit through `gate` would be refused now,
    writing nothing: a route whose body is costly to read (an upload) asks this first.
    `admit` still decides, atomically, once the body is read."""
    keys, args = _limits_and_caps(gate)
    _raise_refusal(gate, replies.as_list(scripts.registered(connection, scripts.CHECK_SUBMIT)(keys=keys, args=args)))


def _raise_refusal(gate: Gate, answer: list) -> None:
    verdict = answer[0].decode()
    if verdict == "limited":
        limit, wait_ms, reset_ms = (int(value) for value in answer[1:])
        raise OverLimit(limit, wait_ms / 1000, reset_ms / 1000)
    if verdict == "budget":
        assert gate.budget is not None
        _limit, spent, reserved, wanted = (int(value) for value in answer[1:])
        raise OverBudget(gate.budget, spent, reserved, wanted, now_window(gate.budget.window).resets_at)
    if verdict == "full":
        queue, cap = gate.queue_caps[int(answer[1]) - 1][0], int(answer[2])
        raise QueueFull(queue, cap)


def _limits_and_caps(gate: Gate) -> tuple[list[str], list]:
    """The keys and arguments of the client's limits and the queues' caps, as both scripts
    take them: count + (amount, window ms) per limit, count + max depth per queue."""
    keys = [submit_window_key(gate.client, limit.amount, limit.window_s) for limit in gate.limits]
    args: list = [len(gate.limits)]
    for limit in gate.limits:
        args += (limit.amount, limit.window_s * 1000)
    args.append(len(gate.queue_caps))
    for queue, cap in gate.queue_caps:
        keys.append(Queue.redis_queue_namespace_prefix + queue)
        args.append(cap)
    return keys, args


def _call(
    gate: Gate,
    hit_id: str,
    idempotency: IdempotencyClaim | None,
    seen: str,
    commands: Sequence[tuple],
    reservations: Sequence[tuple[str, int]],
) -> tuple[list[str], list]:
    limit_keys, limit_args = _limits_and_caps(gate)
    keys = [idempotency.redis_key] if idempotency is not None else []
    keys += limit_keys
    args: list = [1 if idempotency is not None else 0, seen, hit_id, *limit_args]
    if gate.budget is None:
        args.append(0)
    else:
        day, month = today()
        keys += [budget_spent_key(gate.client, month), budget_reserved_key(gate.client)]
        args += [1, gate.budget.limit_micro_usd, gate.budget.window, day, len(reservations)]
        for job_id, amount in reservations:
            args += (job_id, amount)
    args.append(len(commands))
    for command in commands:
        args.append(len(command))
        args.extend(command)
    return keys, args

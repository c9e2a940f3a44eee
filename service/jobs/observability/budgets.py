"""Spend budgets per client: what a budget's window has spent, what its running jobs hold
reserved, and the writes that keep `spent + reserved <= limit` true at every moment.

- A submit reserves its jobs' worst case (`worst_case.py`) in the admission script, which
  refuses it when `spent + reserved + worst case` would pass the limit.
- Every call the provider bills adds its cost to `spent` as it is counted in the usage, in
  the same write (`spend_increments`): spent is what the calls cost, kept in micro-USD for
  the month and for each UTC day, for every client (a budget set mid-month knows the month).
- A run's end releases its reservation (`release`, in the end's transaction). Between its
  first billed call and its end a job is counted twice (spent, and still reserved), which
  only makes admission stricter, never looser.
- A retry, or a run recovered from a dead worker, reserves its worst case again
  (`reserve_again`); the lost call of a dead worker is unknown and counted at its worst case.

So the sum over a window of what calls cost never passes the limit: at each admission the
calls yet to be billed are bounded by what is reserved. Windows are UTC calendar days and
months, the API's clock deciding which one a submit falls in.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.job import Job

from service.jobs.observability.counters import HashIncrements
from service.jobs.storage import replies, scripts
from service.jobs.storage.keys import budget_reserved_key, budget_spent_key
from service.jobs.storage.record import JobError, JobRecord, job_error

MICRO = 1_000_000
SPENT_TTL_S = 62 * 24 * 3600  # a month's spend outlives its month: a report reads the current one only


@dataclass(frozen=True)
class Window:
    """The window a moment falls in: today's spent field, the month's key, its end."""

    day: str  # YYYY-MM-DD
    month: str  # YYYY-MM
    resets_at: datetime

    @classmethod
    def at(cls, moment: datetime, window: str) -> Window:
        today = moment.astimezone(UTC).date()
        if window == "day":
            end = today + timedelta(days=1)
        else:
            end = date(today.year, today.month, monthrange(today.year, today.month)[1]) + timedelta(days=1)
        return cls(today.isoformat(), today.strftime("%Y-%m"), datetime(end.year, end.month, end.day, tzinfo=UTC))


def now_window(window: str) -> Window:
    return Window.at(datetime.now(UTC), window)


def today() -> tuple[str, str]:
    """(YYYY-MM-DD, YYYY-MM) now, in UTC: the spent fields a submit or a call touches (cheaper
    than a whole Window, on every submit)."""
    day = datetime.now(UTC).date().isoformat()
    return day, day[:7]


def spend_increments(client: str, cost_usd: float | None) -> list[HashIncrements]:
    """What a billed call adds to its client's spend (none for a model with no price)."""
    if not cost_usd:
        return []
    day, month = today()
    amount = round(cost_usd * MICRO)
    return [HashIncrements(budget_spent_key(client, month), SPENT_TTL_S, {"month": amount, day: amount})]


def reserve_again(job: Job, *, charge_lost_call: bool = False) -> bool:
    """Reserve a budgeted job's worst case again, before it runs again; with
    `charge_lost_call` its last call (lost with its worker) is counted as spent at its worst
    case first. False: the budget has no room left; the job is then to fail."""
    record = JobRecord(job)
    amount = record.reservation_micro_usd
    if not amount:
        return True
    day, month = today()
    reserve = scripts.registered(job.connection, scripts.RESERVE_AGAIN)
    keys = [budget_reserved_key(record.client), budget_spent_key(record.client, month)]
    charge = amount if charge_lost_call else 0
    return bool(reserve(keys=keys, args=[job.id, amount, charge, day, SPENT_TTL_S]))


def no_room_error(job: Job, what: str) -> JobError:
    """The error of a job whose next run its client's budget has no room for."""
    amount = JobRecord(job).reservation_micro_usd
    message = f"its client's spend budget (CLIENT_BUDGETS) has no room left for {what} (worst case {_usd(amount)})"
    return job_error("budget_exceeded", message)


def release(pipe: Pipeline, job: Job) -> None:
    """Queue the release of a job's reservation on `pipe` (its end's transaction); a job
    without one (no budget, or released already) changes nothing."""
    record = JobRecord(job)
    if record.reservation_micro_usd:
        scripts.add_to_pipeline(pipe, scripts.RELEASE_RESERVATIONS, [budget_reserved_key(record.client)], [job.id, ""])


def release_jobs(connection: Redis, client: str, amounts: dict[str, int | None]) -> int:
    """Release what these jobs of `client` hold (job id -> micro-USD; None: all it holds);
    returns the micro-USD released."""
    release_script = scripts.registered(connection, scripts.RELEASE_RESERVATIONS)
    args = [part for job_id, amount in amounts.items() for part in (job_id, "" if amount is None else amount)]
    return replies.as_int(release_script(keys=[budget_reserved_key(client)], args=args))


def refusal_message(limit: int, window: str, spent: int, reserved: int, wanted: int) -> str:
    return (
        f"over your spend budget (CLIENT_BUDGETS): {_usd(limit)} per {window}, of which {_usd(spent)} is spent "
        f"and {_usd(reserved)} reserved by running jobs; this needs {_usd(wanted)} (its worst case)"
    )


def budget_report(connection: Redis, client: str, limit_micro_usd: int, window: str) -> dict[str, Any]:
    """A client's budget as `GET /v1/usage` shows it."""
    current = now_window(window)
    with connection.pipeline(transaction=False) as pipe:
        pipe.hget(budget_spent_key(client, current.month), "month" if window == "month" else current.day)
        pipe.hget(budget_reserved_key(client), "total")
        spent_raw, reserved_raw = pipe.execute()
    spent, reserved = int(spent_raw or 0), int(reserved_raw or 0)
    return {
        "limit": limit_micro_usd / MICRO,
        "window": window,
        "resets_at": current.resets_at.isoformat().replace("+00:00", "Z"),
        "spent": spent / MICRO,
        "reserved": reserved / MICRO,
        "remaining": (limit_micro_usd - spent - reserved) / MICRO,
    }


def _usd(micro: int) -> str:
    return f"{micro / MICRO:.2f} USD" if micro % 10_000 == 0 else f"{micro / MICRO:.6f} USD"

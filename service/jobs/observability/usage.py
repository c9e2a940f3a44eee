"""Usage counters: tokens, cost and jobs per (UTC day, client, model), for `GET /v1/usage`.

A hash per day and client, `llmjobs:usage:<YYYY-MM-DD>:<client>`, with fields
`<model>:<counter>`. The counters are added by the completion step itself (the guarded
save in `service.jobs.running.progress`), atomically with it, so each job is counted once however
often it ran. Cost is kept in integer micro-dollars so that HINCRBY stays exact; a job of
a model with no known price adds no cost and counts in `unpriced_jobs`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis import Redis

from service.jobs.observability.counters import HashIncrements
from service.jobs.storage.keys import usage_key
from service.jobs.storage.record import Usage

MAX_REPORT_DAYS = 400  # one hash read per day: bounds what one report costs
GROUP_BYS = ("day", "model", "client")
# The prompt cache's tokens are counted apart from `input_tokens`, as the provider reports them.
TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
COUNTERS = ("jobs", *TOKENS, "cost_micro_usd", "unpriced_jobs")  # stored
FIGURES = ("jobs", *TOKENS, "cost_usd", "unpriced_jobs")  # shown


def token_counts(usage: Mapping[str, Any]) -> dict[str, int]:
    """A usage's token counts (0 for those the provider did not report)."""
    return {name: usage.get(name) or 0 for name in TOKENS}


def job_usage(
    client: str,
    model: str,
    usage: Usage,
    cost_usd: float | None,
    retention_days: int,
    *,
    completed: bool = True,
) -> HashIncrements:
    """The increments for a job completing now (its UTC day); with `completed` False, for
    an attempt that ended without a result: its tokens and cost, but no job."""
    amounts = {
        f"{model}:jobs": int(completed),
        # The cache's counters only where there are some: most jobs send no cache_control.
        **{f"{model}:{name}": n for name, n in token_counts(usage).items() if n or name in TOKENS[:2]},
        f"{model}:cost_micro_usd": 0 if cost_usd is None else round(cost_usd * 1_000_000),
    }
    if cost_usd is None and completed:
        amounts[f"{model}:unpriced_jobs"] = 1
    return HashIncrements(usage_key(datetime.now(UTC).date(), client), retention_days * 24 * 3600, amounts)


def usage_report(connection: Redis, client: str, date_from: date, date_to: date, group_by: str) -> list[dict[str, Any]]:
    """The client's usage from `date_from` to `date_to` (both included), one row per
    day, model or client (only `client` itself) that has any, sorted by that key."""
    days = [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]
    with connection.pipeline(transaction=False) as pipe:
        for day in days:
            pipe.hgetall(usage_key(day, client))
        hashes = pipe.execute()
    groups: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for day, counters in zip(days, hashes, strict=True):
        for field, value in counters.items():
            model, _, counter = field.decode().rpartition(":")  # model names may hold ':'
            if counter not in COUNTERS:
                continue
            group = {"day": day.isoformat(), "model": model, "client": client}[group_by]
            groups[group][counter] += int(value)
    return [{group_by: group, **_figures(groups[group])} for group in sorted(groups)]


def _figures(counters: dict[str, int]) -> dict[str, Any]:
    """Counters as the API shows them: cost in USD instead of micro-dollars."""
    figures: dict[str, Any] = {name: value for name, value in counters.items() if name != "cost_micro_usd"}
    figures["cost_usd"] = round(counters["cost_micro_usd"] / 1_000_000, 6)
    return figures


def usage_total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of report rows."""
    total = {name: sum(row[name] for row in rows) for name in FIGURES}
    total["cost_usd"] = round(total["cost_usd"], 6)  # each row is whole micro-dollars
    return total

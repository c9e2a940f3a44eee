"""The provider's limits, shared by every worker process that calls it with one API key.

- A `429` (not a spend limit) closes the gate until its `retry-after` (plus jitter) has
  passed; a `529`/`overloaded_error` closes it for an exponential back-off that all
  processes share. While closed, no process starts a call: jobs stay in their queues, in
  priority order.
- A gate that reopens after closing lets one call through first (a probe); only when a
  call succeeds do all slots open again. Without it, every waiting job would call at the
  moment of reopening and meet the next 429 together.
- A process starts the same way (a slow start): one call at a time until the provider has
  answered it once, or for SLOW_START_S, so a worker started into a 429 storm sends one
  call, not one per slot.
- The `anthropic-ratelimit-*-limit`/`-remaining`/`-reset` headers of each answer are read;
  when requests or tokens remaining fall under a margin, the gate closes until the budget
  has refilled past the margin (`RateLimitHeaders.refill_wait_s`).
- `LLM_MAX_IN_FLIGHT` caps calls in flight across all processes: a sorted set of permits
  scored by expiry, which each process renews every tick, so the permits of a process
  that died lapse by themselves.

Everything a decision needs is read and written by one script per admission, so a
process asks once per dequeue round, not once per call.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis

from service.jobs.storage import replies, scripts
from service.jobs.storage.keys import provider_key

PERMIT_TTL_S = 30  # a permit of a process that stopped renewing lapses after this long
PROBE_TTL_S = 15  # a probe that neither passed nor failed by then (say, canceled) lets another go
# A fresh process's first call holds the others this long at most: a 429 comes back within
# a round trip, while a success's headers may wait for the first token, seconds on a busy
# provider.
SLOW_START_S = 0.5
OVERLOAD_BASE_S = 1.0
OVERLOAD_MAX_S = 60.0
JITTER = 0.2  # a reopening is spread over +20 %, so processes do not all wake at once
# A process the shared gate refuses asks again after at least this long (each ask is a
# round trip). A low-budget hold shorter than that is kept by the process that read it
# alone, and waited out exactly: telling the others would cost a round trip per answer,
# and each of them reads the same headers on its own answers.
MIN_WAIT_S = 0.05


@dataclass(frozen=True)
class Admission:
    granted: int  # calls this process may start now
    wait_s: float  # with none granted: how long before asking again makes sense


@dataclass(frozen=True)
class RateLimitHeaders:
    """What the provider says is left of the key's budget, and when each part is whole again."""

    remaining: dict[str, int]  # "requests", "tokens", "input-tokens", "output-tokens"
    resets_at: dict[str, float]  # epoch s: when that budget is fully replenished
    limits: dict[str, int] = field(default_factory=dict)  # the budget's size, where the answer said

    @classmethod
    def parse(cls, headers: Any) -> RateLimitHeaders:
        remaining, resets_at, limits = {}, {}, {}
        for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
            left = headers.get(f"anthropic-ratelimit-{kind}-remaining")
            reset = headers.get(f"anthropic-ratelimit-{kind}-reset")
            if left is None or reset is None:
                continue
            try:
                remaining[kind] = int(left)
                resets_at[kind] = datetime.fromisoformat(reset.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue  # a header we cannot read does not stop the call
            with contextlib.suppress(ValueError):  # without the size, refill_wait_s waits for the reset
                limits[kind] = int(headers.get(f"anthropic-ratelimit-{kind}-limit", ""))
        return cls(remaining, resets_at, limits)

    def refill_wait_s(self, kind: str, margin: int, now: float) -> float:
        """How long until `kind`'s budget holds `margin` again; 0 when it does now.

        Anthropic's limits are token buckets, refilled continuously up to the limit, and
        `-reset` is when the bucket is full again. So the bucket gains (limit - remaining)
        by the reset, and holds the margin again after the margin's share of that time:
        a drained budget of 400,000 tokens a minute has a thousand back in 0.15 s, while
        its reset is a minute away. Without the limit, wait for the reset."""
        left = self.remaining[kind]
        if left >= margin:
            return 0.0
        until_reset = max(0.0, self.resets_at[kind] - now)
        limit = self.limits.get(kind, 0)
        if limit <= left:
            return until_reset
        return until_reset * min(1.0, (margin - left) / (limit - left))


class ProviderGate:
    """The shared limits of one API key. `admit` before dequeuing calls; `release` and
    `renew` the permits a process holds; `report_*` what each answer said."""

    def __init__(
        self,
        connection: Redis,
        api_key: str | None,
        *,
        process: str,
        max_in_flight: int = 0,
        request_margin: int = 0,
        token_margin: int = 0,
    ):
        fingerprint = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self.closed_key = provider_key(fingerprint, "closed_until")
        self._probing_key = provider_key(fingerprint, "probing")  # set while the gate reopens: one call goes first
        self._probe_key = provider_key(fingerprint, "probe")  # that call's process
        self._permits_key = provider_key(fingerprint, "permits")
        self._overloads_key = provider_key(fingerprint, "overloads")
        self._redis = connection
        self._process = process
        self._max_in_flight = max_in_flight
        self._request_margin = request_margin
        self._token_margin = token_margin
        self._permits: set[str] = set()
        self._probing_here = False  # this process holds the probe: its next answer reopens the gate
        self._next_permit = 0
        # When this process last closed the gate (epoch s). A job admitted while the gate
        # was open may reach its call only after another of this process's calls has met
        # the limit (the loop runs many); it must not call then.
        self._closed_here_until = 0.0
        # The slow start: until the provider has answered this process once, one call, for
        # SLOW_START_S at most; when it went out (None: none is out).
        self._answered = False
        self._first_call_at: float | None = None
        self._admit = scripts.registered(connection, scripts.PROVIDER_ADMIT)
        self._close = scripts.registered(connection, scripts.PROVIDER_CLOSE)

    def admit(self, wanted: int) -> Admission:
        now = time.time()
        if closed := self.closed_here_for():
            return Admission(0, closed)
        if not self._answered:
            if self._first_call_at is None:
                wanted = 1
            elif now - self._first_call_at < SLOW_START_S:
                return Admission(0, MIN_WAIT_S)
        granted, wait, probe = replies.as_list(self._admit(
            keys=[self.closed_key, self._probing_key, self._probe_key, self._permits_key],
            args=[
                now, wanted, self._max_in_flight, now + PERMIT_TTL_S, self._process, PROBE_TTL_S,
                self._next_permit, PERMIT_TTL_S,  # the set goes with the last process holding a permit
            ],
        ))  # fmt: skip
        granted, wait = int(granted), max(float(wait), MIN_WAIT_S)
        if granted and self._max_in_flight:  # the script added these permits
            self._permits.update(f"{self._process}:{self._next_permit + n}" for n in range(granted))
            self._next_permit += granted
        if probe:
            self._probing_here = True
        if granted and not self._answered and self._first_call_at is None:
            self._first_call_at = now
        return Admission(granted, wait)

    def release_probe(self) -> None:
        """This process took the probe but made no call with it, or its call got no answer
        (a connection error): let another go."""
        if self._probing_here:
            self._probing_here = False
            if self._redis.get(self._probe_key) == self._process.encode():
                self._redis.delete(self._probe_key)

    def release(self, count: int = 1) -> None:
        """Give back `count` permits (a call ended, or fewer jobs were dequeued than admitted)."""
        if not self._answered:
            self._first_call_at = None  # the slow start's call ended without an answer: another may go
        if not self._max_in_flight or not self._permits:
            return
        returned = [self._permits.pop() for _ in range(min(count, len(self._permits)))]
        self._redis.zrem(self._permits_key, *returned)

    def renew(self, pipe: Any) -> None:
        """Keep this process's permits alive (called every tick, in the tick's pipeline)."""
        if self._permits:
            pipe.zadd(self._permits_key, dict.fromkeys(self._permits, time.time() + PERMIT_TTL_S), xx=True)
            pipe.expire(self._permits_key, PERMIT_TTL_S)

    def report_rate_limited(self, retry_after_s: float | None) -> float:
        """A 429 that waiting lifts: nobody calls until `retry-after` (+ jitter) has passed.
        Returns when the gate reopens (epoch s)."""
        self._answered = True
        wait = max(retry_after_s or OVERLOAD_BASE_S, 0.0) * (1 + random.uniform(0, JITTER))
        return self._close_for(wait)

    def report_overloaded(self) -> float:
        """A 529 / overloaded_error: an exponential back-off shared by every process,
        doubling with each overload met since the provider last answered normally."""
        self._answered = True
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(self._overloads_key)
            pipe.expire(self._overloads_key, int(OVERLOAD_MAX_S * 10))
            consecutive, _ = pipe.execute()
        wait = min(OVERLOAD_MAX_S, OVERLOAD_BASE_S * 2 ** max(consecutive - 1, 0))
        return self._close_for(wait * (1 + random.uniform(0, JITTER)))

    def report_answer(self, headers: RateLimitHeaders) -> None:
        """The provider answered a call with anything but a rate limit or overload: a probe
        of this process has passed, and the gate opens for all; when the budget left is
        under the margin, close until it has refilled past it (for this process alone when
        that is under MIN_WAIT_S). No round trip otherwise, nor when this process has already
        closed the gate for longer."""
        self._answered = True
        if self._probing_here:
            self._probing_here = False
            self._redis.delete(self._probing_key, self._probe_key, self._overloads_key)
        now = time.time()
        wait = max(
            (
                headers.refill_wait_s(kind, self._request_margin if kind == "requests" else self._token_margin, now)
                for kind in headers.remaining
            ),
            default=0.0,
        )
        if wait > 0 and now + wait > self._closed_here_until:
            if wait < MIN_WAIT_S:
                self._closed_here_until = now + wait
            else:
                self._close_for(wait, probe=False)

    def closed_here_for(self) -> float:
        """Seconds until the gate this process closed reopens; 0 when it is not closed here
        (no round trip)."""
        return max(0.0, self._closed_here_until - time.time())

    def _close_for(self, seconds: float, *, probe: bool = True) -> float:
        self._probing_here = False
        until = time.time() + seconds
        self._closed_here_until = max(self._closed_here_until, until)
        keys = [self.closed_key, self._probing_key, self._probe_key]
        self._close(keys=keys, args=[until, seconds + PROBE_TTL_S, "1" if probe else ""])
        return until

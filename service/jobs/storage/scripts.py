"""Every Lua script the service runs; `registered` for a call of its own (each is hashed
once per connection pool; redis-py keeps its SHA and sends EVALSHA, falling back to EVAL
when the server has lost the script, after a restart), `add_to_pipeline` for a call among
other commands.

Each script says what its KEYS and ARGV are; the module named above it builds them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

_REGISTERED: dict[tuple[int, str], Script] = {}


def registered(connection: Redis, source: str) -> Script:
    """The script `source` for `connection`, hashed once per connection pool (not per call)."""
    cache_key = (id(connection.connection_pool), source)
    if (script := _REGISTERED.get(cache_key)) is None:
        script = _REGISTERED[cache_key] = connection.register_script(source)
    return script


def add_to_pipeline(pipe: Pipeline, source: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue the script `source` on `pipe`, sent whole (EVAL). A registered `Script` queued
    on a pipeline makes redis-py ask SCRIPT EXISTS before every execute, one more round trip
    each time; EVALSHA sent alone fails the pipeline midway once Redis has lost its script
    cache (a restart), with the commands around it already run. Redis hashes the body and
    reuses its compiled script, so sending it costs only the bytes."""
    pipe.eval(source, len(keys), *keys, *args)


# The queue-depth check both admission scripts make, at ARGV[a] / KEYS[k]: count + max depth
# per queue; a queue holding that many waiting jobs answers {'full', its position, its cap}.
_QUEUE_DEPTHS = """n = tonumber(ARGV[a]); a = a + 1
for i = 1, n do
  local cap = tonumber(ARGV[a]); a = a + 1
  if cap > 0 and redis.call('llen', KEYS[k]) >= cap then return {'full', i, cap} end
  k = k + 1
end
"""


# Admission of a submit (storage/admission.py): the client's limits, the queues' depth, its
# spend budget (the worst case of every job it queues reserved), then RQ's recorded enqueue
# commands, all or nothing.
# KEYS: [Idempotency-Key's key], one per limit, one per capped queue, [budget's spent hash,
# budget's reservations hash].
# ARGV: has key (0/1), the record this request already saw there ('' = none), the hit's
# member, then count + (amount, window ms) per limit, count + max depth per queue, then
# has budget (0/1) [+ limit, window (day/month), today (YYYY-MM-DD), count + (job id,
# amount) per reservation; amounts in micro-USD], then count + (arg count, args...) per
# recorded command. Refused by the budget: {'budget', limit, spent, reserved, wanted}.
# The shebang makes Redis refuse the whole script when it is over `maxmemory` (noeviction):
# an unflagged script that has called TIME is let write past it.
ADMIT_SUBMIT = (
    """#!lua
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local k, a = 1, 4
if ARGV[1] == '1' then
  local stored = redis.call('get', KEYS[1])
  if stored and stored ~= ARGV[2] then return {'replay', stored} end
  k = 2
end
local member = ARGV[3]
local n = tonumber(ARGV[a]); a = a + 1
local limit_keys, windows = {}, {}
local best = nil
for i = 1, n do
  local key, amount, window = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  k = k + 1; a = a + 2
  redis.call('zremrangebyscore', key, '-inf', now - window)
  local used = redis.call('zcard', key)
  local oldest = redis.call('zrange', key, 0, 0, 'WITHSCORES')
  local reset = (oldest[2] and tonumber(oldest[2]) or now) + window
  if used >= amount then return {'limited', amount, reset - now, reset} end
  if best == nil or amount - used - 1 < best[2] then best = {amount, amount - used - 1, reset} end
  limit_keys[i], windows[i] = key, window
end
"""
    + _QUEUE_DEPTHS
    + """local budget = nil
if ARGV[a] == '1' then
  local limit, window, day, jobs = tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  a = a + 5
  local wanted = 0
  for i = 0, jobs - 1 do wanted = wanted + tonumber(ARGV[a + 2 * i + 1]) end
  local spent = tonumber(redis.call('hget', KEYS[k], window == 'month' and 'month' or day) or '0')
  local reserved = tonumber(redis.call('hget', KEYS[k + 1], 'total') or '0')
  if spent + reserved + wanted > limit then return {'budget', limit, spent, reserved, wanted} end
  budget = {KEYS[k + 1], limit, window, a, jobs, wanted}
  a = a + 2 * jobs
else
  a = a + 1
end
for i = 1, #limit_keys do
  redis.call('zadd', limit_keys[i], now, member)
  redis.call('pexpire', limit_keys[i], windows[i])
end
if budget then
  redis.call('hset', budget[1], 'limit', budget[2], 'window', budget[3])
  redis.call('hincrby', budget[1], 'total', budget[6])
  for i = 0, budget[5] - 1 do redis.call('hincrby', budget[1], ARGV[budget[4] + 2 * i], ARGV[budget[4] + 2 * i + 1]) end
end
n = tonumber(ARGV[a]); a = a + 1
for _ = 1, n do
  local argc = tonumber(ARGV[a])
  redis.call(unpack(ARGV, a + 1, a + argc))
  a = a + argc + 1
end
if best == nil then return {'ok'} end
return {'ok', best[1], best[2], best[3]}
"""
)


# A submit's check before its body is read (storage/admission.py `check_admissible`): what
# ADMIT_SUBMIT would answer for the limits and queue depths, without writing anything.
# KEYS: one per limit, one per capped queue. ARGV: count + (amount, window ms) per limit,
# then count + max depth per queue.
CHECK_SUBMIT = (
    """#!lua flags=no-writes
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local k, a = 1, 1
local n = tonumber(ARGV[a]); a = a + 1
for _ = 1, n do
  local key, amount, window = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  k = k + 1; a = a + 2
  local used = redis.call('zcount', key, '(' .. (now - window), '+inf')
  if used >= amount then
    local oldest = redis.call('zrangebyscore', key, '(' .. (now - window), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    local reset = (oldest[2] and tonumber(oldest[2]) or now) + window
    return {'limited', amount, reset - now, reset}
  end
end
"""
    + _QUEUE_DEPTHS
    + """return {'ok'}
"""
)


# What a listing's status filter reads of each job it passes over (storage/lookup.py): RQ's
# status, and the first byte of the meta (a `{` unless another tool re-serialized the job,
# whose record then reads as failed whatever its status), not the meta itself.
# KEYS: the job hashes. Returns, per key, {status or false, first byte of meta or ''}.
READ_JOB_STATUSES = """#!lua flags=no-writes
local out = {}
for i, key in ipairs(KEYS) do
  local status = redis.call('hget', key, 'status')
  local meta = redis.call('hget', key, 'meta')
  out[i] = {status, meta and string.sub(meta, 1, 1) or ''}
end
return out
"""


# A listing's read of job hashes without one field's value (storage/lookup.py): RQ's `data`
# holds the request, up to MAX_BODY_BYTES, which a listing never shows.
# KEYS: the job hashes. ARGV: the field whose value is left out. Returns, per key, its fields
# and values flat (empty for a missing hash), that field with an empty value.
READ_JOBS_EXCEPT = """#!lua flags=no-writes
local out = {}
for i, key in ipairs(KEYS) do
  local names = redis.call('hkeys', key)
  local kept = {}
  for _, name in ipairs(names) do
    if name ~= ARGV[1] then kept[#kept + 1] = name end
  end
  local flat = {}
  if #kept > 0 then
    local values = redis.call('hmget', key, unpack(kept))
    for j, name in ipairs(kept) do
      flat[#flat + 1] = name
      flat[#flat + 1] = values[j]
    end
  end
  if #kept < #names then
    flat[#flat + 1] = ARGV[1]
    flat[#flat + 1] = ''
  end
  out[i] = flat
end
return out
"""


# A running job's save (running/progress.py): nothing is written once another run has
# completed the job.
# KEYS: job hash, completion marker, event stream, live text, announced marker, then
# counter hashes. ARGV: serialized meta, marker TTL ("" = not completing), new text ("" =
# none), progress event data ("" = none), stream cap, stream TTL, "start" when an attempt
# starts (or ""), then for each counter hash: its TTL (0 = none), its number of fields,
# then field, amount, field, amount, ... Returns 0 when another run completed the job, 2
# when an attempt would start on a job whose announced end is `failed` (nothing written),
# else 1. The completing save adds the job's counters (usage, metrics) in the same
# script: a job is counted once, however often it ran. New text is APPENDed: a flush
# writes only what is new, so the bytes a job writes grow linearly with its reply.
GUARDED_SAVE = """
if redis.call('exists', KEYS[2]) == 1 then return 0 end
if ARGV[7] == 'start' then
  if redis.call('get', KEYS[5]) == 'failed' then return 2 end
  redis.call('del', KEYS[4])
end
redis.call('hset', KEYS[1], 'meta', ARGV[1])
if ARGV[2] ~= '' then redis.call('set', KEYS[2], '1', 'EX', ARGV[2]) end
local i = 8
for k = 6, #KEYS do
  local ttl, fields = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  for j = i + 2, i + 2 * fields, 2 do redis.call('hincrby', KEYS[k], ARGV[j], ARGV[j + 1]) end
  if ttl > 0 then redis.call('expire', KEYS[k], ttl) end
  i = i + 2 + 2 * fields
end
if ARGV[3] ~= '' then
  redis.call('append', KEYS[4], ARGV[3])
  redis.call('expire', KEYS[4], ARGV[6])
end
if ARGV[4] ~= '' then
  redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'progress', 'data', ARGV[4])
  redis.call('expire', KEYS[3], ARGV[6])
end
return 1
"""


# The provider gate (running/provider_gate.py): may a process start `wanted` calls now?
# KEYS: closed-until, probing flag, probe holder, permits. ARGV: now, wanted, cap (0 =
# none), permit expiry, process name, probe ttl, the process's next permit number, permit
# ttl. Returns {granted, seconds to wait, 1 if the grant is the probe}. Under a cap the
# granted permits (`process:number`, scored by expiry) are added here, in the same call
# that counted the free ones: two processes never both take the last permit.
PROVIDER_ADMIT = """
local now = tonumber(ARGV[1])
local closed_until = tonumber(redis.call('get', KEYS[1]) or '0')
if closed_until > now then return {0, tostring(closed_until - now), 0} end
local wanted = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
if cap > 0 then
  redis.call('zremrangebyscore', KEYS[4], '-inf', now)
  local free = cap - redis.call('zcard', KEYS[4])
  if free <= 0 then return {0, '0.1', 0} end
  if wanted > free then wanted = free end
end
local probe = 0
if redis.call('exists', KEYS[2]) == 1 then
  if not redis.call('set', KEYS[3], ARGV[5], 'NX', 'EX', ARGV[6]) then return {0, '0.25', 0} end
  wanted, probe = 1, 1
end
if cap > 0 then
  local first = tonumber(ARGV[7])
  for n = 0, wanted - 1 do redis.call('zadd', KEYS[4], ARGV[4], ARGV[5] .. ':' .. (first + n)) end
  redis.call('expire', KEYS[4], ARGV[8])
end
return {wanted, '0', probe}
"""


# The provider gate: closed until a time (a 429's retry-after, a 529's back-off).
# KEYS: closed-until, probing flag, probe holder. ARGV: until (epoch s), key ttl, "1" to
# reopen with a probe.
PROVIDER_CLOSE = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('set', KEYS[1], ARGV[1], 'EX', math.ceil(ARGV[2])) end
if ARGV[3] == '1' then
  redis.call('set', KEYS[2], '1', 'EX', math.ceil(ARGV[2]))
  redis.call('del', KEYS[3])
end
return 1
"""


# A batch's count of ended jobs (push/batches.py).
# KEYS[1] the batch; ARGV[1] the job that ended, ARGV[2] now (ISO). Counts each job once
# (a re-run job ends again), and only in a batch that still exists. Returns the jobs left,
# or -1 when nothing was counted.
COUNT_BATCH_END = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'ended:' .. ARGV[1], 1) == 0 then return -1 end
local left = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
if left == 0 then redis.call('HSET', KEYS[1], 'finished_at', ARGV[2]) end
return left
"""


# A webhook redelivery's place among the client's pending ones (push/job_webhooks.py).
# KEYS: the client's pending set. ARGV: now, webhook id, its lapse score, key TTL, cap.
# Returns 1 (reserved), 0 (pending already) or -1 (the client has `cap` pending).
RESERVE_DELIVERY = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zscore', KEYS[1], ARGV[2]) then return 0 end
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[5]) then return -1 end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[2])
redis.call('expire', KEYS[1], ARGV[4])
return 1
"""


# A client's open event stream (push/stream_claims.py).
# KEYS: the client's set. ARGV: now, cap, this stream's "over by" score, member, key TTL.
CLAIM_STREAM = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return 1
"""


# A worker's take (storage/claims.py): up to ARGV[1] job ids from the first non-empty
# queue, each claimed (scored by Redis' clock, in ms) in the same step.
# KEYS: the claims set, then the queues, highest priority first. Returns {queue key, ids}.
TAKE_JOBS = """
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 2, #KEYS do
  local ids = redis.call('lpop', KEYS[i], ARGV[1])
  if ids then
    for _, id in ipairs(ids) do redis.call('zadd', KEYS[1], now, id) end
    return {KEYS[i], ids}
  end
end
return false
"""

# The claims older than ARGV[1] ms by Redis' clock (the one they were scored by), at most
# ARGV[2] of them, oldest first. KEYS: the claims set.
STALE_CLAIMS = """#!lua flags=no-writes
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('zrangebyscore', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
"""

# A stale claim's job back at the front of its queue, if it still waits there (its worker
# never started it). KEYS: the claims set, the job's hash, its queue. ARGV: job id.
# Returns 1 when put back; 0 when the claim was gone or the job no longer waits.
PUT_BACK_CLAIMED = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 0 then return 0 end
local status = redis.call('hget', KEYS[2], 'status')
if status ~= 'queued' and status ~= 'scheduled' then return 0 end
redis.call('lpush', KEYS[3], ARGV[1])
return 1
"""

# Scheduled jobs (retries) whose time has come, back on their queue (worker/scheduled.py):
# RQ's own scheduler takes a lock that outlives a Redis restart; this needs none.
# KEYS: scheduled registry, queue list, RQ's set of queues. ARGV: now (epoch s),
# enqueued_at (RQ's format), job key prefix, most jobs to move.
PROMOTE_DUE = """
local due = redis.call('zrangebyscore', KEYS[1], 0, ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local moved = 0
for _, id in ipairs(due) do
  if redis.call('zrem', KEYS[1], id) == 1 and redis.call('exists', ARGV[3] .. id) == 1 then
    redis.call('hset', ARGV[3] .. id, 'status', 'queued', 'enqueued_at', ARGV[2])
    redis.call('rpush', KEYS[2], id)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('sadd', KEYS[3], KEYS[2]) end
return moved
"""


# A budgeted job reserves its worst case again (observability/budgets.py): a retry, a
# recovered run. KEYS: the client's reservations hash, its spent hash for this month.
# ARGV: job id, amount, charge (micro-USD counted as spent first: a lost call's worst case),
# today (YYYY-MM-DD), spent hash TTL. Returns 1 (reserved, or no budget recorded), 0 (over
# the budget: nothing reserved; the charge stays counted).
RESERVE_AGAIN = """
if tonumber(ARGV[3]) > 0 then
  redis.call('hincrby', KEYS[2], 'month', ARGV[3])
  redis.call('hincrby', KEYS[2], ARGV[4], ARGV[3])
  redis.call('expire', KEYS[2], ARGV[5])
end
local limit = redis.call('hget', KEYS[1], 'limit')
if not limit then return 1 end
local window = redis.call('hget', KEYS[1], 'window')
local spent = tonumber(redis.call('hget', KEYS[2], window == 'month' and 'month' or ARGV[4]) or '0')
local reserved = tonumber(redis.call('hget', KEYS[1], 'total') or '0')
if spent + reserved + tonumber(ARGV[2]) > tonumber(limit) then return 0 end
redis.call('hincrby', KEYS[1], 'total', ARGV[2])
redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


# Jobs' reservations released (observability/budgets.py): a run ended, and what its calls
# cost is already counted as spent. KEYS: the client's reservations hash. ARGV: pairs of job
# id and the micro-USD to release ('' = all it holds). Returns the micro-USD released.
RELEASE_RESERVATIONS = """
local released = 0
for i = 1, #ARGV, 2 do
  local held = tonumber(redis.call('hget', KEYS[1], ARGV[i]) or '0')
  local amount = held
  if ARGV[i + 1] ~= '' and tonumber(ARGV[i + 1]) < held then amount = tonumber(ARGV[i + 1]) end
  if amount > 0 then
    if amount == held then
      redis.call('hdel', KEYS[1], ARGV[i])
    else
      redis.call('hincrby', KEYS[1], ARGV[i], -amount)
    end
    released = released + amount
  end
end
if released > 0 then redis.call('hincrby', KEYS[1], 'total', -released) end
return released
"""


# The batch tier's collect (running/provider_batches.py): move up to ARGV[1] ids from the head
# of the batch queue (job ids), then of the document calls' queue (call ids), into a new
# provider batch's list, open its record and take its lease, in one step: what is taken from
# a queue is always in a record. KEYS: the batch queue, the open set, the record, its list,
# its lease, the calls' queue. ARGV: count, now, our id, owner, lease ttl. Returns how many.
COLLECT_BATCH = """
local ids = redis.call('lrange', KEYS[1], 0, tonumber(ARGV[1]) - 1)
redis.call('ltrim', KEYS[1], #ids, -1)
if #ids < tonumber(ARGV[1]) then
  local calls = redis.call('lrange', KEYS[6], 0, tonumber(ARGV[1]) - #ids - 1)
  redis.call('ltrim', KEYS[6], #calls, -1)
  for _, call in ipairs(calls) do ids[#ids + 1] = call end
end
if #ids == 0 then return 0 end
for i = 1, #ids, 1000 do
  redis.call('rpush', KEYS[4], unpack(ids, i, math.min(i + 999, #ids)))
end
redis.call('hset', KEYS[3], 'collected_at', ARGV[2], 'jobs', #ids)
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('set', KEYS[5], ARGV[4], 'EX', ARGV[5])
return #ids
"""

# Mark batch-tier jobs sent, each only if it is still queued (a cancel may have won):
# KEYS: the jobs' hashes; ARGV: started_at, then each job's new meta. Returns how many.
MARK_SENT = """
local sent = 0
for i, key in ipairs(KEYS) do
  if redis.call('hget', key, 'status') == 'queued' then
    redis.call('hset', key, 'status', 'started', 'started_at', ARGV[1], 'meta', ARGV[i + 1])
    sent = sent + 1
  end
end
return sent
"""

# Renew the leases this owner holds, or take free ones: KEYS: leases; ARGV: owner, ttl.
# Returns 1 per lease now ours, 0 per lease another owner holds.
HOLD_LEASES = """
local held = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('get', key)
  if owner == false or owner == ARGV[1] then
    redis.call('set', key, ARGV[1], 'EX', ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

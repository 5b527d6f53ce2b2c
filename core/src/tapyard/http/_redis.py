"""A rate-limit budget in Redis, for a fleet: every worker on every machine that
points at one Redis server shares a named credential's budget.

Each operation is one Lua script, which Redis runs atomically: read the key's
hash (``tat``, ``last``, ``hold``, ``why``), compute the grant as
:class:`~tapyard.http.SqliteLimiterStore` does, write it back. Time is the
server's (``TIME``), so machines whose clocks disagree still space their
grants by the same clock; a caller is told how many seconds to wait, not when.
In-flight slots (``concurrency``) are a sorted set per key of holders scored by
the end of their lease, on the same clock. Keys expire a day after their last use. Needs the ``redis`` package
(``pip install 'tapyard[redis]'``).
"""

from __future__ import annotations

import time
from typing import Any

from tapyard.http._limiters import (
    _HANDOFF_POLL,
    _HANDOFF_TIMEOUT,
    _SETTLED_FRESH,
    Ask,
    BudgetLimiterStore,
)
from tapyard.http._ratelimit import _PROBE_POLL, _PROBE_TIMEOUT, RateLimitWaitTooLong

__all__ = ["RedisBudget", "RedisLimiterStore"]

_PREFIX = "tapyard:limit:"
_SLOTS = "tapyard:slots:"

#: shared by the scripts: the key's state and the grant its settings allow now
_GRANT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tat', 'last', 'hold', 'why')
local tat = tonumber(state[1] or '0') or 0
local last = tonumber(state[2] or '0') or 0
local hold = tonumber(state[3] or '0') or 0
local why = state[4] or ''
local rate, burst, spacing = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local at = math.max(now, last + spacing, hold)
if rate > 0 then
  local interval = 1 / rate
  at = math.max(at, tat - (math.max(1, burst) - 1) * interval)
  tat = math.max(tat, at) + interval
end
"""

_RESERVE = _GRANT + """
local max_wait = tonumber(ARGV[4])
if max_wait >= 0 and at - now > max_wait then
  local reason = why
  if at > hold then reason = '' end
  return {0, string.format('%.6f', at - now), reason}
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat), 'last', string.format('%.6f', math.max(last, at)))
redis.call('EXPIRE', KEYS[1], 86400)
return {1, string.format('%.6f', at - now), ''}
"""

#: take: the spacing (ARGV[3]) the grant is taken with and the one kept after it
#: (``own``), as ``_fleet_spacing`` says (ARGV[13]: 1 when the caller's spacing is
#: settled; ARGV[14]: how long a settled caller's grant keeps its spacing the
#: fleet's), less the caller's lead (ARGV[8]); see ``Budget.take``
_SPACED = """
local own = tonumber(ARGV[3])
local fleet = redis.call('HMGET', KEYS[1], 'spacing', 'settled')
local learned = tonumber(fleet[1] or '0') or 0
local spacing = own
if own <= 0 then spacing = learned end
if ARGV[13] ~= '1' then
  local clock = redis.call('TIME')
  local settled = tonumber(fleet[2] or '0') or 0
  if settled > tonumber(clock[1]) + tonumber(clock[2]) / 1000000 - tonumber(ARGV[14]) then
    spacing, own = learned, 0
  end
end
ARGV[3] = tostring(math.max(0, spacing - tonumber(ARGV[8])))
"""

#: ARGV[4] max_wait (-1: none), ARGV[5] 1 when the caller reports its send,
#: ARGV[6] the handoff timeout, ARGV[7] its poll, ARGV[9] 1 when the caller has
#: learned from a response, ARGV[10] and [11] the probe's timeout and poll,
#: ARGV[12] the caller's ticket (0: none yet), its place in the queue of waiting
#: callers (``tickets``: the last handed out, ``served``: the highest granted,
#: ``until``: the latest moment told; see ``_queued``)
_TAKE = _SPACED + _GRANT + """
local unsent = tonumber(redis.call('HGET', KEYS[1], 'unsent') or '0') or 0
local timeout, poll = tonumber(ARGV[6]), tonumber(ARGV[7])
local handoff = false
if unsent > 0 and now < unsent + timeout and at < now + poll then
  at = math.min(now + poll, unsent + timeout)
  handoff = true
end
local known = redis.call('HGET', KEYS[1], 'known') == '1' or ARGV[9] == '1'
local probe, probe_poll = tonumber(ARGV[10]), tonumber(ARGV[11])
if not known and rate <= 0 and last > 0 and now < last + probe and at < now + probe_poll then
  at = math.min(now + probe_poll, last + probe)
  handoff = true
end
if at - now > 0.000001 then
  local max_wait = tonumber(ARGV[4])
  if not handoff and max_wait >= 0 and at - now > max_wait then
    local reason = why
    if at > hold then reason = '' end
    return {0, string.format('%.6f', at - now), reason}
  end
  local ticket = tonumber(ARGV[12])
  if not handoff then
    local queue = redis.call('HMGET', KEYS[1], 'tickets', 'served', 'until')
    local tickets, served = tonumber(queue[1] or '0') or 0, tonumber(queue[2] or '0') or 0
    local until_ = tonumber(queue[3] or '0') or 0
    if ticket <= 0 then
      if until_ < now then tickets = served end
      ticket = math.max(tickets, served) + 1
      redis.call('HSET', KEYS[1], 'tickets', ticket)
    end
    local step = spacing
    if rate > 0 then step = math.max(step, 1 / rate) end
    at = at + math.max(0, ticket - served - 1) * step
    if at > until_ then
      redis.call('HSET', KEYS[1], 'until', string.format('%.6f', at))
    end
    redis.call('EXPIRE', KEYS[1], 86400)
  end
  return {2, string.format('%.6f', at - now), tostring(ticket)}
end
local token = string.format('%.6f', now)
local mark = '0'
if ARGV[5] == '1' then mark = token end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat), 'last', string.format('%.6f', math.max(last, now)),
  'unsent', mark)
local ticket = tonumber(ARGV[12])
if ticket > 0 and ticket > (tonumber(redis.call('HGET', KEYS[1], 'served') or '0') or 0) then
  redis.call('HSET', KEYS[1], 'served', ticket)
end
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[1], 'known', '1')
end
if own > 0 then
  redis.call('HSET', KEYS[1], 'spacing', string.format('%.6f', own))
  if ARGV[13] == '1' then
    redis.call('HSET', KEYS[1], 'settled', token)
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
local since = -1
if last > 0 then since = now - last end
return {1, string.format('%.6f', since), token}
"""

#: ARGV[1] the grant's token
_SENT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'last', 'unsent')
local last = tonumber(state[1] or '0') or 0
if state[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'unsent', '0')
end
if now > last then
  redis.call('HSET', KEYS[1], 'last', string.format('%.6f', now))
end
return 1
"""

#: in-flight slots: a sorted set of holders scored by the end of their lease
_ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return string.format('%.6f', math.max(0.000001, tonumber(soonest[2]) - now))
end
redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[3])), ARGV[1])
redis.call('EXPIRE', KEYS[1], 86400)
return '0'
"""

_RENEW = """
local t = redis.call('TIME')
local until_ = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1]))
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i])
end
return 1
"""

_PEEK = _GRANT + """
return string.format('%.6f', math.max(0, at - now))
"""

_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local hold = tonumber(redis.call('HGET', KEYS[1], 'hold') or '0') or 0
if until_ > hold then
  redis.call('HSET', KEYS[1], 'hold', string.format('%.6f', until_), 'why', ARGV[2])
  redis.call('EXPIRE', KEYS[1], 86400)
end
return 1
"""


class RedisBudget:
    """A :class:`~tapyard.http.Budget` in Redis (see the module docstring)."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(url)
        self._redis = client
        self._reserve = client.register_script(_RESERVE)
        self._peek = client.register_script(_PEEK)
        self._take = client.register_script(_TAKE)
        self._enter = client.register_script(_ENTER)
        self._renew = client.register_script(_RENEW)
        self._sent = client.register_script(_SENT)
        self._hold = client.register_script(_HOLD)

    def reserve(
        self, key: str, *, rate: float | None, burst: float, spacing: float, max_wait: float | None
    ) -> float:
        args = [rate or 0, burst, spacing, -1 if max_wait is None else max_wait]
        granted, wait, why = self._reserve(keys=[_PREFIX + key], args=args)
        seconds = float(wait)
        if not int(granted):
            reason = why.decode() if isinstance(why, bytes) else str(why)
            assert max_wait is not None
            raise RateLimitWaitTooLong(seconds, max_wait, reason or "the rate limit shared with other workers")
        return time.time() + seconds

    def take(self, key: str, ask: Ask) -> tuple[float, str, float]:
        args = [ask.rate or 0, ask.burst, ask.spacing, -1 if ask.max_wait is None else ask.max_wait,
                int(ask.reports), _HANDOFF_TIMEOUT, _HANDOFF_POLL, ask.ahead, int(ask.answered),
                _PROBE_TIMEOUT, _PROBE_POLL, ask.ticket, int(ask.settled), _SETTLED_FRESH]
        granted, wait, extra = self._take(keys=[_PREFIX + key], args=args)
        text = extra.decode() if isinstance(extra, bytes) else str(extra)
        if int(granted) == 1:
            return 0.0, text, float(wait)
        seconds = float(wait)
        if not int(granted):
            assert ask.max_wait is not None
            raise RateLimitWaitTooLong(seconds, ask.max_wait, text or "the rate limit shared with other workers")
        return seconds, "", float(text or 0)

    def sent(self, key: str, token: str) -> None:
        self._sent(keys=[_PREFIX + key], args=[token])

    def peek(self, key: str, *, rate: float | None, burst: float, spacing: float) -> float:
        return float(self._peek(keys=[_PREFIX + key], args=[rate or 0, burst, spacing, -1]))

    def hold(self, key: str, until: float, reason: str) -> None:
        self._hold(keys=[_PREFIX + key], args=[max(0.0, until - time.time()), reason])

    def enter(self, key: str, holder: str, limit: int, lease: float) -> float:
        return float(self._enter(keys=[_SLOTS + key], args=[holder, limit, lease]))

    def renew(self, key: str, holders: list[str], lease: float) -> None:
        self._renew(keys=[_SLOTS + key], args=[lease, *holders])

    def leave(self, key: str, holder: str) -> None:
        self._redis.zrem(_SLOTS + key, holder)

    def close(self) -> None:
        self._redis.close()


class RedisLimiterStore(BudgetLimiterStore):
    """Limiters whose budgets live in Redis at ``url`` (``redis://host:6379/0``),
    shared by every process of a fleet that points at it. A key of scope
    ``"process"`` gets a plain in-process limiter."""

    def __init__(self, url: str) -> None:
        super().__init__(lambda: RedisBudget(url))
        self.url = url

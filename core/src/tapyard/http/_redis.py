"""A rate-limit budget in Redis, for a fleet: every worker on every machine that
points at one Redis server shares a named credential's budget.

Each operation is one Lua script, which Redis runs atomically: read the key's
hash (``tat``, ``last``, ``hold``, ``why``), compute the grant as
:class:`~tapyard.http.SqliteLimiterStore` does, write it back. Time is the
server's (``TIME``), so machines whose clocks disagree still space their
grants by the same clock; a caller is told how many seconds to wait, not when.
Keys expire a day after their last use. Needs the ``redis`` package
(``pip install 'tapyard[redis]'``).
"""

from __future__ import annotations

import time
from typing import Any

from tapyard.http._limiters import BudgetLimiterStore
from tapyard.http._ratelimit import RateLimitWaitTooLong

__all__ = ["RedisBudget", "RedisLimiterStore"]

_PREFIX = "tapyard:limit:"

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

    def peek(self, key: str, *, rate: float | None, burst: float, spacing: float) -> float:
        return float(self._peek(keys=[_PREFIX + key], args=[rate or 0, burst, spacing, -1]))

    def hold(self, key: str, until: float, reason: str) -> None:
        self._hold(keys=[_PREFIX + key], args=[max(0.0, until - time.time()), reason])

    def close(self) -> None:
        self._redis.close()


class RedisLimiterStore(BudgetLimiterStore):
    """Limiters whose budgets live in Redis at ``url`` (``redis://host:6379/0``),
    shared by every process of a fleet that points at it. A key of scope
    ``"process"`` gets a plain in-process limiter."""

    def __init__(self, url: str) -> None:
        super().__init__(lambda: RedisBudget(url))
        self.url = url

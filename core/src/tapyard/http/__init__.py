"""The HTTP layer that connectors' requests go through: the REST engine with its
retries and deadlines (``_engine``), rate limiting (``_ratelimit``: the token
bucket that learns from headers; ``_limiters``: the ``Limiter`` protocol and the
stores a run takes its limiters from, in process, in a SQLite file or in Redis,
``_redis``), the circuit breaker (``_circuit``) and the SDK-call path
(``_sdk``, ``_connector``: the same limiter, breaker, retries and counters for
connectors built on a vendor SDK). It may import ``tapyard.base`` only; auth
strategies reach it as the ``AuthStrategy`` noun from base, never by import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.http._connector import SdkConnector, SdkTokenPaginator
    from tapyard.http._engine import (
        HttpEngine,
        HttpPolicy,
        redact_url,
    )
    from tapyard.http._limiters import (
        Ask,
        Budget,
        BudgetLimiterStore,
        Limiter,
        LimiterStore,
        MemoryLimiterStore,
        SharedLimiter,
        SqliteBudget,
        SqliteLimiterStore,
        limiter_key,
    )
    from tapyard.http._ratelimit import (
        RateLimiter,
        RateLimitSettings,
        rate_limit_settings,
        shared_limiter,
        split_rate_limit,
    )
    from tapyard.http._redis import RedisBudget, RedisLimiterStore
    from tapyard.http._sdk import SdkAttempt, SdkEngine, SdkReply, SdkSource, sdk_engine
    from tapyard.http._stores import default_limiter_store, limiters_of

__all__ = [
    "Ask",
    "Budget",
    "BudgetLimiterStore",
    "HttpEngine",
    "HttpPolicy",
    "Limiter",
    "LimiterStore",
    "MemoryLimiterStore",
    "RateLimitSettings",
    "RateLimiter",
    "RedisBudget",
    "RedisLimiterStore",
    "SdkAttempt",
    "SdkConnector",
    "SdkEngine",
    "SdkReply",
    "SdkSource",
    "SdkTokenPaginator",
    "SharedLimiter",
    "SqliteBudget",
    "SqliteLimiterStore",
    "default_limiter_store",
    "limiter_key",
    "limiters_of",
    "rate_limit_settings",
    "redact_url",
    "sdk_engine",
    "shared_limiter",
    "split_rate_limit",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_connector": ("SdkConnector", "SdkTokenPaginator"),
        "_engine": ("HttpEngine", "HttpPolicy", "redact_url"),
        "_limiters": (
            "Ask", "Budget", "BudgetLimiterStore", "Limiter", "LimiterStore", "MemoryLimiterStore", "SharedLimiter",
            "SqliteBudget", "SqliteLimiterStore", "limiter_key",
        ),
        "_ratelimit": ("RateLimitSettings", "RateLimiter", "rate_limit_settings", "shared_limiter", "split_rate_limit"),
        "_redis": ("RedisBudget", "RedisLimiterStore"),
        "_stores": ("default_limiter_store", "limiters_of"),
        "_sdk": ("SdkAttempt", "SdkEngine", "SdkReply", "SdkSource", "sdk_engine"),
    },
)

"""The HTTP engine that connectors' requests go through: retries and deadlines
(``_engine``), rate limiting (``_ratelimit``) and the circuit breaker
(``_circuit``). It may import ``tapyard.base`` only; auth strategies reach it as
the ``AuthStrategy`` noun from base, never by import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.http._engine import (
        HttpEngine,
        HttpPolicy,
        redact_url,
    )
    from tapyard.http._ratelimit import (
        RateLimiter,
        RateLimitSettings,
        rate_limit_settings,
        shared_limiter,
        split_rate_limit,
    )

__all__ = [
    "HttpEngine",
    "HttpPolicy",
    "RateLimitSettings",
    "RateLimiter",
    "rate_limit_settings",
    "redact_url",
    "shared_limiter",
    "split_rate_limit",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_engine": ("HttpEngine", "HttpPolicy", "redact_url"),
        "_ratelimit": ("RateLimitSettings", "RateLimiter", "rate_limit_settings", "shared_limiter", "split_rate_limit"),
    },
)

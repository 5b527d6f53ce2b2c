"""The tapyard ``stripe`` connector, built on the stripe SDK.

Streams: customers, charges, payment_intents, invoices, subscriptions,
products, prices, balance_transactions and events. Incremental on ``created``;
objects changed since the last run are re-synced from the events API.
Credentials: an ``api_key`` credential holding a secret or restricted key.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tapyard import hookimpl
from tapyard.base import LazyConnector

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

    from tapyard import Connector, RateLimiter

__all__ = ["connector"]

#: the connector, made when first used (``tapyard_stripe.connector``, or a run)
_lazy_connector = LazyConnector("tapyard_stripe._connector", "StripeConnector")
__getattr__ = _lazy_connector.module_getattr(__name__)


@hookimpl
def tapyard_register_connectors(register: Callable[[Connector], None]) -> None:
    register(_lazy_connector())


@hookimpl
def tapyard_rate_limit_policy(connector: Connector, config: BaseModel) -> Mapping[str, float] | None:
    if connector.name != "stripe":
        return None
    rate = float(getattr(config, "rate_limit_per_s", 20))
    return {"rate": rate, "burst": max(1.0, rate)}


#: How long every worker holds back after a 429 that names no wait.
BACKOFF_AFTER_429 = 1.0


@hookimpl
def tapyard_rate_limit_learn(connector: Connector, response: httpx.Response, limiter: RateLimiter) -> None:
    """Stripe sends no rate-limit headers; a 429 (rate limit or lock timeout)
    holds every worker of the run back, for ``Retry-After`` if given, unless
    ``Stripe-Should-Retry: false`` says that waiting would not help."""
    if connector.name != "stripe" or response.status_code != 429:
        return
    if response.headers.get("stripe-should-retry") == "false":
        return
    wait = BACKOFF_AFTER_429
    value = response.headers.get("retry-after")
    if value:
        try:
            wait = float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            wait = max(0.0, parsed.timestamp() - time.time()) if parsed else wait
    limiter.penalize(min(wait, 60.0))

"""The tapyard ``salesforce`` connector, built on simple-salesforce.

Streams: the sObjects named in the configuration, their columns from
``describe()``, read through SOQL queries or, for large objects, Bulk API 2.0
query jobs. Incremental on ``SystemModstamp``; deleted records come from
``queryAll`` with ``IsDeleted`` true. Credentials: ``salesforce_password``
(username, password, security token and a connected app),
``oauth2_refresh_token`` (a connected app's refresh token) or ``jwt_bearer``
(a connected app's private key and a pre-authorized user).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from tapyard import hookimpl
from tapyard.base import LazyConnector

if TYPE_CHECKING:
    import httpx

    from tapyard import Connector, RateLimiter

__all__ = ["connector"]

#: the connector, made when first used (``tapyard_salesforce.connector``, or a run)
_lazy_connector = LazyConnector("tapyard_salesforce._connector", "SalesforceConnector")
__getattr__ = _lazy_connector.module_getattr(__name__)


@hookimpl
def tapyard_register_connectors(register: Callable[[Connector], None]) -> None:
    register(_lazy_connector())


_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")

#: Above this share of the org's daily API requests, every worker holds back.
USAGE_CEILING = 0.9


@hookimpl
def tapyard_rate_limit_learn(connector: Connector, response: httpx.Response, limiter: RateLimiter) -> None:
    """``Sforce-Limit-Info: api-usage=used/limit`` counts the org's API requests
    in the last 24 hours; near the limit, every worker of the run slows down."""
    if connector.name != "salesforce":
        return
    found = _USAGE.search(response.headers.get("sforce-limit-info", ""))
    if found and int(found.group(2)) > 0 and int(found.group(1)) > USAGE_CEILING * int(found.group(2)):
        limiter.penalize(1.0)

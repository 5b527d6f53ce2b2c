"""Built-in rate limits: the connector's declared ``rate_limit``, or none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import Connector

hookimpl = pluggy.HookimplMarker("tapyard")


@hookimpl(trylast=True)
def tapyard_rate_limit_policy(connector: Connector, config: BaseModel) -> Mapping[str, float] | None:
    policy = getattr(connector, "rate_limit", None)
    return dict(policy) if policy else None

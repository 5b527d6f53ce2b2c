"""The base of connectors built on a vendor SDK (light: it imports no HTTP library,
so that listing connectors stays fast)."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel

from tapyard.base import Connector, RunContext

if TYPE_CHECKING:
    from tapyard.http._sdk import SdkSource

__all__ = ["SdkConnector"]


class SdkConnector(Connector):
    """Base of a connector built on a vendor SDK: :meth:`open` makes the run's
    source with :meth:`source` (where the SDK is imported, so that listing
    connectors stays fast) and closes it when the run ends."""

    @abc.abstractmethod
    def source(self, config: BaseModel, context: RunContext) -> SdkSource:
        """The source of one run."""

    @contextlib.contextmanager
    def open(self, config: BaseModel, context: RunContext) -> Iterator[SdkSource]:
        source = self.source(config, context)
        try:
            yield source
        finally:
            source.close()

"""The base of connectors built on a vendor SDK and of the paginators of their SDKs'
listings (light: it imports no HTTP library, so that listing connectors stays fast)."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from tapyard.base import Connector, PageRequest, Paginator, RunContext

if TYPE_CHECKING:
    from tapyard.http._sdk import SdkSource

__all__ = ["SdkConnector", "SdkTokenPaginator"]


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


class SdkTokenPaginator(Paginator):
    """Pages of an SDK's listing whose position is the token the SDK hands back with
    each page (boto3's resume token, Cloud Storage's ``nextPageToken``, Azure's
    ``NextMarker``). The source puts the token in the page's body under
    :attr:`token_field`; the next request is the same one with the token as
    :attr:`token_param`, so a saved request resumes the listing where it stopped.
    There is no next page when the body has no token.

    A connector subclasses it with its ``kind``, the two names, and its SDK's page
    size field.
    """

    stable: ClassVar[bool] = True
    #: the key of the body dict that holds the next page's token
    token_field: ClassVar[str]
    #: the parameter of the saved request that carries it
    token_param: ClassVar[str]

    def next(self, request: PageRequest, response: Any, body: Any, records: Any) -> PageRequest | None:
        """The same request with the next page's token, or ``None`` when the page has none."""
        token = body.get(self.token_field) if isinstance(body, dict) else None
        if not token:
            return None
        return PageRequest(url=request.url, params={**request.params, self.token_param: token})

"""Reading from vendors: the stock paginators (whose position lives in the
request they return), the declarative REST connector, which runs each of its
decisions through the plugin hooks, and the object-store source that the SDK
connectors for S3, Blob Storage and Cloud Storage share (``_objects``) and their shared configuration (``_object_config``). It may import ``tapyard.base``,
``tapyard.http`` and ``tapyard.auth``; it reaches plugins only through the run
context it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.sources._declarative import (
        RestConnector,
        RestStream,
        SinglePage,
        streams_of,
    )
    from tapyard.sources._object_config import ObjectStoreConfig
    from tapyard.sources._objects import ObjectStoreSource, Role, first_page
    from tapyard.sources._paginators import (
        DEFAULT_MAX_PAGES,
        STOCK_PAGINATORS,
        CursorPaginator,
        LinkHeaderPaginator,
        NextUrlPaginator,
        OffsetPaginator,
        PageGuard,
        PageNumberPaginator,
        PageTokenPaginator,
    )

__all__ = [
    "DEFAULT_MAX_PAGES",
    "STOCK_PAGINATORS",
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "ObjectStoreConfig",
    "ObjectStoreSource",
    "OffsetPaginator",
    "PageGuard",
    "PageNumberPaginator",
    "PageTokenPaginator",
    "RestConnector",
    "RestStream",
    "Role",
    "SinglePage",
    "first_page",
    "streams_of",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_declarative": ("RestConnector", "RestStream", "SinglePage", "streams_of"),
        "_objects": ("ObjectStoreSource", "Role", "first_page"),
        "_object_config": ("ObjectStoreConfig",),
        "_paginators": ("CursorPaginator", "DEFAULT_MAX_PAGES", "LinkHeaderPaginator", "NextUrlPaginator", "OffsetPaginator", "PageGuard", "PageNumberPaginator", "PageTokenPaginator", "STOCK_PAGINATORS"),
    },
)

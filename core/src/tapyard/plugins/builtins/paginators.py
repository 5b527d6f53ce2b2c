"""Built-in pagination: the stock paginator kinds, and the paginator a stream declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tapyard.base import Connector, Paginator, Stream

hookimpl = pluggy.HookimplMarker("tapyard")


@hookimpl(trylast=True)
def tapyard_register_paginators(register: Callable[[str, type[Paginator]], None]) -> None:
    from tapyard.sources import STOCK_PAGINATORS, SinglePage

    register(SinglePage.kind, SinglePage)
    for kind, cls in STOCK_PAGINATORS.items():
        register(kind, cls)


@hookimpl(trylast=True)
def tapyard_stream_paginator(connector: Connector, stream: Stream) -> Paginator | None:
    from tapyard.base import Paginator
    from tapyard.sources import SinglePage

    paginator = getattr(stream, "paginator", None)
    return paginator if isinstance(paginator, Paginator) else SinglePage()

"""Serve localstripe on 127.0.0.1 (its own CLI binds every interface), with the
parts of Stripe's API that tapyard-stripe uses and localstripe lacks added on
the fake's side, from Stripe's API reference:

- lists newest first, with ``created[gt|gte|lt|lte]`` on every list, as Stripe does;
- ``GET /v1/events`` with a ``type`` wildcard (``customer.*``);
- ``product.updated`` events, and a minimal ``/v1/prices`` resource with its events;
- ``GET /v1/balance_transactions`` (localstripe serves only the old ``/v1/balance/history``);
- a clock that starts at 2023-11-14 and ticks one second per object, so
  ``created`` values are distinct and recordings are reproducible;
- restricted keys (``rk_test_...``) as well as secret keys;
- no pickle file in /tmp (the state lives in memory only).

Usage: ``python localstripe_launcher.py PORT`` (0: a free port); prints
``listening on http://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import sys
import time as real_time
from typing import Any

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import List, StripeObject, store


class _Clock:
    """``time`` for localstripe's resources: one second per call, from a fixed start."""

    def __init__(self, start: int) -> None:
        self.now = start

    def time(self) -> float:
        self.now += 1
        return float(self.now)

    def __getattr__(self, name: str) -> Any:
        return getattr(real_time, name)


resources.time = _Clock(1_700_000_000)  # type: ignore[assignment]
resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
store.clear()


def _created_filters(created: Any) -> list[Any]:
    if created is None:
        return []
    if not isinstance(created, dict):
        value = int(created)
        return [lambda o: o.created == value]
    tests = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    out = []
    for op, raw in created.items():
        if op not in tests:
            raise UserError(400, f"Invalid created[{op}]")
        out.append(lambda o, op=op, v=int(raw): tests[op](o.created, v))
    return out


def _list_all(cls: Any, url: str, limit: Any = None, starting_after: Any = None, created: Any = None,
              type: Any = None, status: Any = None, customer: Any = None, **kwargs: Any) -> Any:
    kwargs.pop("ending_before", None)
    if kwargs:
        raise UserError(400, "Received unknown parameter: " + ", ".join(kwargs))
    filters = _created_filters(created)
    if type is not None:
        if str(type).endswith("*"):
            prefix = str(type)[:-1]
            filters.append(lambda o: o.type.startswith(prefix))
        else:
            filters.append(lambda o: o.type == type)
    if customer is not None:
        filters.append(lambda o: getattr(o, "customer", None) == customer)
    if status not in (None, "all"):
        filters.append(lambda o: getattr(o, "status", None) == status)
    li = List(url, limit=limit, starting_after=starting_after)
    objects = [v for k, v in store.items() if k.startswith(cls.object + ":")]
    li._list = sorted(
        (o for o in objects if all(f(o) for f in filters)), key=lambda o: (o.created, o.id), reverse=True
    )
    return li


class Price(StripeObject):
    object = "price"
    _id_prefix = "price_"

    def __init__(self, product: Any = None, currency: Any = None, unit_amount: Any = None, recurring: Any = None,
                 nickname: Any = None, active: Any = True, metadata: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs))
        if not product or not currency:
            raise UserError(400, "Missing required param: product, currency")
        super().__init__()
        self.product, self.currency = product, currency
        self.unit_amount = int(unit_amount) if unit_amount is not None else None
        self.recurring, self.nickname = recurring, nickname
        self.active = active not in (False, "false")
        self.metadata = metadata or {}
        self.type = "recurring" if recurring else "one_time"
        resources.schedule_webhook(resources.Event("price.created", self))


def _emitting_update(cls: Any, event: str) -> None:
    original = cls._api_update.__func__

    def update(inner: Any, id: str, **data: Any) -> Any:
        obj = original(inner, id, **data)
        resources.schedule_webhook(resources.Event(event, obj))
        return obj

    cls._api_update = classmethod(update)


for klass in (resources.Customer, resources.Charge, resources.PaymentIntent, resources.Invoice,
              resources.Subscription, resources.Product, resources.BalanceTransaction, resources.Event, Price):
    klass._api_list_all = classmethod(_list_all)
_emitting_update(resources.Product, "product.updated")
_emitting_update(Price, "price.updated")

_get_api_key = server.get_api_key


def _api_key(request: Any) -> Any:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer rk_") and len(header) > 12:
        return header.split(" ", 1)[1]
    return _get_api_key(request)


server.get_api_key = _api_key
app = server.app
app.router.add_route("GET", "/v1/balance_transactions",
                     server.api_list_all(resources.BalanceTransaction, "/v1/balance_transactions"))
for method, url, factory in (
    ("POST", "/v1/prices", server.api_create),
    ("GET", "/v1/prices/{id}", server.api_retrieve),
    ("POST", "/v1/prices/{id}", server.api_update),
    ("GET", "/v1/prices", server.api_list_all),
):
    app.router.add_route(method, url, factory(Price, url))


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0

    async def announce(application: web.Application) -> None:
        for site in runner_sites(application):
            print(f"listening on http://127.0.0.1:{site}", flush=True)

    def runner_sites(application: web.Application) -> list[int]:
        return [application["port"]]

    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    app["port"] = sock.getsockname()[1]
    app.on_startup.append(announce)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()

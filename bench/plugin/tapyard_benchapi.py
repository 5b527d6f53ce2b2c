"""``benchapi``: a tapyard connector of bench/server.py's Stripe-like API, for runs
that a scheduler hands to workers (which find connectors by their entry points).

One stream, ``charges``, read in ``PARTITIONS`` partitions (the server's
``?partition=i&partitions=n``: disjoint ranges of the records), with the server's
Stripe cursor. The bench's Celery scenario (bench/celery.py) and the spread tests
(tests/test_spread.py) put this folder on ``PYTHONPATH``: its ``.dist-info``
registers the module under the ``tapyard`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tapyard import RestConnector, RestStream, hookimpl

#: how many partitions ``charges`` is read in
PARTITIONS = 8


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    token: str
    page_size: int = 100


class Charge(BaseModel):
    id: str
    object: str
    amount: int
    created: int
    currency: str
    customer: str | None = None
    description: str | None = None
    livemode: bool
    paid: bool
    refunded: bool
    status: str
    metadata: dict[str, Any] = {}
    billing_details: dict[str, Any] | None = None
    payment_method_details: dict[str, Any] | None = None


connector = RestConnector(
    name="benchapi",
    description="bench/server.py's charges, in 8 partitions.",
    config_model=BenchConfig,
    base_url="{config.base_url}",
    auth_kinds=["none"],
    headers={"Authorization": "Bearer {config.token}"},
    paginator={"kind": "cursor", "page_size": "{config.page_size}"},
    streams=[
        RestStream(
            name="charges",
            path="/v1/charges",
            schema_model=Charge,
            primary_key=("id",),
            partitions=[{"partition": i, "partitions": PARTITIONS} for i in range(PARTITIONS)],
        )
    ],
)


@hookimpl
def tapyard_register_connectors(register: Any) -> None:
    register(connector)

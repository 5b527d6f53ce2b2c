"""Test helpers: moto in server mode on a free loopback port (``tapyard.testing``'s).

::

    from tapyard_aws.testing import moto_server

    with moto_server() as endpoint:          # "http://127.0.0.1:PORT"
        tapyard.sync("aws", {"endpoint_url": endpoint, "bucket": "b"}, to=...)

:func:`moto_server_binary` says whether moto's server is installed
(``pip install 'moto[server]'``); :func:`moto_server` raises
:class:`EmulatorNotInstalled` when it is not. Tests get one server per session
from the ``moto_endpoint`` fixture of ``tapyard.testing``.
"""

from __future__ import annotations

from typing import Any

from tapyard.testing import (
    EmulatorNotInstalled,
    free_port,
    moto_server,
    moto_server_binary,
    wait_until_ready,
)

__all__ = [
    "EmulatorNotInstalled", "dynamodb_table", "free_port", "moto_server", "moto_server_binary", "wait_until_ready",
]


def dynamodb_table(
    endpoint: str, name: str, items: list[dict[str, Any]], key: str = "pk", key_type: str = "S"
) -> None:
    """Create table ``name`` (hash key ``key``, of DynamoDB type ``key_type``) at ``endpoint`` and put
    ``items`` (in DynamoDB's wire format) into it, through boto3."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
    )
    for item in items:
        ddb.put_item(TableName=name, Item=item)

"""Test helpers: moto in server mode on a free loopback port.

::

    from tapyard_aws.testing import moto_server

    with moto_server() as endpoint:          # "http://127.0.0.1:PORT"
        tapyard.sync("aws", {"endpoint_url": endpoint, "bucket": "b"}, to=...)

:func:`moto_server_binary` says whether moto's server is installed
(``pip install 'moto[server]'``); :func:`moto_server` raises
:class:`EmulatorNotInstalled` when it is not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "EmulatorNotInstalled", "dynamodb_table", "free_port", "moto_server", "moto_server_binary", "wait_until_ready",
]


class EmulatorNotInstalled(RuntimeError):
    """The emulator's program is not installed here."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers (any HTTP status), or fail when the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator did not answer at {url} within {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate ``process`` (our own child, by its handle), killing it after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def moto_server_binary() -> str | None:
    """The path of ``moto_server`` (beside this Python first, then on PATH), or None."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    return shutil.which("moto_server")


@contextlib.contextmanager
def moto_server(port: int | None = None) -> Iterator[str]:
    """Run moto's server on 127.0.0.1 for the block; yields its endpoint URL."""
    binary = moto_server_binary()
    if binary is None:
        raise EmulatorNotInstalled("moto_server is not installed: pip install 'moto[server]'")
    port = port or free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_ready(endpoint + "/moto-api/", process)
        yield endpoint
    finally:
        stop(process)


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

"""Test helpers: Azurite's blob service on a free loopback port.

::

    from tapyard_azure.testing import azurite, connection_string

    with azurite() as endpoint:              # "http://127.0.0.1:PORT/devstoreaccount1"
        text = connection_string(endpoint)   # Azurite's documented development account

Azurite is an npm package: ``.ci/emulators-cloud.sh`` installs it under
``${TAPYARD_EMULATORS:-~/.cache/tapyard-emulators}``; :func:`azurite_binary`
finds it there or on PATH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ACCOUNT", "EmulatorNotInstalled", "azurite", "azurite_binary", "connection_string"]

#: Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorNotInstalled(RuntimeError):
    """The emulator's program is not installed here."""


def connection_string(endpoint: str, key: str = _DEV_KEY) -> str:
    """The connection string of Azurite's development account at ``endpoint``."""
    return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={endpoint};"


def azurite_binary() -> str | None:
    """The path of ``azurite-blob``: in the emulator cache, then on PATH."""
    cache = Path(os.environ.get("TAPYARD_EMULATORS") or Path.home() / ".cache" / "tapyard-emulators")
    local = cache / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def azurite(port: int | None = None) -> Iterator[str]:
    """Run Azurite's blob service on 127.0.0.1 for the block; yields the account's blob endpoint."""
    binary = azurite_binary()
    if binary is None:
        raise EmulatorNotInstalled("azurite is not installed: npm install azurite (see .ci/emulators-cloud.sh)")
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as location:
        process = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
             "--silent", "--skipApiVersionCheck", "--loose"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"azurite exited with status {process.returncode} before it was ready")
                try:
                    with urllib.request.urlopen(endpoint + "?comp=list", timeout=1):
                        break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("azurite did not answer within 60s") from None
                    time.sleep(0.2)
            yield endpoint
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(3)  # Azurite is slow to stop on SIGTERM
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

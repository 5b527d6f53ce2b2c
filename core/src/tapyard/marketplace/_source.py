"""Where a registry is: an HTTP(S) server, or a static folder (a mirror made by ``tapyard registry mirror``).

Both are read the same way, by relative path: ``api/v1/index.json``,
``api/v1/packages/<name>.json``, ``tuf/<file>`` (the signed index) and
``targets/<package>/<file>`` (the artifacts). Nothing read here is trusted
until :mod:`tapyard.marketplace._trust` has verified it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from tapyard.marketplace._errors import RegistryError

__all__ = ["DEFAULT_REGISTRY", "Source", "default_registry", "open_source"]

#: The registry used when neither --registry nor TAPYARD_REGISTRY nor `tapyard registry use` says one.
DEFAULT_REGISTRY = "http://127.0.0.1:8765/"
_MAX_JSON = 64 * 1024 * 1024


def _config_file() -> Path:
    from tapyard_credentials import data_dir

    return data_dir() / "registry.json"


def default_registry() -> str:
    """``$TAPYARD_REGISTRY``, else what ``tapyard registry use`` saved, else :data:`DEFAULT_REGISTRY`."""
    if os.environ.get("TAPYARD_REGISTRY"):
        return os.environ["TAPYARD_REGISTRY"]
    try:
        saved = json.loads(_config_file().read_text(encoding="utf-8")).get("url")
    except (OSError, ValueError, AttributeError):
        saved = None
    return saved if isinstance(saved, str) and saved else DEFAULT_REGISTRY


def save_default_registry(location: str) -> None:
    path = _config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"url": location}) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _display(location: str) -> str:
    parts = urlsplit(location)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
    return location


class Source(FetcherInterface):
    """One registry location, and the fetcher python-tuf downloads through."""

    def __init__(self, location: str, *, timeout: float = 30.0) -> None:
        self.location = location
        parts = urlsplit(location)
        self.is_http = parts.scheme in ("http", "https")
        if self.is_http:
            self.base = location if location.endswith("/") else location + "/"
            self.root: Path | None = None
        else:
            folder = Path(unquote(parts.path) if parts.scheme == "file" else location).expanduser()
            if not folder.is_dir():
                raise RegistryError(f"{location}: no such registry folder; give an http(s) URL or a folder made by `tapyard registry mirror`")
            self.root = folder.resolve()
            self.base = self.root.as_uri() + "/"
        self.timeout = timeout
        self._client: Any = None
        self.display = _display(location)

    @property
    def trust_id(self) -> str:
        """A stable name for this location's trusted metadata in the data directory."""
        return hashlib.sha256(self.base.encode()).hexdigest()[:16]

    def url(self, relative: str) -> str:
        return self.base + relative

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- python-tuf's fetcher --------------------------------------------------------

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url.startswith("file:"):
            path = Path(unquote(urlsplit(url).path))
            if self.root is None or not path.resolve().is_relative_to(self.root) or not path.is_file():
                raise DownloadHTTPError(f"{path.name}: not in the mirror", 404)
            with path.open("rb") as handle:
                while chunk := handle.read(65536):
                    yield chunk
            return
        import httpx

        try:
            with self._http().stream("GET", url) as response:
                if response.status_code != 200:
                    raise DownloadHTTPError(f"HTTP {response.status_code}", response.status_code)
                yield from response.iter_bytes(65536)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the registry at {self.display}: {type(exc).__name__}") from None

    # -- plain reads ------------------------------------------------------------------

    def read(self, relative: str, max_length: int = _MAX_JSON) -> bytes | None:
        """The bytes at ``relative``, or None when the registry has nothing there."""
        try:
            return self.download_bytes(self.url(relative), max_length)
        except DownloadHTTPError as exc:
            if exc.status_code == 404:
                return None
            raise RegistryError(f"the registry at {self.display} answered HTTP {exc.status_code} for {relative}") from None
        except RegistryError:
            raise
        except Exception as exc:
            raise RegistryError(f"cannot read {relative} from the registry at {self.display}: {type(exc).__name__}") from None

    def json(self, relative: str) -> Any:
        data = self.read(relative)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise RegistryError(f"the registry at {self.display} sent {relative} that is not JSON") from None

    def package(self, name: str) -> dict[str, Any] | None:
        from tapyard.marketplace._wheel import normalize

        document = self.json(f"api/v1/packages/{normalize(name)}.json")
        if document is not None and not isinstance(document, dict):
            raise RegistryError(f"the registry at {self.display} sent a package document that is not an object")
        return document

    def search(self, query: str, filters: dict[str, str], limit: int = 50) -> dict[str, Any]:
        if self.is_http:
            import httpx

            params = {"q": query, "limit": str(limit), **filters}
            try:
                response = self._http().get(self.url("api/v1/search"), params=params)
            except httpx.HTTPError as exc:
                raise RegistryError(f"cannot reach the registry at {self.display}: {type(exc).__name__}") from None
            if response.status_code == 200:
                result: dict[str, Any] = response.json()
                return result
            if response.status_code != 404:
                raise RegistryError(f"the registry at {self.display} answered HTTP {response.status_code} to a search")
            # a mirror served by a plain file server: search its listing here, as for a folder
        from tapyard.marketplace._listing import search

        index = self.json("api/v1/index.json") or {}
        hits, total = search(index.get("packages", []), query, filters, limit=limit)
        return {"query": query, "filters": filters, "total": total, "results": list(hits)}


def open_source(location: str | None) -> Source:
    """The registry at ``location`` (or the default one)."""
    return Source(location or default_registry())

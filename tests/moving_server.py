"""A real local REST server whose data moves: for kill-and-move tests.

``with MovingServer(records=2000) as server:`` listens on 127.0.0.1 on a free
port and serves four collections, each paginated the way a vendor does it.
Between runs of a sync the test changes them (:meth:`MovingServer.move`):
records are updated (each update gives a record a new, unique
``updated_at``, so it moves to the end of a listing in cursor order),
created, soft-deleted (``deleted: true``) and, in the listing collection,
removed outright.

=================  =====================================================================
``/customers``     Stripe: ``limit``, ``starting_after`` (a record id), ``updated_after``
                   (strict); in ``updated_at`` order; ``data``, ``has_more``
``/orders``        ``offset``, ``limit``, ``updated_after``; in ``updated_at`` order;
                   ``data``, ``total``
``/tokens``        Google style: ``pageSize``, ``pageToken``, ``updated_after``; the
                   token names the last record served by its place in ``updated_at``
                   order (so it survives changes) and the server's epoch: after
                   :meth:`MovingServer.restart` old tokens get 400
``/objects``       an object store: every record, in id order (not cursor order),
                   ``pageSize``, ``pageToken``; records are removed for good
``/links``         OData v4 as SAP CAP serves it: ``$top``, ``updated_after``; in
                   ``updated_at`` order; ``value`` and an ``@odata.nextLink`` whose
                   ``$skiptoken`` is an offset (it shifts when earlier records move)
``/pages``         GitHub style: ``per_page``, ``page``, ``updated_after``; in
                   ``updated_at`` order; a bare list and a ``Link: <...>; rel="next"``
                   header naming the next page number (it shifts too)
=================  =====================================================================

:func:`connector` builds the declarative connector for it, and
``python tests/moving_server.py URL DESTINATION [STREAMS] [--full-refresh]`` runs one
sync of it (what the kill tests start and interrupt).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

if __name__ == "__main__":  # run as a script: the repository root holds the tests package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.paginated_server import _Handler as JSONHandler

COLLECTIONS = ("customers", "orders", "tokens", "objects", "links", "pages")
_T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


class _Collection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[str, dict[str, Any]] = {}
        self._sorted: list[dict[str, Any]] | None = None

    def put(self, record: dict[str, Any]) -> None:
        self.records[record["id"]] = record
        self._sorted = None

    def remove(self, record_id: str) -> None:
        self.records.pop(record_id, None)
        self._sorted = None

    def by_cursor(self) -> list[dict[str, Any]]:
        if self._sorted is None:
            self._sorted = sorted(self.records.values(), key=lambda r: (r["updated_at"], r["id"]))
        return self._sorted


class MovingServer:
    """See the module docstring. Thread-safe: requests and moves take one lock."""

    def __init__(self, records: int = 1000, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.clock = 0
        self.epoch = 1
        self.next_id = 0
        self.collections = {name: _Collection(name) for name in COLLECTIONS}
        for name in COLLECTIONS:
            for _ in range(records):
                self._create(name)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.moving = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- data ---------------------------------------------------------------

    def _tick(self) -> str:
        self.clock += 1
        moment = _T0 + dt.timedelta(microseconds=self.clock * 7919)
        return moment.isoformat().replace("+00:00", "Z")

    def _create(self, name: str) -> None:
        self.next_id += 1
        record = {
            "id": f"{name[:3]}_{self.next_id:07d}",
            "name": f"record {self.next_id}",
            "version": 1,
            "updated_at": self._tick(),
            "deleted": False,
        }
        self.collections[name].put(record)

    def update(self, name: str, record_id: str) -> bool:
        """Give one record a new version (it moves to the end of the cursor order)."""
        with self.lock:
            old = self.collections[name].records.get(record_id)
            if old is None:
                return False
            new = {**old, "version": old["version"] + 1, "updated_at": self._tick()}
            new["name"] = f"record {record_id} v{new['version']}"
            self.collections[name].put(new)
            return True

    def move(self, named: dict[str, str] | None = None, changes: int = 50) -> None:
        """Change every collection: update ``changes`` records (and each record
        ``named`` maps a collection to, such as the one a resume point names),
        create some, soft-delete some, and remove some objects for good."""
        for name, record_id in (named or {}).items():
            self.update(name, record_id)
        with self.lock:
            for name, collection in self.collections.items():
                ids = list(collection.records)
                for record_id in self.rng.sample(ids, min(changes, len(ids))):
                    old = collection.records[record_id]
                    new = {**old, "version": old["version"] + 1, "updated_at": self._tick()}
                    new["name"] = f"record {record_id} v{new['version']}"
                    collection.put(new)
                for record_id in self.rng.sample(ids, min(changes // 5, len(ids))):
                    old = collection.records[record_id]
                    if name == "objects":
                        collection.remove(record_id)
                    elif not old["deleted"]:
                        collection.put({**old, "deleted": True, "version": old["version"] + 1, "updated_at": self._tick()})
                for _ in range(changes // 5):
                    self._create(name)

    def remove(self, name: str, ids: list[str]) -> None:
        """Delete records of ``name`` for good (no soft-delete flag left behind)."""
        with self.lock:
            for record_id in ids:
                self.collections[name].remove(record_id)

    def restart(self) -> None:
        """Forget every page token handed out (a service restarted)."""
        with self.lock:
            self.epoch += 1

    def snapshot(self, name: str) -> dict[str, dict[str, Any]]:
        """What a clean full sync of ``name`` would hold now."""
        with self.lock:
            return {k: dict(v) for k, v in self.collections[name].records.items()}

    # -- serving ------------------------------------------------------------

    def served_last(self, name: str, url: str) -> str | None:
        """The id of the last record served before the page a saved next link of
        ``links`` or ``pages`` asks for (the record that link's position is after)."""
        query = dict(parse_qsl(urlsplit(url).query))
        with self.lock:
            listing = self.collections[name].by_cursor()
            since = query.get("updated_after")
            start = 0 if since is None else _after(listing, (since, "\uffff"))
            if name == "links":
                offset = int(query.get("$skiptoken", 0))
            else:
                offset = (int(query.get("page", 1)) - 1) * int(query.get("per_page", 100))
            position = start + offset - 1
            return listing[position]["id"] if 0 <= position < len(listing) else None

    def page(self, path: str, query: dict[str, str]) -> tuple[int, Any, list[tuple[str, str]]]:
        with self.lock:
            name = path.strip("/")
            if name not in self.collections:
                return 404, {"error": "no such collection"}, []
            collection = self.collections[name]
            limit = int(query.get("limit") or query.get("pageSize") or 100)
            if name == "objects":
                listing = sorted(collection.records.values(), key=lambda r: r["id"])
                start = 0
                token = query.get("pageToken")
                if token:
                    epoch, _, after = base64.urlsafe_b64decode(token).decode().partition("|")
                    if int(epoch) != self.epoch:
                        return 400, {"error": "invalid page token"}, []
                    start = next((i for i, r in enumerate(listing) if r["id"] > after), len(listing))
                page = listing[start : start + limit]
                body: dict[str, Any] = {"items": page}
                if start + limit < len(listing):
                    body["next"] = _token(self.epoch, page[-1]["id"])
                return 200, body, []
            listing = collection.by_cursor()
            since = query.get("updated_after")
            start = 0 if since is None else _after(listing, (since, "\uffff"))
            if name == "links":
                top = int(query.get("$top", 100))
                offset = int(query.get("$skiptoken", 0))
                page = listing[start + offset : start + offset + top]
                body = {"value": page}
                if start + offset + top < len(listing):
                    following = {**query, "$skiptoken": str(offset + top)}
                    body["@odata.nextLink"] = f"links?{urlencode(following)}"  # relative, as CAP sends it
                return 200, body, []
            if name == "pages":
                size = int(query.get("per_page", 100))
                number = int(query.get("page", 1))
                first = start + (number - 1) * size
                links = []
                if first + size < len(listing):
                    following = {**query, "page": str(number + 1)}
                    links.append(("Link", f'<{self.url}/pages?{urlencode(following)}>; rel="next"'))
                return 200, listing[first : first + size], links
            if name == "customers":
                after = query.get("starting_after")
                if after is not None:
                    position = next((i for i, r in enumerate(listing) if r["id"] == after), None)
                    if position is None:
                        return 400, {"error": f"no such record: {after}"}, []
                    start = max(start, position + 1)
                page = listing[start : start + limit]
                return 200, {"data": page, "has_more": start + limit < len(listing)}, []
            if name == "orders":
                offset = int(query.get("offset", 0))
                page = listing[start + offset : start + offset + limit]
                return 200, {"data": page, "total": len(listing) - start}, []
            token = query.get("pageToken")
            if token:
                epoch, _, key = base64.urlsafe_b64decode(token).decode().partition("|")
                if int(epoch) != self.epoch:
                    return 400, {"error": "invalid page token"}, []
                moment, _, record_id = key.partition(" ")
                start = max(start, _after(listing, (moment, record_id)))
            page = listing[start : start + limit]
            body = {"items": page}
            if start + limit < len(listing):
                body["nextPageToken"] = _token(self.epoch, f"{page[-1]['updated_at']} {page[-1]['id']}")
            return 200, body, []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> MovingServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _after(listing: list[dict[str, Any]], key: tuple[str, str]) -> int:
    lo, hi = 0, len(listing)
    while lo < hi:
        mid = (lo + hi) // 2
        if (listing[mid]["updated_at"], listing[mid]["id"]) <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _token(epoch: int, key: str) -> str:
    return base64.urlsafe_b64encode(f"{epoch}|{key}".encode()).decode()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request (what these tests do) resets its connection


class _Handler(JSONHandler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        status, body, headers = self.server.moving.page(parts.path, dict(parse_qsl(parts.query)))  # type: ignore[attr-defined]
        self._send(status, body, headers)


def connector(base_url: str, page_size: int = 50) -> Any:
    """The declarative connector for a :class:`MovingServer` at ``base_url``."""
    from pydantic import BaseModel

    import tapyard

    class Record(BaseModel):
        id: str
        name: str
        version: int
        updated_at: dt.datetime
        deleted: bool

    sorted_stream = {"schema_model": Record, "cursor_field": "updated_at", "cursor_param": "updated_after",
                     "is_sorted": True, "deletes": "vendor"}
    return tapyard.RestConnector(
        name="moving",
        base_url=base_url,
        streams=[
            tapyard.RestStream(
                name="customers", path="/customers", **sorted_stream,
                paginator={"kind": "cursor", "page_size": page_size},
            ),
            tapyard.RestStream(
                name="orders", path="/orders", **sorted_stream,
                paginator={"kind": "offset", "page_size": page_size, "total_path": "total"},
            ),
            tapyard.RestStream(
                name="tokens", path="/tokens", record_path="items", **sorted_stream,
                paginator={"kind": "page_token", "token_path": "nextPageToken", "token_param": "pageToken",
                           "limit_param": "pageSize", "page_size": page_size},
            ),
            tapyard.RestStream(
                name="links", path="/links", record_path="value", **sorted_stream,
                params={"$top": page_size}, paginator={"kind": "next_url", "next_path": "@odata.nextLink"},
            ),
            tapyard.RestStream(
                name="pages", path="/pages", record_path=None, **sorted_stream,
                params={"per_page": page_size}, paginator={"kind": "link_header"},
            ),
            tapyard.RestStream(
                name="objects", path="/objects", record_path="items", schema_model=Record,
                cursor_field="updated_at", ordered_by_cursor=False, deletes="listing",
                paginator={"kind": "page_token", "token_path": "next", "token_param": "pageToken",
                           "limit_param": "pageSize", "page_size": page_size},
            ),
        ],
    )


if __name__ == "__main__":
    import tapyard

    url, destination = sys.argv[1], sys.argv[2]
    names = [a for a in sys.argv[3:] if not a.startswith("--")]
    result = tapyard.sync(
        connector(url),
        to=destination,
        streams=names[0].split(",") if names else None,
        full_refresh="--full-refresh" in sys.argv,
        concurrency=2,
    )
    print(json.dumps(result.to_json()))
    sys.exit(0 if result.ok else 1)

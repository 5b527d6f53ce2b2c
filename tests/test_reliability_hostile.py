"""The reliability suite, part one: a hostile HTTP server, one fault mode at a time.

Each case points a real sync at a real local server (tests/scripted_server.py)
that misbehaves in one way: 5xx storms, 429s with absurd or malformed
``Retry-After`` and reset headers, bodies that drip, stall, stop short, run
long, or are not JSON, JSON that holds lone surrogates, NULs, records that are
not objects, cursors that repeat, cycle or never end, redirect loops, lying
encodings. Whatever the server does, the sync must end within the case's bound
in one of two ways: success (every record it kept written, bad records in the
dead letters), or a failed stream whose error is one of tapyard's own lines:
bounded, on one line, with no raw control characters, and never the catch-all
"unexpected" (a bug). The same holds through the CLI: exit code, one
``Error:`` line, no traceback (``tapyard sync`` in this process, with the
connector registered as a plugin).

Run them alone with ``pytest -m reliability``.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tapyard
from tapyard import RestConnector, RestStream
from tapyard.testing import run_cli
from tests.scripted_server import Received, Reply, ScriptedServer

pytestmark = pytest.mark.reliability

#: the longest error line a fault may produce, and each case's time bound
MAX_ERROR = 1000
BOUND = 25.0
#: a fast policy: few attempts, short backoff and timeouts, so storms end quickly
FAST = {
    "max_attempts": 3,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "read_timeout": 1.0,
    "connect_timeout": 1.0,
    "request_deadline": 3.0,
    "max_retry_after": 5.0,
    "circuit_cooldown": 0.5,
    "max_page_bytes": 1024 * 1024,
}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")

_names = itertools.count()


class Item(BaseModel):
    id: int
    name: str | None = None


def connector(url: str) -> RestConnector:
    return RestConnector(
        name=f"hostile{next(_names)}",
        base_url=url,
        streams=[
            RestStream(
                name="items",
                path="/items",
                schema_model=Item,
                paginator={
                    "kind": "cursor",
                    "cursor_path": "next",
                    "cursor_param": "cursor",
                    "has_more_field": None,
                },
            )
        ],
    )


def ok_page(ids: list[int], cursor: str | None = None) -> Reply:
    return Reply.json({"data": [{"id": i, "name": f"n{i}"} for i in ids], "next": cursor})


def raw(body: bytes | str, status: int = 200, content_type: str = "application/json", **kw: Any) -> Reply:
    return Reply(status, [("Content-Type", content_type)], body, **kw)


def first_then_ok(fault: Reply) -> Callable[[Received], Reply]:
    """The fault on the first page request, then a good last page (a fault that passes)."""
    seen = itertools.count()

    def handler(request: Received) -> Reply:
        return fault if next(seen) == 0 else ok_page([1, 2])

    return handler


def cursor_handler(next_of: Callable[[str | None], str | None]) -> Callable[[Received], Reply]:
    def handler(request: Received) -> Reply:
        cursor = request.query.get("cursor", [None])[0]
        return ok_page([int(time.monotonic_ns() % 1_000_000)], next_of(cursor))

    return handler


def same_page_forever(request: Received) -> Reply:
    return ok_page([1, 2], "again")


def endless(request: Received) -> Reply:
    n = int(request.query.get("cursor", ["0"])[0]) + 1
    return ok_page([n], str(n))


DAY = 86400

#: fault mode -> what the server answers (every request, unless a handler says otherwise)
FAULTS: dict[str, Reply | Callable[[Received], Reply]] = {
    # 5xx storms
    "500 storm": Reply.json({"error": "boom"}, status=500),
    "502 storm": raw("<html><body>Bad Gateway</body></html>", 502, "text/html"),
    "503 storm, no Retry-After": Reply(503),
    "504 storm": Reply(504),
    "one 500, then fine": first_then_ok(Reply(500)),
    # 429s and rate-limit headers
    "429 Retry-After a day away": Reply(429, [("Retry-After", str(DAY))]),
    "429 Retry-After 10^20": Reply(429, [("Retry-After", "1" + "0" * 20)]),
    "429 Retry-After negative": first_then_ok(Reply(429, [("Retry-After", "-5")])),
    "429 Retry-After garbage": first_then_ok(Reply(429, [("Retry-After", "soon\x1b[31m")])),
    "429 Retry-After NaN": first_then_ok(Reply(429, [("Retry-After", "NaN")])),
    "429 Retry-After date in the past": first_then_ok(
        Reply(429, [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")])
    ),
    "429 Retry-After date a year away": Reply(429, [("Retry-After", "Sun, 21 Oct 2040 07:28:00 GMT")]),
    "429 storm, bare": Reply(429),
    "200 with reset a day away": Reply.json(
        {"data": [{"id": 1}], "next": "x"},
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(DAY)},
    ),
    "200 with reset inf": first_then_ok(
        Reply.json({"data": [{"id": 1}], "next": "x"},
                   headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "inf"})
    ),
    "200 with reset 1e400": first_then_ok(
        Reply.json({"data": [{"id": 1}], "next": "x"},
                   headers={"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "1e400"})
    ),
    "200 with RateLimit fields malformed": first_then_ok(
        Reply.json({"data": [{"id": 1}], "next": "x"},
                   headers={"RateLimit": 'r=;t=;;"', "RateLimit-Policy": "q=0;w=0"})
    ),
    # bodies
    "drip": Reply.json({"data": [{"id": 1}], "next": None}, drip=0.4, drip_bytes=1),
    "silence": Reply.json({"data": [], "next": None}, delay=10.0),
    "connection reset": Reply(reset=True),
    "truncated body": raw(b'{"data": [{"id": 1}, {"id"', content_length=200),
    "oversized body": raw(b'{"data": [' + b'{"id": 1},' * 300_000 + b'{"id": 2}], "next": null}'),
    "malformed JSON": raw(b'{"data": [1, 2,, ]}'),
    "empty 200": raw(b""),
    "HTML 200": raw("<!doctype html><title>Login</title><p>Please sign in", 200, "text/html"),
    "HTML 500": raw("<!doctype html><title>Oops</title><p>Server error", 500, "text/html"),
    "invalid UTF-8": raw(b'{"data": [{"id": 1, "name": "\xff\xfe"}], "next": null}'),
    "lone surrogate": raw(b'{"data": [{"id": 1, "name": "a\\ud800b"}], "next": null}'),
    "NUL in a string": raw(b'{"data": [{"id": 1, "name": "a\\u0000b"}], "next": null}'),
    "raw NUL bytes": raw(b'{"data": [{"id": 1}]}\x00\x00\x00'),
    "escape sequences in a string": raw(b'{"data": [{"id": 1, "name": "\\u001b[2J\\u001b]0;pwned\\u0007"}], "next": null}'),
    "deep nesting": raw(b'{"data": [{"id": 1, "name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"),
    "huge number": raw(b'{"data": [{"id": 1e400}], "next": null}'),
    "top level is a list": raw(b'[{"id": 1}]'),
    "data is not a list": raw(b'{"data": {"id": 1}, "next": null}'),
    "records that are not objects": raw(b'{"data": [1, "two", null, [3], {"id": 4}], "next": null}'),
    "gzip that is not gzip": Reply(200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
                                   b'{"data": [], "next": null}'),
    "wrong content type": raw(b'{"data": [{"id": 1}], "next": null}', content_type="text/plain"),
    # cursors
    "repeated cursor": same_page_forever,
    "cyclic cursor": cursor_handler(lambda c: {"a": "b", "b": "a"}.get(c or "", "a")),
    "endless pages": endless,
    # status codes that are not retryable
    "401": Reply.json({"error": "invalid_token"}, status=401),
    "403 HTML": raw("<html><body>Forbidden</body></html>", 403, "text/html"),
    "404": Reply.json({"error": "no such thing"}, status=404),
    "redirect loop": Reply.redirect("/items"),
}


def check_error_line(line: str) -> None:
    assert "unexpected" not in line.lower(), line
    assert "\n" not in line and "\r" not in line, line
    assert len(line) <= MAX_ERROR, len(line)
    assert not CONTROL.search(line), repr(line)
    assert "Traceback" not in line, line


@pytest.fixture
def hostile() -> Iterator[Callable[[str], str]]:
    with ScriptedServer() as server:

        def arm(fault: str) -> str:
            server.always("/items", FAULTS[fault])
            return server.url

        yield arm


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_ends_in_success_or_one_clear_line(
    fault: str, hostile: Callable[[str], str], tmp_path: Path
) -> None:
    url = hostile(fault)
    options: dict[str, Any] = {"http": FAST, "max_pages": 200}
    started = time.monotonic()
    result = tapyard.sync(connector(url), {}, to=f"sqlite:///{tmp_path / 'x.db'}", **options)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"{fault}: took {elapsed:.1f}s"
    for stream in result.streams:
        if stream.status == "failed":
            assert stream.error
            check_error_line(stream.error)
        else:
            assert stream.status in ("ok", "succeeded", "success", "done", "partial"), stream.status


#: a few faults through the CLI, which adds the exit code and the Error: line
CLI_FAULTS = [
    "429 Retry-After 10^20",
    "HTML 200",
    "malformed JSON",
    "escape sequences in a string",
    "cyclic cursor",
    "401",
    "truncated body",
]


class _Plugin:
    def __init__(self, conn: RestConnector) -> None:
        self.conn = conn

    @tapyard.hookimpl
    def tapyard_register_connectors(self, register: Any) -> None:
        register(self.conn)


@pytest.mark.parametrize("fault", CLI_FAULTS)
def test_the_cli_gives_one_line_and_no_traceback(
    fault: str, hostile: Callable[[str], str], register_plugin: Any, tmp_path: Path
) -> None:
    conn = connector(hostile(fault))
    register_plugin(_Plugin(conn), f"hostile-cli-{next(_names)}")
    started = time.monotonic()
    result = run_cli("sync", conn.name, "--to", f"sqlite:///{tmp_path / 'x.db'}", "--max-pages", "200")
    assert time.monotonic() - started < BOUND
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    if result.exit_code == 0:
        assert not errors
    else:
        assert result.exit_code in (1, 2), result.exit_code
        for line in result.stderr.splitlines():
            check_error_line(line)


"""Every wait and every read a server can cause ends within a bound, with a clear line.

Each test points a real sync at a real local server (tests/scripted_server.py)
that misbehaves in one way: a reset a day away on a 200, a cursor that never
ends, one that cycles, a page served again. Each must end in seconds with the
stream failed and a message that says what happened; none may hang.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tapyard
from tapyard import ConfigError, RestConnector, RestStream
from tests.scripted_server import Received, Reply, ScriptedServer

pytestmark = pytest.mark.reliability


class Item(BaseModel):
    id: int


_names = itertools.count()


def connector(url: str, **options: Any) -> RestConnector:
    """A connector over ``/items``: ``{"data": [...], "next": cursor}``, a null cursor at the end.

    Each gets a name of its own, so that no test shares another's limiter.
    """
    return RestConnector(
        name=f"bounds{next(_names)}",
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
        **options,
    )


def page(ids: list[int], cursor: str | None, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json({"data": [{"id": i} for i in ids], "next": cursor}, headers=headers or {})


def sync(url: str, tmp_path: Path, **kwargs: Any) -> tapyard.SyncResult:
    options = kwargs.pop("connector_options", {})
    config = kwargs.pop("config", {})
    started = time.monotonic()
    result = tapyard.sync(connector(url, **options), config, to=f"sqlite:///{tmp_path / 'x.db'}", **kwargs)
    assert time.monotonic() - started < 20, "a bounded failure took too long"
    return result


def failure(result: tapyard.SyncResult) -> str:
    assert not result.ok
    (stream,) = result.streams
    assert stream.status == "failed" and stream.error
    assert "\n" not in stream.error
    return stream.error


# Waits


@pytest.mark.parametrize(
    "reset",
    [
        lambda: "86400",  # seconds until reset
        lambda: f"{time.time() + 86400:.0f}",  # whole epoch seconds
        lambda: f"{time.time() + 86400:.3f}",  # fractional epoch seconds
    ],
)
def test_a_reset_a_day_away_on_a_200_fails_the_stream_instead_of_sleeping(
    tmp_path: Path, reset: Any
) -> None:
    with ScriptedServer() as server:
        server.always(
            "/items",
            lambda r: page([1, 2], "next", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset()}),
        )
        result = sync(server.url, tmp_path)
        message = failure(result)
        assert len(server.requests) == 1  # the second request was never sent
    assert "wait of 86" in message and "120s cap" in message and "max_retry_after" in message
    assert result.records == 2  # the page that came is kept


def test_the_wait_cap_is_configurable_per_run(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.always(
            "/items", page([1], "next", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30.5"})
        )
        message = failure(sync(server.url, tmp_path, rate_limit={"max_wait": 5}))
    assert "wait of 3" in message and "5s cap" in message


def test_a_retry_after_a_day_away_fails_at_once(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.always("/items", Reply(429, {"Retry-After": "86400"}))
        message = failure(sync(server.url, tmp_path))
    assert "86400s" in message and "cap" in message


# Pagination


def test_an_endless_cursor_stops_at_the_page_cap(tmp_path: Path) -> None:
    counter = itertools.count(1)

    def endless(request: Received) -> Reply:
        n = next(counter)
        return page([n], f"c{n}")

    with ScriptedServer() as server:
        server.always("/items", endless)
        result = sync(server.url, tmp_path, max_pages=25)
        message = failure(result)
        assert len(server.requests) == 26
    assert "more than 25 pages" in message and "--max-pages" in message
    assert result.records == 25


@pytest.mark.parametrize("cycle", [["A", "B", "A"], ["A", "A"], ["A", "B", "C", "B"]])
def test_a_cursor_that_repeats_or_cycles_is_an_error(tmp_path: Path, cycle: list[str]) -> None:
    # Each page has new records, so only the cursor gives the loop away.
    counter = itertools.count(1)

    def cycling(request: Received) -> Reply:
        n = next(counter)
        return page([n], cycle[(n - 1) % len(cycle)])

    with ScriptedServer() as server:
        server.always("/items", cycling)
        message = failure(sync(server.url, tmp_path))
        assert len(server.requests) <= len(cycle) + 1
    # The paginator sees a cursor handed back at once; the engine, any cycle.
    assert "already been at" in message or "handed back the position" in message


def test_a_page_that_repeats_the_previous_one_is_an_error_not_a_silent_end(tmp_path: Path) -> None:
    counter = itertools.count(1)

    def stuck(request: Received) -> Reply:
        # New cursors, the same records: the server ignores the position.
        return page([1, 2, 3], f"c{next(counter)}")

    with ScriptedServer() as server:
        server.always("/items", stuck)
        result = sync(server.url, tmp_path)
        message = failure(result)
        assert len(server.requests) == 2
    assert "repeats the page before it" in message


def test_a_cursor_handed_back_unchanged_after_records_is_an_error(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("/items", page([1, 2], "A"), then=page([3, 4], "A"))
        message = failure(sync(server.url, tmp_path))
    assert "handed back the position it was just asked for" in message


def test_a_normal_stream_is_not_mistaken_for_a_loop(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("/items", page([1, 2], "A"), page([3, 4], "B"), page([], None))
        result = sync(server.url, tmp_path, max_pages=3)
    assert result.ok and result.records == 4


# What a user controls


def paced_pages(arrived: list[float], last: int = 31) -> Any:
    """A handler serving ``last`` one-record pages, noting when each request arrived."""
    counter = itertools.count(1)

    def pages(request: Received) -> Reply:
        arrived.append(time.monotonic())
        n = next(counter)
        return page([n], f"c{n}" if n < last else None)

    return pages


def test_a_rate_in_the_config_is_a_ceiling_that_is_reached(tmp_path: Path) -> None:
    """Measured where it matters, at the server: no stretch of the run has more
    requests than 20/s allows, and the run is not much slower than the pace plus
    what the same requests take unpaced on this machine now (a loaded CI machine
    slows both alike; a wall-clock bound alone failed there)."""
    unpaced: list[float] = []
    with ScriptedServer() as server:
        server.always("/items", paced_pages(unpaced))
        (tmp_path / "unpaced").mkdir()
        assert sync(server.url, tmp_path / "unpaced").ok
    arrived: list[float] = []
    with ScriptedServer() as server:
        server.always("/items", paced_pages(arrived))
        result = sync(server.url, tmp_path, config={"rate_limit": {"rate": 20}})
    assert result.ok and len(arrived) == 31
    # The ceiling: 20/s with no burst, so any k gaps in a row span k/20 s. A request
    # that waited for the processor after its grant arrives late and shortens the
    # gap after it, never a stretch of ten: 0.1 s of slack there. A limiter letting
    # through a burst of five, or pacing at 25/s, fails this.
    for k in (10, 30):
        shortest = min(arrived[i + k] - arrived[i] for i in range(len(arrived) - k))
        assert shortest >= k / 20 - 0.1, (k, shortest)
    # Reached: the pace (1.5 s) plus what the unpaced run needed, plus 0.75 s.
    # Pacing at 10/s (3 s) fails this unless the machine is so slow that the
    # unpaced run itself took 0.75 s.
    span, natural = arrived[-1] - arrived[0], unpaced[-1] - unpaced[0]
    assert span <= 1.5 + natural + 0.75, (span, natural)


def test_rate_limit_settings_that_are_not_valid_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rate_limit") as caught:
        sync("http://127.0.0.1:9", tmp_path, config={"rate_limit": {"rate": -1}})
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="rate_limit"):
        sync("http://127.0.0.1:9", tmp_path, config={"rate_limit": {"speed": 3}})


def test_header_learning_can_be_turned_off(tmp_path: Path) -> None:
    arrived: list[float] = []
    counter = itertools.count(1)

    def slow_headers(request: Received) -> Reply:
        arrived.append(time.monotonic())
        n = next(counter)
        # "Nothing left for two seconds" on every page: obeyed, the 4 gaps take 8 s.
        return page([n], f"c{n}" if n < 5 else None, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2.0"})

    with ScriptedServer() as server:
        server.always("/items", slow_headers)
        result = sync(server.url, tmp_path, rate_limit={"learn": False})
    # at the server, not the wall clock of the whole run: any gap obeyed is 2 s
    gaps = [b - a for a, b in itertools.pairwise(arrived)]
    assert result.ok and len(gaps) == 4 and max(gaps) < 1.5, gaps


def test_concurrency_per_credential_bounds_requests_in_flight(tmp_path: Path) -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def slow(request: Received) -> Reply:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return page([1], None)

    streams = [
        RestStream(name=f"s{i}", path="/items", schema_model=Item) for i in range(4)
    ]
    with ScriptedServer() as server:
        server.always("/items", slow)
        conn = RestConnector(name=f"bounds{next(_names)}", base_url=server.url, streams=streams)
        result = tapyard.sync(
            conn, {"rate_limit": {"concurrency": 1}}, to=f"sqlite:///{tmp_path / 'c.db'}", concurrency=4
        )
    assert result.ok, [s.error for s in result.streams]
    assert state["most"] == 1

"""The hand-written baseline: one httpx.Client, orjson, a pagination loop, no destination.

What an engineer would write in an afternoon: it sleeps the ``Retry-After``
of a 429, retries a 5xx or a malformed page after a short backoff, and
counts records. With ``concurrency`` > 1 the streams are read by that many
threads sharing the client. ``options.sink`` (set by baseline_sqlite) gets
every page.

With ``options.obey`` it also obeys the rate-limit headers, as their
documentation says to: when a response says no request remains
(``X-RateLimit-Remaining: 0``, or ``r=0`` in the IETF ``RateLimit`` field), it
sleeps until the reset (``X-RateLimit-Reset`` as epoch seconds or as seconds
from now, the IETF ``t``); a 429 without ``Retry-After`` waits a second.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
from _common import Timer, emit, load_job, path_of, version_of

MAX_ATTEMPTS = 8
BACKOFF = 0.05


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        self.retries = 0

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


def reset_wait(headers: httpx.Headers) -> float:
    """Seconds until the reset when the headers say nothing remains, else 0."""
    remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
    ietf = headers.get("ratelimit")
    if ietf:
        found = dict(re.findall(r"\b([rt])=(\d+)", ietf))
        remaining, reset = found.get("r"), found.get("t")
    if remaining is None or reset is None or int(float(remaining)) > 0:
        return 0.0
    value = float(reset)
    return max(0.0, value - time.time()) if value > 1e9 else value


def get_page(client: httpx.Client, url: str, params: dict[str, Any] | None, counters: Counters,
             obey: bool = False) -> Any:
    failures = 0
    while True:
        counters.add("requests")
        response = client.get(url, params=params)
        status = response.status_code
        if status == 429:
            counters.add("throttled")
            time.sleep(float(response.headers.get("retry-after", "1")))
            continue
        if obey:
            time.sleep(reset_wait(response.headers))
        if status >= 500:
            failures += 1
        elif status != 200:
            response.raise_for_status()
        else:
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                failures += 1
        if failures >= MAX_ATTEMPTS:
            raise RuntimeError(f"GET {url} failed {failures} times")
        counters.add("retries")
        time.sleep(BACKOFF * 2 ** (failures - 1))


def read_stream(
    client: httpx.Client,
    job: dict[str, Any],
    stream: dict[str, Any],
    counters: Counters,
    sink: Callable[[str, list[dict[str, Any]]], None] | None,
) -> int:
    variant = job.get("variant", "cursor")
    url: str = path_of(job, stream)
    params: dict[str, Any] | None = {"limit": job["page_size"], **stream["params"]}
    if variant == "offset":
        assert params is not None
        params["offset"] = 0
    count = 0
    while True:
        body = get_page(client, url, params, counters, bool(job.get("options", {}).get("obey")))
        data = body["data"]
        count += len(data)
        if sink is not None and data:
            sink(stream["name"], data)
        if variant == "cursor":
            if not body.get("has_more") or not data:
                return count
            assert params is not None
            params["starting_after"] = data[-1]["id"]
        elif variant == "offset":
            assert params is not None
            params["offset"] += len(data)
            if not data or params["offset"] >= body["total"]:
                return count
        elif variant == "token":
            token = body.get("nextPageToken")
            if not token:
                return count
            assert params is not None
            params["page_token"] = token
        else:
            if not body.get("next"):
                return count
            url, params = body["next"], None


def run(client_name: str, sink: Callable[[str, list[dict[str, Any]]], None] | None = None,
        setup: Callable[[dict[str, Any]], Any] | None = None,
        finish: Callable[[], dict[str, Any]] | None = None) -> None:
    job = load_job()
    counters = Counters()
    if setup is not None:
        setup(job)
    per_stream: dict[str, int] = {}
    with Timer() as timer, httpx.Client(
        base_url=job["base_url"],
        headers={"Authorization": f"Bearer {job['token']}"},
        timeout=60.0,
    ) as client:
        workers = max(1, min(int(job.get("concurrency", 1)), len(job["streams"])))
        if workers == 1:
            for stream in job["streams"]:
                per_stream[stream["name"]] = read_stream(client, job, stream, counters, sink)
        else:
            with ThreadPoolExecutor(workers) as pool:
                futures = {
                    s["name"]: pool.submit(read_stream, client, job, s, counters, sink) for s in job["streams"]
                }
                per_stream = {name: f.result() for name, f in futures.items()}
        extra = finish() if finish is not None else {}
    emit(
        client_name,
        timer,
        sum(per_stream.values()),
        streams=per_stream,
        requests=counters.requests,
        throttled=counters.throttled,
        retries=counters.retries,
        versions={"httpx": version_of("httpx"), "orjson": version_of("orjson")},
        **extra,
    )


if __name__ == "__main__":
    run("baseline_httpx")

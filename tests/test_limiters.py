"""The Limiter protocol and its stores: in-process, and a SQLite file shared by processes."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tapyard.http._limiters import (
    Limiter,
    LimiterStore,
    MemoryLimiterStore,
    SharedLimiter,
    SqliteBudget,
    SqliteLimiterStore,
    limiter_key,
)
from tapyard.http._ratelimit import RateLimiter, RateLimitSettings, RateLimitWaitTooLong
from tapyard.testing import RedisServer
from tests.test_ratelimit import max_in_window


def test_both_stores_and_both_limiters_meet_the_protocols(tmp_path: Path) -> None:
    memory, sqlite = MemoryLimiterStore(), SqliteLimiterStore(tmp_path / "limits.db")
    assert isinstance(memory, LimiterStore) and isinstance(sqlite, LimiterStore)
    settings = RateLimitSettings(rate=5)
    assert isinstance(memory.limiter("k", settings), Limiter)
    shared = sqlite.limiter("k", settings)
    assert isinstance(shared, SharedLimiter) and isinstance(shared, Limiter)
    # a credential with no name stays in this process
    assert isinstance(sqlite.limiter("k2", settings, scope="process"), RateLimiter)
    sqlite.close()


def test_a_store_gives_one_limiter_per_key_with_the_latest_settings() -> None:
    store = MemoryLimiterStore()
    first = store.limiter("stripe|prod", RateLimitSettings(rate=5, burst=2))
    again = store.limiter("stripe|prod", RateLimitSettings(rate=9))
    other = store.limiter("stripe|test", RateLimitSettings(rate=5))
    assert first is again and first is not other
    assert isinstance(first, RateLimiter) and first.rate == 9
    # two stores share nothing: a store is an object handed to a run, not a global
    assert MemoryLimiterStore().limiter("stripe|prod", RateLimitSettings(rate=5)) is not first


def test_limiter_key_shares_only_named_credentials() -> None:
    assert limiter_key("aws", "prod", "http://x") == ("aws|prod", "credential")
    assert limiter_key("aws", None, "http://x") == ("aws|http://x", "process")


def _grants(where: str, key: str, rate: float, burst: float, count: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """In a process of its own: ``count`` grants from the store at ``where`` (a SQLite
    file, or a ``redis://`` URL), their wall times put on ``queue``."""
    from tapyard.http import RedisLimiterStore

    store = RedisLimiterStore(where) if where.startswith("redis://") else SqliteLimiterStore(where)
    limiter = store.limiter(key, RateLimitSettings(rate=rate, burst=burst))
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(time.time())
    store.close()
    queue.put(times)


def _in_processes(target: object, runs: list[tuple[object, ...]]) -> list[list[float]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=target, args=(*args, queue)) for args in runs]  # type: ignore[arg-type]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    return results


def test_processes_sharing_a_file_share_one_budget(tmp_path: Path) -> None:
    """Three processes, 20 grants each, one credential at 20/s with a burst of 2:
    together they never pass 20 * W + 2 grants in any window of W seconds (each
    alone would take 20/s, three times the budget)."""
    path = str(tmp_path / "limits.db")
    results = _in_processes(_grants, [(path, "conn|cred", 20.0, 2.0, 20)] * 3)
    merged = sorted(t for times in results for t in times)
    for window in (0.5, 1.0, 2.0):
        # + 1: a time is taken when acquire() returns, a few ms after the grant on a busy machine
        assert max_in_window(merged, window) <= 20 * window + 2 + 1, window
    # and the budget is used: 60 grants in about (60 - 2) / 20 = 2.9 s
    # one budget: at least (60 - 2) / 20 s (each alone would take 1 s); a busy machine may take longer
    assert merged[-1] - merged[0] >= 2.9 * 0.95


def test_other_keys_do_not_share(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.db")
    results = _in_processes(_grants, [(path, "conn|a", 10.0, 1.0, 10), (path, "conn|b", 10.0, 1.0, 10)])
    for times in results:
        # each at its own 10/s: about 0.9 s for 10 grants, not twice that
        assert 0.9 * 0.95 <= times[-1] - times[0] < 1.6


def test_a_hold_in_one_store_holds_back_another(tmp_path: Path) -> None:
    """A 429's wait seen by one process holds back every process of the credential."""
    first, second = SqliteLimiterStore(tmp_path / "l.db"), SqliteLimiterStore(tmp_path / "l.db")
    a = first.limiter("c|x", RateLimitSettings())
    b = second.limiter("c|x", RateLimitSettings())
    a.learn({"RateLimit-Policy": "1000;w=1"})  # known pace: no probe for the first response
    b.learn({"RateLimit-Policy": "1000;w=1"})
    a.penalize(0.6)
    started = time.monotonic()
    b.acquire()
    assert time.monotonic() - started >= 0.55
    first.close()
    second.close()


def test_a_learned_spacing_spaces_every_process(tmp_path: Path) -> None:
    """The spacing one process learned from a policy header spaces the grants of all."""
    budget = SqliteBudget(tmp_path / "l.db")
    stamps = [
        budget.reserve("c|x", rate=None, burst=1, spacing=0.05, max_wait=None) for _ in range(10)
    ]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) == pytest.approx(0.05, abs=1e-6)
    budget.close()


def test_a_wait_past_the_cap_raises_and_reserves_nothing(tmp_path: Path) -> None:
    budget = SqliteBudget(tmp_path / "l.db")
    budget.hold("c|x", time.time() + 600, "the server's Retry-After")
    with pytest.raises(RateLimitWaitTooLong, match="Retry-After asks to wait 600s, more than the 5s cap"):
        budget.reserve("c|x", rate=10, burst=1, spacing=0, max_wait=5)
    assert budget.peek("c|x", rate=10, burst=1, spacing=0) == pytest.approx(600, abs=1)
    # a shorter hold later does not shorten it
    budget.hold("c|x", time.time() + 1, "later")
    assert budget.peek("c|x", rate=None, burst=1, spacing=0) > 590
    budget.close()


def test_the_static_bucket_keeps_its_promise_on_a_virtual_clock(tmp_path: Path) -> None:
    """rate * W + burst at most in any window, and a busy bucket reaches it."""
    now = [1000.0]
    budget = SqliteBudget(tmp_path / "l.db", clock=lambda: now[0])
    grants = []
    for _ in range(200):
        at = budget.reserve("k", rate=5, burst=3, spacing=0, max_wait=None)
        now[0] = max(now[0], at)
        grants.append(at)
    assert max_in_window(grants, 10.0) == 5 * 10 + 3
    budget.close()


def test_a_grant_waits_for_the_one_before_it_to_reach_the_wire(tmp_path: Path) -> None:
    """Grants are taken when they may go now: the next waits until the grant before it
    is reported sent (a process descheduled between its grant and the wire must not let
    the next request arrive right behind it), and is spaced from that send; a process
    that has learned nothing is spaced by what the others learned; and before anyone
    has learned from a response, a second grant waits for one."""
    from tapyard.http import Ask

    now = [1000.0]
    budget = SqliteBudget(tmp_path / "l.db", clock=lambda: now[0])
    learned = Ask(rate=None, burst=1, spacing=0.01, max_wait=None, reports=True)
    wait, token, since = budget.take("k", learned)
    assert wait == 0 and token and since == -1
    now[0] += 0.05  # well past the spacing, but the request has not gone out yet
    wait, none, _ = budget.take("k", learned)
    assert 0 < wait <= 0.001 and none == ""
    budget.sent("k", token)  # it goes out now: the next is spaced from here
    wait, _, ticket = budget.take("k", learned)
    assert wait == pytest.approx(0.01) and ticket == 1  # first in line
    now[0] += 0.01
    again = Ask(rate=None, burst=1, spacing=0.0, max_wait=None, reports=True, ticket=int(ticket))
    wait, token, since = budget.take("k", again)
    assert wait == 0 and since == pytest.approx(0.01)
    # a newcomer that learned nothing is spaced by the 10 ms the others learned
    budget.sent("k", token)
    assert budget.take("k", Ask(rate=None, burst=1, spacing=0.0, max_wait=None))[0] == pytest.approx(0.01)
    # a fresh key: nobody has seen a response, so the second grant waits for one
    fresh = Ask(rate=None, burst=1, spacing=0.0, max_wait=None, answered=False)
    assert budget.take("fresh", fresh)[0] == 0
    assert budget.take("fresh", fresh)[0] > 0
    assert budget.take("fresh", Ask(rate=None, burst=1, spacing=0.0, max_wait=None))[0] == 0
    assert budget.take("fresh", fresh)[0] == 0  # known now
    budget.close()


# -- Redis: a fleet's budget ----------------------------------------------------------------


def test_processes_sharing_a_redis_server_share_one_budget(redis: RedisServer) -> None:
    """Five processes, 15 grants each, one credential at 25/s with a burst of 3, the
    budget in Redis (atomic Lua scripts): together they never pass 25 * W + 3 in any
    window of W seconds, and use it (75 grants in about (75 - 3) / 25 s)."""
    key = f"conn|{time.time_ns()}"
    results = _in_processes(_grants, [(redis.url, key, 25.0, 3.0, 15)] * 5)
    merged = sorted(t for times in results for t in times)
    for window in (0.5, 1.0, 2.0):
        # + 1: a time is taken when acquire() returns, a few ms after the grant on a busy machine
        assert max_in_window(merged, window) <= 25 * window + 3 + 1, window
    # one budget: at least (75 - 3) / 25 s (each alone would take 0.6 s)
    assert merged[-1] - merged[0] >= 72 / 25 * 0.95


def test_a_hold_in_redis_holds_back_every_worker_and_a_long_one_is_refused(redis: RedisServer) -> None:
    redis_url = redis.url
    from tapyard.http import RedisBudget, RedisLimiterStore

    first, second = RedisLimiterStore(redis_url), RedisLimiterStore(redis_url)
    key = f"c|{time.time_ns()}"
    a = first.limiter(key, RateLimitSettings())
    b = second.limiter(key, RateLimitSettings(max_wait=5))
    a.learn({"RateLimit-Policy": "1000;w=1"})
    b.learn({"RateLimit-Policy": "1000;w=1"})
    a.penalize(0.6)
    started = time.monotonic()
    b.acquire()
    assert time.monotonic() - started >= 0.55
    budget = RedisBudget(redis_url)
    budget.hold(key, time.time() + 600, "the server's Retry-After")
    with pytest.raises(RateLimitWaitTooLong, match="Retry-After asks to wait 600s, more than the 5s cap"):
        b.acquire()
    assert budget.peek(key, rate=None, burst=1, spacing=0) == pytest.approx(600, abs=2)
    for closing in (budget, first, second):
        closing.close()


def test_the_limiter_url_gives_every_run_handed_no_store_the_fleets_redis(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TAPYARD_LIMITER_URL=redis://...``: the default store of every run (the CLI, the
    scheduler, a Celery worker) is that Redis server; a 429's hold seen there holds
    back a store of another process. Another scheme is one line naming the scheme only."""
    import redis as redis_client

    from tapyard import ConfigError
    from tapyard.http import RedisLimiterStore, default_limiter_store

    monkeypatch.setenv("TAPYARD_LIMITER_URL", redis.url)
    store = default_limiter_store()
    assert isinstance(store, RedisLimiterStore) and default_limiter_store() is store
    key = f"conn|{time.time_ns()}"
    store.limiter(key, RateLimitSettings()).penalize(30)
    assert redis_client.Redis.from_url(redis.url).exists(f"tapyard:limit:{key}")
    elsewhere = RedisLimiterStore(redis.url)
    assert elsewhere.limiter(key, RateLimitSettings()).wait_time() > 25
    elsewhere.close()
    monkeypatch.setenv("TAPYARD_LIMITER_URL", "postgresql://user:s3cret@db/x")
    with pytest.raises(ConfigError) as caught:
        default_limiter_store()
    message = str(caught.value)
    assert "'postgresql'" in message and "s3cret" not in message and "\n" not in message


# -- two syncs, two processes, one credential ---------------------------------------------

SYNC = """
import sys
import tapyard
from tests.test_bounds import Item

url, db = sys.argv[1], sys.argv[2]
connector = tapyard.RestConnector(
    name="budgeted", base_url=url, auth_kinds=("bearer",),
    streams=[tapyard.RestStream(name="items", path="/items", schema_model=Item, paginator={
        "kind": "cursor", "cursor_path": "next", "cursor_param": "cursor", "has_more_field": None})],
)
credentials = tapyard.BearerAuth.Options(name="prod", token="t0ken-of-one-account")
result = tapyard.sync(connector, {}, credentials=credentials, to=f"sqlite:///{db}",
                      rate_limit={"rate": 20, "burst": 1}, concurrency=1)
print(result.ok, result.records, result.http["throttled"])
"""


class CredentialBucket:
    """A server that limits each credential (its Authorization header) to ``rate`` per
    second, burst 1, and says so with 429s only; it times every request as it arrives."""

    def __init__(self, rate: float, pages: int) -> None:
        self.rate, self.pages = rate, pages
        self.buckets: dict[str, tuple[float, float]] = {}
        self.arrivals: dict[str, list[float]] = {}
        self.throttled = 0
        self.lock = threading.Lock()

    def __call__(self, request: Any) -> Any:
        from tests.scripted_server import Reply

        who = request.headers.get("authorization", "")
        with self.lock:
            now = time.monotonic()
            self.arrivals.setdefault(who, []).append(now)
            tokens, stamp = self.buckets.get(who, (1.0, now))
            tokens = min(1.0, tokens + (now - stamp) * self.rate)
            admitted = tokens >= 1.0
            self.buckets[who] = (tokens - 1.0 if admitted else tokens, now)
            if not admitted:
                self.throttled += 1
                return Reply.json({"error": "slow down"}, status=429)
        n = int(request.query.get("cursor", ["0"])[0]) + 1
        return Reply.json({"data": [{"id": n}], "next": str(n) if n < self.pages else None})


def test_two_processes_syncing_with_one_credential_stay_within_its_limit(tmp_path: Path) -> None:
    """Two `tapyard.sync` runs in two processes, one stored credential, each told 20/s:
    against a server allowing that credential 20/s, every window of the server's
    arrivals (429s included) stays within 20 * W + 1, and 429s are few (the budget
    spaces grants exactly 50 ms apart, and jitter on a busy machine can bring two
    requests a shade closer than a bucket with no burst takes).
    Each alone would send 20/s: without the shared budget the server sees 40/s."""
    import subprocess
    import sys

    from tests.scripted_server import ScriptedServer

    pages = 40
    bucket = CredentialBucket(20.0, pages)
    root = Path(__file__).resolve().parents[1]
    with ScriptedServer() as server:
        server.always("/items", bucket)
        runs = [
            subprocess.Popen([sys.executable, "-c", SYNC, server.url, str(tmp_path / f"{n}.db")], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for n in range(2)
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-2000:]
        ok, records, _throttled = out.split()
        assert (ok, records) == ("True", str(pages)), out
    (arrivals,) = bucket.arrivals.values()
    assert len(arrivals) == 2 * pages + bucket.throttled and bucket.throttled <= 10
    for window in (0.5, 1.0, 2.0, 10.0):
        assert max_in_window(arrivals, window) <= 20 * window + 1, window


def test_a_forked_child_opens_its_own_connection_and_shares_the_budget(tmp_path: Path) -> None:
    """A store made before a fork (a worker of a fork server) is safe in the child: it
    opens its own connection to the file and still shares the parent's budget."""
    import os

    budget = SqliteBudget(tmp_path / "l.db")
    budget.hold("c|x", time.time() + 30, "the server's Retry-After")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            wait = budget.peek("c|x", rate=None, burst=1, spacing=0)
            budget.hold("c|y", time.time() + 60, "child")
            os.write(write, f"{wait:.0f}".encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 32) == b"30"
    assert budget.peek("c|y", rate=None, burst=1, spacing=0) == pytest.approx(60, abs=2)
    budget.close()


# -- in-flight caps per credential, across processes ----------------------------------------


def _in_flight(where: str, key: str, limit: int, threads: int, rounds: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """In a process of its own: ``threads`` threads each hold an in-flight slot of the
    store at ``where`` ``rounds`` times for 30 ms; the (entered, left) wall times go on
    ``queue``."""
    from tapyard.http import RedisLimiterStore

    store = RedisLimiterStore(where) if where.startswith("redis://") else SqliteLimiterStore(where)
    limiter = store.limiter(key, RateLimitSettings(concurrency=limit))
    spans: list[tuple[float, float]] = []

    def work() -> None:
        for _ in range(rounds):
            with limiter.in_flight():
                entered = time.time()
                time.sleep(0.03)
                spans.append((entered, time.time()))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()
    queue.put(spans)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


@pytest.mark.parametrize("where", ["sqlite", "redis"])
def test_concurrency_is_a_cap_per_credential_across_processes(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Four processes of three threads each, one credential with ``concurrency: 2``:
    at no moment are more than two requests in flight among all of them (each
    process alone would hold two, eight together), and the two slots are used."""
    url = str(tmp_path / "l.db") if where == "sqlite" else request.getfixturevalue("redis").url
    key = f"conn|{time.time_ns()}"
    results = _in_processes(_in_flight, [(url, key, 2, 3, 5)] * 4)
    spans = [span for result in results for span in result]
    assert len(spans) == 4 * 3 * 5
    assert _most_at_once(spans) == 2


HOLDER = """
import sys, time
import tapyard.http._limiters as limiters
from tapyard.http import RedisLimiterStore, RateLimitSettings

limiters._SLOT_LEASE, limiters._SLOT_RENEW = 1.0, 0.2
store = RedisLimiterStore(sys.argv[1])
limiter = store.limiter(sys.argv[2], RateLimitSettings(concurrency=1))
with limiter.in_flight():
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_slot_lives_as_long_as_its_holder_and_no_longer(redis: RedisServer) -> None:
    """A process holding the only slot keeps it past its lease (it renews it); killed
    (SIGKILL: nothing runs on its way out), its slot is free again once the lease ends."""
    import subprocess
    import sys

    from tapyard.http import RedisLimiterStore

    key = f"conn|{time.time_ns()}"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis.url, key], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        store = RedisLimiterStore(redis.url)
        limiter = store.limiter(key, RateLimitSettings(concurrency=1))
        budget = limiter.budget  # type: ignore[attr-defined]
        time.sleep(2.5)  # more than two leases of 1 s: renewed, still held
        assert budget.enter(key, "probe", 1, 1.0) > 0
        holder.kill()
        holder.wait(10)
        started = time.monotonic()
        with limiter.in_flight():
            waited = time.monotonic() - started
        assert waited <= 1.0 + 0.5, waited  # at most the rest of its lease
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)

"""A fleet's rate budget (issue 18 item 4): several worker processes syncing with one
credential, their limiters in one real redis-server, against one server that limits
that credential to 100 requests/s and says so in its headers.

The server is bench/server.py (the benchmarks' fake vendor, its token bucket and its
header conventions); it times every request it reads, the refused ones too, and
reports them per second of its own clock. No rate is configured on the client: every
process learns the pace from the headers, and what one learns, holds or grants is in
Redis for all. The bench (bench/fleet.py) runs 8 processes for longer and reports the
exact figures; this test asserts bounds that hold on a loaded two-core machine.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tapyard.http import Ask, Budget, RedisBudget, SqliteBudget
from tapyard.http._limiters import _SETTLED_FRESH
from tapyard.testing import RedisServer
from tests.test_ratelimit import max_in_window

ROOT = Path(__file__).resolve().parents[1]
RATE = 100
PROCESSES = 4
PAGES = 800  # about 8 s of the whole quota
PAGE_SIZE = 10

WORKER = """
import os, sys, time
import tapyard
from tapyard.http import RedisLimiterStore
from pydantic import BaseModel, ConfigDict

class Charge(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str

name, url, token, redis_url, index, count, go, db = sys.argv[1:]
connector = tapyard.RestConnector(
    name=name, base_url=url, auth_kinds=("bearer",),
    paginator={"kind": "cursor", "page_size": PAGE_SIZE},
    streams=[tapyard.RestStream(name="charges", path="/v1/charges", schema_model=Charge,
                                params={"partition": index, "partitions": count})],
)
credentials = tapyard.BearerAuth.Options(name="one-account", token=token)
store = RedisLimiterStore(redis_url)
open(f"{go}.{index}", "w").close()  # imported: the fleet starts together
while not os.path.exists(go):
    time.sleep(0.001)
result = tapyard.sync(connector, {}, credentials=credentials, to=f"sqlite:///{db}", limiters=store)
for stream in result.streams:
    if stream.status != "ok":
        print(stream.name, stream.status, stream.error, file=sys.stderr)
print(result.ok, result.records, result.http.get("throttled"))
""".replace("PAGE_SIZE", str(PAGE_SIZE))


def _server(headers: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "server.py"), "--token", "sk_fleet", "--rate", str(RATE),
         "--burst", "1", "--headers", headers, "--streams", f"charges:{PAGES * PAGE_SIZE}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening "), line + (proc.stderr.read() if proc.stderr else "")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


@pytest.mark.timeout(300)
@pytest.mark.parametrize("headers", ["fractional", "epoch"])
def test_a_fleet_sharing_one_credential_stays_within_its_limit_and_uses_it(
    headers: str, redis: RedisServer, tmp_path: Path
) -> None:
    """4 processes, one stored credential, one Redis: every whole second the server saw
    (requests admitted and refused) stays within 2% of its limit, 429s are few, and the
    fleet uses most of the quota together. ``fractional``: the reset to the
    millisecond; ``epoch``: whole epoch seconds, which say nothing finer than "R left"
    (before the fleet shared what it learned, each process spaced the whole fleet by
    its own requests' spacing, eight times too wide: 6% of the quota)."""
    server, url = _server(headers)
    key_prefix = f"{headers}-{time.time_ns()}"
    try:
        go = tmp_path / f"{key_prefix}-go"
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, f"fleet-{key_prefix}", url, "sk_fleet", redis.url, str(i), str(PROCESSES),
                 str(go), str(tmp_path / f"{key_prefix}-{i}.db")],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(PROCESSES)
        ]
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob(f"{go.name}.*"))) < PROCESSES and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [worker.communicate(timeout=240) for worker in workers]
        stats = _stats(url)
    finally:
        server.terminate()
        server.wait(10)
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        ok, records, _ = out.split()
        assert ok == "True" and int(records) == PAGES * PAGE_SIZE // PROCESSES, out + err[-3000:]
    seconds = stats["seconds"]
    per_second = seconds["counts"]
    # Correctness, whatever the load: no second over the limit by more than 2%.
    assert seconds["over_2pct"] == 0, per_second
    assert seconds["windows"] >= 5, per_second
    # 429s: a few (the bench: 0.1-1.4% on a quiet core, 4% once at load 7), never a storm.
    assert stats["throttled"] <= 0.08 * stats["requests"], stats
    # Used together: the bench measures >= 90% on a quiet machine; a loaded CI machine
    # slows every client (runs here under load gave 40-90%), so the floor is low, yet
    # far above what processes spacing the whole fleet by their own requests reached.
    assert stats["quota_used"] >= 0.3, (stats["quota_used"], per_second)


# -- the queue of waiting callers ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def budget(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Budget]:
    if request.param == "sqlite":
        made: Budget = SqliteBudget(tmp_path / "limits.db")
    else:
        made = RedisBudget(request.getfixturevalue("redis").url)
    yield made
    made.close()


def test_callers_told_to_wait_ask_again_one_at_a_time(budget: Budget) -> None:
    """While one grant is out, four more callers ask: each is told a moment a spacing
    after the one told before it (in the order they asked), not all the same moment
    (when all of them would wake and ask at once, and all but one be told to wait
    again). One asking again at its moment keeps its place; a grant taken by a caller
    with no ticket (one that asked when a grant could go at once) moves nobody on."""
    key = f"conn|{time.time_ns()}"
    ask = Ask(rate=None, burst=1, spacing=0.05, max_wait=None, reports=True)
    wait, token, _ = budget.take(key, ask)
    assert wait == 0 and token
    budget.sent(key, token)
    told = [budget.take(key, ask) for _ in range(4)]
    waits = [wait for wait, _, _ in told]
    tickets = [int(ticket) for _, _, ticket in told]
    assert tickets == sorted(set(tickets)) and len(tickets) == 4
    for before, after in itertools.pairwise(waits):
        # a spacing apart (each ask took a moment, so a little less)
        assert 0.04 <= after - before <= 0.05 + 1e-6, waits
    assert 0.03 < waits[0] <= 0.05
    # the first in line, asking again at its moment, is granted
    time.sleep(waits[0] + 0.002)
    wait, token, _ = budget.take(key, replace(ask, ticket=tickets[0]))
    assert wait == 0 and token
    budget.sent(key, token)
    # the second, asking again early (its moment was a spacing after the first's
    # grant moment, which came late), is still next: told the grant's own moment
    wait, _, ticket = budget.take(key, replace(ask, ticket=tickets[1]))
    assert ticket == tickets[1] and 0.04 < wait <= 0.05
    # a newcomer queues behind the last ticket still out
    wait, _, ticket = budget.take(key, ask)
    assert ticket == tickets[-1] + 1 and wait > 0.05 * 3


def test_a_queue_whose_callers_went_away_holds_nobody_up(budget: Budget) -> None:
    """Tickets of callers that died or gave up while waiting cost a newcomer nothing
    once every moment told has passed: it is first in line."""
    key = f"conn|{time.time_ns()}"
    ask = Ask(rate=None, burst=1, spacing=0.02, max_wait=None, reports=True)
    wait, token, _ = budget.take(key, ask)
    budget.sent(key, token)
    told = [budget.take(key, ask) for _ in range(5)]  # and they all go away
    time.sleep(max(wait for wait, _, _ in told) + 0.01)
    wait, token, _ = budget.take(key, ask)
    assert wait == 0 and token  # long past the spacing: granted at once
    budget.sent(key, token)
    # the next is first in line: told the grant's moment, not five tickets later
    wait, _, ticket = budget.take(key, ask)
    assert 0.01 < wait <= 0.02 and ticket == 1


def test_a_process_still_probing_is_spaced_by_the_settled_ones(budget: Budget) -> None:
    """A process whose spacing is still a probe (a coarse server's, narrowing in from
    three times too wide here) is spaced by the one a settled process took its last
    grant with, not by its own: otherwise the settled process's grants always come
    first, the prober is never granted (and never learns), and when the settled one
    stops the fleet starts over at the wide end. Its grant keeps the settled spacing
    the fleet's. A second after the last settled grant, its own counts again."""
    key = f"conn|{time.time_ns()}"
    settled = Ask(rate=None, burst=1, spacing=0.01, max_wait=None, reports=True)
    probe = replace(settled, spacing=0.03, settled=False)
    wait, token, _ = budget.take(key, settled)
    assert wait == 0 and token
    budget.sent(key, token)
    wait, _, ticket = budget.take(key, probe)
    assert 0.005 < wait <= 0.01  # the settled process's 10 ms, not its own 30
    time.sleep(wait + 0.001)
    wait, token, _ = budget.take(key, replace(probe, ticket=int(ticket)))
    assert wait == 0 and token
    budget.sent(key, token)
    # the probe's grant did not make its 30 ms the fleet's: a newcomer that has
    # learned nothing is spaced by the settled 10 ms
    wait, _, _ = budget.take(key, replace(settled, spacing=0.0))
    assert 0.005 < wait <= 0.01
    # no settled grant for a second: the probe is spaced by its own again
    time.sleep(_SETTLED_FRESH + 0.05)
    wait, token, _ = budget.take(key, probe)
    assert wait == 0 and token
    budget.sent(key, token)
    wait, _, _ = budget.take(key, probe)
    assert 0.02 < wait <= 0.03


ASKER = """
import sys, time
import tapyard.http._redis as redis_budget
from tapyard.http import RedisLimiterStore, RateLimitSettings

asks = 0
take = redis_budget.RedisBudget.take

def counted(self, key, ask):
    global asks
    asks += 1
    return take(self, key, ask)

redis_budget.RedisBudget.take = counted
url, key, go, grants = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
limiter = RedisLimiterStore(url).limiter(key, RateLimitSettings(rate=50))
while time.time() < float(go):
    time.sleep(0.001)
times = []
for _ in range(grants):
    limiter.acquire()
    times.append(time.time())
print(asks, *times)
"""


@pytest.mark.timeout(120)
def test_a_fleet_waiting_for_one_credential_asks_redis_in_turn(redis: RedisServer) -> None:
    """Six processes, one credential at 50/s in Redis: each waiting process asks when
    its turn comes, not every waiting process at each grant's moment (all but one
    then told to wait again: each ask a round trip and a wake-up on the CPU the
    granted request needs to reach the wire)."""
    key = f"conn|{time.time_ns()}"
    go = time.time() + 3.0  # all importing first, then together
    procs = [
        subprocess.Popen([sys.executable, "-c", ASKER, redis.url, key, str(go), "25"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = [proc.communicate(timeout=100) for proc in procs]
    asks, times = 0, []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        first, *rest = out.split()
        asks += int(first)
        times += [float(t) for t in rest]
    times.sort()
    assert len(times) == 150
    # the budget is kept (one ms of slack for the time taken after a grant) ...
    assert max_in_window(times, 1.0) <= 50 + 1 + 1
    # ... and asked two or three times per grant (the first ask, told its place; one
    # more when the grants before it came late; the one granted), not six or more
    # (6.3 without the queue)
    assert asks / len(times) < 4.0, asks

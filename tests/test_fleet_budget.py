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

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tapyard.testing import RedisServer

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

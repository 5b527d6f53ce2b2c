"""The limiter against every rate-limit convention, on virtual time.

Scenario f of ``run.py`` measures the real client against ``server.py`` over
loopback, and its figures move by points with the machine's load. This script
runs the same :class:`tapyard.RateLimiter` against a token bucket in virtual time
(the ``VirtualTime`` of ``tests/test_ratelimit.py``), with the network legs and
the client's grant-to-wire time drawn from seeded exponential distributions: the
same inputs give the same figures on any machine, so a change to the limiter can
be compared with the one before it exactly. ``--jitter`` sets the mean of each
leg's random part (0.1 ms matches a quiet loopback: the figures then come within
a point or two of scenario f's on a quiet machine).

    .venv/bin/python bench/pacing_sim.py [--seeds 5] [--pages 600] [--jitter 0.0001] [--output FILE]

Prints a table (quota used and 429 share per seed) and writes JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tapyard.http._ratelimit import RateLimiter  # noqa: E402
from tests.test_ratelimit import VirtualTime  # noqa: E402

#: (--headers of server.py, rate, burst): scenario f's cases
CASES = [
    ("fractional", 100.0, 1.0),
    ("epoch", 100.0, 1.0),
    ("delta", 100.0, 1.0),
    ("epoch-frac", 100.0, 1.0),
    ("ietf", 100.0, 1.0),
    ("retry-after", 100.0, 1.0),
    ("none", 100.0, 1.0),
    ("epoch", 50.0, 5.0),
    ("delta", 50.0, 5.0),
    ("fractional", 50.0, 5.0),
]


def headers(conv: str, rate: float, remaining: int, wait: float, admitted: bool, wall: float) -> dict[str, str]:
    """One response's rate-limit headers in ``conv``, as ``server.py`` writes them."""
    out: dict[str, str] = {}
    if conv in ("fractional", "epoch", "epoch-frac", "delta"):
        at = wall + wait
        out["X-RateLimit-Limit"] = str(int(rate))
        out["X-RateLimit-Remaining"] = str(remaining)
        out["X-RateLimit-Reset"] = {"fractional": f"{wait:.3f}", "epoch": str(math.ceil(at)),
                                    "epoch-frac": f"{at:.3f}", "delta": str(math.ceil(wait))}[conv]
    elif conv == "ietf":
        out["RateLimit-Policy"] = f'"default";q={int(rate)};w=1'
        out["RateLimit"] = f'"default";r={remaining};t={math.ceil(wait)}'
    if not admitted and conv != "none":
        out["Retry-After"] = f"{max(wait, 0.001):.3f}" if conv == "fractional" else str(max(1, math.ceil(wait)))
    return out


def run(conv: str, rate: float, burst: float, *, pages: int, seed: int, jitter: float,
        leg: float = 0.0001, wire: float = 0.00015, work: float = 0.0015) -> tuple[float, float]:
    """One client paging through ``pages`` pages: (quota used, share of requests refused)."""
    vt = VirtualTime(1)
    rng = random.Random(seed)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep, wall_clock=vt.wall)
    state = {"tokens": burst, "stamp": 0.0, "ok": 0, "refused": 0, "first": -1.0, "last": 0.0}

    def client() -> None:
        while state["ok"] < pages:
            limiter.acquire()
            vt.sleep(wire + rng.expovariate(1 / jitter))  # the client's own way to the wire
            limiter.sent()
            vt.sleep(leg + rng.expovariate(1 / jitter))
            now = vt.clock()
            state["tokens"] = min(burst, state["tokens"] + (now - state["stamp"]) * rate)
            state["stamp"] = now
            admitted = state["tokens"] >= 1.0
            if admitted:
                state["tokens"] -= 1.0
                state["ok"] += 1
            else:
                state["refused"] += 1
            if state["first"] < 0:
                state["first"] = now
            state["last"] = now
            wait = max(0.0, (1.0 - state["tokens"]) / rate)
            reply = headers(conv, rate, math.floor(state["tokens"]), wait, admitted, vt.wall())
            vt.sleep(leg + rng.expovariate(1 / jitter))
            limiter.learn(reply, status=200 if admitted else 429)
            if admitted:
                vt.sleep(work)  # validating and writing the page
            else:
                pause = limiter.throttled(reply.get("Retry-After"))
                if pause:
                    vt.sleep(pause)
        vt.leave()

    thread = threading.Thread(target=client)
    thread.start()
    thread.join()
    window = state["last"] - state["first"]
    used = (state["ok"] - burst) / (rate * window) if window > 0 else 0.0
    return used, state["refused"] / (state["ok"] + state["refused"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--jitter", type=float, default=0.0001, help="mean of each leg's random part, seconds")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(f"{'convention':12} {'rate/burst':>10}  quota used (%) per seed  |  429s (%) per seed")
    for conv, rate, burst in CASES:
        runs = [run(conv, rate, burst, pages=args.pages, seed=seed, jitter=args.jitter)
                for seed in range(1, args.seeds + 1)]
        rows.append({"convention": conv, "rate": rate, "burst": burst,
                     "quota_used": [round(u, 4) for u, _ in runs], "refused": [round(r, 4) for _, r in runs]})
        print(f"{conv:12} {rate:>6g}/{burst:<3g}  " + " ".join(f"{u * 100:5.1f}" for u, _ in runs)
              + "  |  " + " ".join(f"{r * 100:4.1f}" for _, r in runs), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"jitter": args.jitter, "pages": args.pages, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

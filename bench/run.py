"""The benchmark runner: tapyard against a hand-written loop and its peers, in one run.

::

    .venv/bin/python bench/run.py [--smoke] [--scenarios a,b,c,d,e] [--records N]
                                  [--peers/--no-peers] [--repeat K] [--profile]

It starts the fake vendor server (bench/server.py) in its own process on one
core, and runs every client (bench/clients/) as its own process on the other,
one after another, against the same server. Each client's wall time, peak RSS
and CPU time come from ``os.wait4`` on that child; requests, 429s, faults and
the share of the rate-limit quota used come from the server's ``/stats``,
reset before each client. Peers (airbyte-cdk, singer-sdk, dlt) are installed
into their own virtual environments under bench/.venvs/ the first time; a peer
that cannot be installed is reported as unavailable and skipped.

Scenarios:

a  throughput: 100,000 and 1,000,000 records, one stream, pages of 100, no limit
b  a smooth rate limit of 100 requests/s with no burst: 1,000 pages per
   client, each stopped after 30 s
c  50 ms latency per response: one stream, four streams, and one stream
   in four partitions, at concurrency 1 and 4
d  faults: 5% of responses are 500s and 1% are truncated 200s; every client
   must end with every record
e  start-up: ``tapyard connectors list`` against ``python -c pass``
m  memory: peak RSS of ``tapyard sync sample`` at 20,000 and 100,000 records
   per stream against its targets (bench/memory.py)
w  workers: one run of a stream in 8 partitions, 50 ms per response, spread over
   one and then two Celery workers of concurrency 1 (bench/workers.py): the run's
   wall time on each and the ratio (target: two >= 1.8x one)

Results go to bench/results/latest.json and bench/results/latest.md.
``--smoke`` runs every scenario at a tiny size without peers in well under a
minute and exits non-zero if any client fails: CI uses it to check that the
suite still works. Benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLIENTS = BENCH / "clients"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
MAIN_PYTHON = sys.executable

PEERS: dict[str, dict[str, Any]] = {
    "airbyte": {"packages": ["airbyte-cdk"], "dist": "airbyte-cdk"},
    "singer": {"packages": ["singer-sdk"], "dist": "singer-sdk"},
    "dlt": {"packages": ["dlt[duckdb]", "pyarrow"], "dist": "dlt"},
}

#: client name -> script, peer (None: the main venv) and fixed options
CLIENT_SPECS: dict[str, dict[str, Any]] = {
    "baseline_httpx": {"script": "baseline_httpx.py", "peer": None},
    "baseline_sqlite": {"script": "baseline_sqlite.py", "peer": None},
    "baseline_obey": {"script": "baseline_httpx.py", "peer": None, "options": {"obey": True}},
    "tapyard_sqlite": {"script": "tapyard_sqlite.py", "peer": None},
    "baseline_postgresql": {"script": "baseline_postgresql.py", "peer": None},
    "tapyard_postgresql": {"script": "tapyard_sqlite.py", "peer": None, "options": {"to": "postgresql"}},
    "baseline_duckdb": {"script": "baseline_duckdb.py", "peer": None},
    "tapyard_duckdb": {"script": "tapyard_sqlite.py", "peer": None, "options": {"to": "duckdb"}},
    "airbyte": {"script": "airbyte_client.py", "peer": "airbyte"},
    "singer": {"script": "singer_client.py", "peer": "singer"},
    "dlt_default": {"script": "dlt_client.py", "peer": "dlt", "options": {"loader": "default"}},
    "dlt_parquet": {"script": "dlt_client.py", "peer": "dlt", "options": {"loader": "parquet"}},
}
CORE_CLIENTS = ("baseline_httpx", "baseline_sqlite", "tapyard_sqlite")
#: the clients of scenario p only
DESTINATION_CLIENTS = ("baseline_postgresql", "tapyard_postgresql", "baseline_duckdb", "tapyard_duckdb")
ALL_CLIENTS = tuple(c for c in CLIENT_SPECS if c not in DESTINATION_CLIENTS)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- cores ---------------------------------------------------------------

def cores() -> tuple[set[int] | None, int | None]:
    """The client's cores and the server's core: two different ones where possible."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[0]}, available[1]


CLIENT_CORES, SERVER_CORE = cores()


def _pin_client() -> None:
    if CLIENT_CORES is not None:
        os.sched_setaffinity(0, CLIENT_CORES)
        if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) == os.SCHED_FIFO:
            # A client pinned to one core runs round-robin, not first-in-first-out:
            # under `chrt -f` a DuckDB worker thread spinning for work the client's
            # other threads were to hand it kept that core forever (twice in some
            # forty runs of scenario p; the run never ended). Round-robin gives each
            # thread its time slice in turn, at the same real-time priority.
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_getparam(0))


# --- the server ------------------------------------------------------------

class Server:
    """bench/server.py in its own process, on its own core."""

    def __init__(self, streams: dict[str, int], *, rate: float = 0, burst: float = 1,
                 latency_ms: float = 0, error_rate: float = 0, malformed_rate: float = 0,
                 seed: int = 1, headers: str = "fractional", window_limit: int = 0,
                 window: float = 60.0, daily_limit: int = 0, day: float = 86400.0) -> None:
        self.token = "sk_test_" + secrets.token_hex(12)
        self.rate, self.burst = rate, burst
        cmd = [MAIN_PYTHON, str(BENCH / "server.py"), "--token", self.token,
               "--streams", ",".join(f"{k}:{v}" for k, v in streams.items()),
               "--rate", str(rate), "--burst", str(burst), "--latency-ms", str(latency_ms),
               "--error-rate", str(error_rate), "--malformed-rate", str(malformed_rate),
               "--seed", str(seed), "--headers", headers, "--window-limit", str(window_limit),
               "--window", str(window), "--daily-limit", str(daily_limit), "--day", str(day)]
        if SERVER_CORE is not None:
            cmd += ["--cpu", str(SERVER_CORE)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("listening "):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"the bench server did not start: {line.strip()} {err.strip()[-500:]}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/stats")
        return result

    def reset(self) -> None:
        self.get("/reset")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def serving(streams: dict[str, int], **kwargs: Any) -> Iterator[Server]:
    server = Server(streams, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def compile_sources() -> None:
    """Byte-compile tapyard's own sources, as installing a wheel would.

    The repository's packages are installed editable, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as it is on these machines, and for every
    client here) nothing would ever write their ``.pyc`` files: each run of
    tapyard would then compile its modules from source inside the measured
    window, while the peers' and the baselines' packages, installed by pip,
    come compiled. The files land in ``__pycache__`` folders, which git ignores.
    """
    roots = [ROOT / "core" / "src", ROOT / "credentials" / "src", ROOT / "registry" / "src",
             *sorted((ROOT / "connectors").glob("*/src"))]
    subprocess.run([MAIN_PYTHON, "-m", "compileall", "-q", *[str(r) for r in roots if r.is_dir()]],
                   check=False, capture_output=True, timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE=""))


# --- peers -----------------------------------------------------------------

def peer_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def ensure_peer(peer: str) -> str:
    """``"ok"`` once the peer's venv is ready, else ``"unavailable: <reason>"``."""
    spec = PEERS[peer]
    marker = VENVS / peer / ".bench-installed"
    wanted = " ".join(spec["packages"])
    python = peer_python(peer)
    if marker.exists() and marker.read_text().strip() == wanted and python.exists():
        return "ok"
    log(f"installing {peer} ({wanted}) into {VENVS / peer}")
    try:
        if not python.exists():
            subprocess.run([MAIN_PYTHON, "-m", "venv", str(VENVS / peer)], check=True,
                           capture_output=True, text=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *spec["packages"]], check=True,
                       capture_output=True, text=True, timeout=1800)
    except subprocess.CalledProcessError as exc:
        lines = [ln for ln in (exc.stderr or "").splitlines() if ln.strip() and "Location" not in ln]
        return "unavailable: " + (lines[-1] if lines else f"exit {exc.returncode}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    marker.write_text(wanted + "\n")
    return "ok"


def peer_versions(peer: str) -> dict[str, str]:
    names = ["airbyte-cdk", "singer-sdk", "dlt", "duckdb", "pyarrow", "requests"]
    code = ("import json, importlib.metadata as m\n"
            "out = {}\n"
            f"for d in {names!r}:\n"
            "    try: out[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    try:
        out = subprocess.run([str(peer_python(peer)), "-c", code], capture_output=True, text=True, timeout=60)
        result: dict[str, str] = json.loads(out.stdout)
        return result
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


# --- running one client ------------------------------------------------------

class Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path, peers: dict[str, str]) -> None:
        self.args = args
        self.workdir = workdir
        self.peers = peers
        self.failures: list[str] = []
        self.serial = 0

    def available(self, client: str) -> bool:
        peer = CLIENT_SPECS[client]["peer"]
        return peer is None or self.peers.get(peer) == "ok"

    def run(self, server: Server, client: str, streams: list[dict[str, Any]], *, label: str = "",
            page_size: int = 100, concurrency: int = 1, options: dict[str, Any] | None = None,
            timeout: float = 900, cap: float | None = None, repeat: int = 1) -> dict[str, Any]:
        """Run ``client`` ``repeat`` times and return the row of the median run."""
        runs = [self._run_once(server, client, streams, label, page_size, concurrency, options or {},
                               timeout, cap) for _ in range(max(1, repeat))]
        runs.sort(key=lambda r: r.get("records_per_s") or 0)
        row = runs[len(runs) // 2]
        if len(runs) > 1:
            row["repeats"] = [r.get("records_per_s") for r in runs]
        return row

    def _run_once(self, server: Server, client: str, streams: list[dict[str, Any]], label: str,
                  page_size: int, concurrency: int, options: dict[str, Any], timeout: float,
                  cap: float | None) -> dict[str, Any]:
        spec = CLIENT_SPECS[client]
        self.serial += 1
        scratch = self.workdir / f"{self.serial:03d}_{client}"
        scratch.mkdir(parents=True)
        job = {
            "base_url": server.url,
            "token": server.token,
            "page_size": page_size,
            "concurrency": concurrency,
            "variant": "cursor",
            "streams": streams,
            "workdir": str(scratch),
            "options": {**spec.get("options", {}), **options},
        }
        job_path = scratch / "job.json"
        job_path.write_text(json.dumps(job))
        python = MAIN_PYTHON if spec["peer"] is None else str(peer_python(spec["peer"]))
        expected = sum(int(s.get("expected", 0)) for s in streams)
        row: dict[str, Any] = {"client": client, "label": label or client, "concurrency": concurrency,
                               "expected": expected}
        server.reset()
        time.sleep(0.05)
        stdout_path, stderr_path = scratch / "stdout", scratch / "stderr"
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        log(f"  {row['label']} ...")
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen([python, str(CLIENTS / spec["script"]), str(job_path)], stdout=out,
                                    stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=str(scratch),
                                    preexec_fn=_pin_client, start_new_session=True)
            killed: list[str] = []

            def stop(reason: str) -> None:
                killed.append(reason)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

            limit = min(timeout, cap) if cap is not None else timeout
            timer = threading.Timer(limit, stop, args=("cap" if cap is not None and cap <= timeout else "timeout",))
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        stats = server.stats()
        result = None
        for line in stdout_path.read_text(errors="replace").splitlines():
            if line.startswith('{"bench"'):
                result = json.loads(line)
        row.update(
            wall_s=round(wall, 3),
            peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
            cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
            exit=proc.returncode,
            server=stats,
            requests=stats["requests"],
            throttled=stats["throttled"],
            server_errors=stats["server_errors"],
            malformed=stats["malformed"],
            records_served=stats["records"],
        )
        if stats.get("rate"):
            window = stats["since_first"] or 0.0
            if not killed:
                window -= stats["since_last"] or 0.0
            if stats.get("window_limit"):
                # A fixed window allows its limit in each window the client touched.
                allowed = stats["window_limit"] * max(1, math.ceil(window / stats["window_length"] - 1e-9))
            else:
                allowed = stats["burst"] + stats["rate"] * window
            admitted = stats["requests"] - stats["throttled"] - stats["unauthorized"]
            row["window_s"] = round(window, 3)
            row["quota_used"] = round(admitted / allowed, 4) if allowed else None
            row["served_per_s"] = round(stats["records"] / window, 1) if window else None
            # how long after its token each admitted request arrived, as the server saw it
            row["late_ms"] = stats.get("late_ms")
        if killed:
            row["stopped"] = killed[0]
        if result is not None:
            records = int(result["records"])
            row.update(
                records=records,
                seconds=result["seconds"],
                records_per_s=round(records / result["seconds"], 1) if result["seconds"] else None,
                cpu_us_per_record=round(row["cpu_s"] / records * 1e6, 2) if records else None,
                work_cpu_s=result.get("cpu_seconds"),
                client_requests=result.get("requests"),
                rows=result.get("rows"),
                notes=result.get("notes") or [],
                versions=result.get("versions") or {},
                result=result,
            )
            complete = records == expected
            if isinstance(result.get("rows"), dict):
                complete = complete and sum(result["rows"].values()) == expected
            row["complete"] = complete
            row["ok"] = proc.returncode == 0 and complete
        else:
            row["ok"] = False
            row["complete"] = False
            row["notes"] = []
        if not row["ok"]:
            tail = [ln for ln in stderr_path.read_text(errors="replace").strip().splitlines() if ln.strip()][-2:]
            if killed and killed[0] == "cap":
                row["error"] = f"stopped at the {cap:g}s cap"
            elif result is not None and proc.returncode == 0:
                row["error"] = f"ended without error with {row['records']:,} of {expected:,} records"
            else:
                row["error"] = " | ".join(tail) or f"exit {proc.returncode}"
        summary = (f"{row.get('records', '-')} rec, {row.get('records_per_s', '-')} rec/s, "
                   f"{row['peak_rss_mb']} MB, req {row['requests']}, 429 {row['throttled']}")
        if "quota_used" in row:
            summary += f", quota {row['quota_used']:.1%}"
        log(f"    {summary}" + (f"  [{row.get('error')}]" if not row["ok"] else ""))
        return row

    def note_failure(self, scenario: str, row: dict[str, Any], *, allow_cap: bool = False) -> None:
        if row["client"] not in CORE_CLIENTS:
            return
        if row["ok"] or (allow_cap and row.get("stopped") == "cap"):
            return
        self.failures.append(f"{scenario}: {row['label']}: {row.get('error') or 'incomplete'}")


# --- scenarios ----------------------------------------------------------------

def clients_for(runner: Runner, names: tuple[str, ...]) -> list[str]:
    return [c for c in names if (c in CORE_CLIENTS or runner.args.peers) and runner.available(c)]


def scenario_a(runner: Runner) -> dict[str, Any]:
    args = runner.args
    if args.records:
        sizes = [args.records]
    elif args.smoke:
        sizes = [2_000]
    else:
        sizes = [100_000, 1_000_000]
    out: dict[str, Any] = {"title": "Throughput: one stream, pages of 100, no limit", "tables": []}
    for size in sizes:
        log(f"a: throughput, {size:,} records")
        rows = []
        with serving({"charges": size}) as server:
            for client in clients_for(runner, ALL_CLIENTS):
                if client == "dlt_default" and size > 200_000:
                    rows.append({"client": client, "label": client, "skipped":
                                 "dlt's default loader held 3.8 GB at 100,000 records; not run at this size"})
                    continue
                options: dict[str, Any] = {}
                if client == "tapyard_sqlite" and args.profile:
                    options["profile"] = str(RESULTS / f"tapyard_profile_{size}.prof")
                row = runner.run(server, client, [{"name": "charges", "expected": size}], options=options,
                                 timeout=1800, repeat=args.repeat)
                runner.note_failure("a", row)
                rows.append(row)
        add_ratios(rows, "records_per_s", ("baseline_httpx", "baseline_sqlite"))
        out["tables"].append({"records": size, "rows": rows})
    return out


def add_ratios(rows: list[dict[str, Any]], key: str, bases: tuple[str, ...]) -> None:
    for base in bases:
        ref = next((r.get(key) for r in rows if r.get("client") == base and r.get("ok")), None)
        for row in rows:
            if ref and row.get(key):
                row[f"x_{base}"] = round(row[key] / ref, 3)


def scenario_b(runner: Runner) -> dict[str, Any]:
    smoke = runner.args.smoke
    rate, burst = (20.0, 1.0) if smoke else (100.0, 1.0)
    page_size = 50 if smoke else 100
    records = 2_000 if smoke else 100_000
    cap = 15.0 if smoke else 30.0
    log(f"b: rate limit {rate:g}/s burst {burst:g}, {records // page_size} pages, cap {cap:g}s")
    rows = []
    with serving({"charges": records}, rate=rate, burst=burst) as server:
        for client in clients_for(runner, ALL_CLIENTS):
            if client == "dlt_default":
                continue  # the same HTTP path as dlt_parquet
            row = runner.run(server, client, [{"name": "charges", "expected": records}],
                             page_size=page_size, cap=cap)
            runner.note_failure("b", row, allow_cap=not smoke)
            rows.append(row)
    return {
        "title": f"Smooth rate limit: {rate:g} requests/s, burst {burst:g}, fractional Retry-After; "
                 f"{records // page_size:,} pages of {page_size}, each client stopped after {cap:g} s",
        "rate": rate, "burst": burst, "cap_s": cap, "tables": [{"rows": rows}],
    }


#: scenario f: (label, --headers, rate, burst)
CONVENTIONS: list[tuple[str, str, float, float]] = [
    ("fractional seconds until reset", "fractional", 100.0, 1.0),
    ("whole-second epoch reset", "epoch", 100.0, 1.0),
    ("whole seconds until reset", "delta", 100.0, 1.0),
    ("fractional epoch reset", "epoch-frac", 100.0, 1.0),
    ("IETF RateLimit-Policy / RateLimit", "ietf", 100.0, 1.0),
    ("Retry-After only (whole seconds)", "retry-after", 100.0, 1.0),
    ("no headers, bare 429s", "none", 100.0, 1.0),
    ("whole-second epoch reset", "epoch", 50.0, 5.0),
    ("whole seconds until reset", "delta", 50.0, 5.0),
    ("fractional seconds until reset", "fractional", 50.0, 5.0),
]


def scenario_f(runner: Runner) -> dict[str, Any]:
    """Every rate-limit convention, tapyard beside the hand-written client that obeys the headers."""
    smoke = runner.args.smoke
    page_size = 50 if smoke else 100
    pages = 40 if smoke else 600
    cap = 15.0 if smoke else 30.0
    cases = CONVENTIONS[:2] if smoke else CONVENTIONS
    if runner.args.conventions:
        wanted = set(runner.args.conventions.split(","))
        cases = [case for case in cases if case[1] in wanted]
    tables = []
    for label, headers, rate, burst in cases:
        rate = min(rate, 20.0) if smoke else rate
        log(f"f: {label}, {rate:g}/s burst {burst:g}, {pages} pages, cap {cap:g}s")
        rows = []
        with serving({"charges": pages * page_size}, rate=rate, burst=burst, headers=headers) as server:
            for client in ("baseline_obey", "tapyard_sqlite"):
                row = runner.run(server, client, [{"name": "charges", "expected": pages * page_size}],
                                 page_size=page_size, cap=cap)
                runner.note_failure("f", row, allow_cap=True)
                rows.append(row)
        tables.append({"convention": label, "headers": headers, "rate": rate, "burst": burst, "rows": rows})
    return {"title": f"Every rate-limit convention: {pages:,} pages of {page_size}, each client stopped "
                     f"after {cap:g} s", "tables": tables}


def scenario_g(runner: Runner) -> dict[str, Any]:
    """A rate set in config, against a server with no limit: is the ceiling reached?"""
    smoke = runner.args.smoke
    page_size = 100
    pages = 40 if smoke else 500
    tables = []
    for rate in ((20.0,) if smoke else (50.0, 100.0)):
        log(f"g: rate {rate:g}/s set in config, {pages} pages")
        with serving({"charges": pages * page_size}) as server:
            row = runner.run(server, "tapyard_sqlite", [{"name": "charges", "expected": pages * page_size}],
                             page_size=page_size, options={"rate_limit": {"rate": rate}})
        runner.note_failure("g", row)
        stats = row["server"]
        window = (stats.get("since_first") or 0.0) - (stats.get("since_last") or 0.0)
        row["window_s"] = round(window, 3)
        row["rate_reached"] = round((row["requests"] - 1) / window, 2) if window else None
        row["ceiling_used"] = round((row["requests"] - 1) / (rate * window), 4) if window else None
        tables.append({"rate": rate, "rows": [row]})
    return {"title": f"A rate set in config, no server limit: {pages:,} pages of {page_size}", "tables": tables}


def scenario_h(runner: Runner) -> dict[str, Any]:
    """Quotas counted per window: a fixed window (HubSpot's 100 per 10 s, Zendesk's per
    minute) and a rolling daily quota reported as Salesforce does, scaled down in time."""
    smoke = runner.args.smoke
    page_size = 100
    cap = 15.0 if smoke else 30.0
    cases = [
        ("fixed window: 100 requests per 10 s", {"window_limit": 100, "window": 10.0}, {}),
        ("rolling daily quota: 600 per 60 s 'day', Sforce-Limit-Info", {"daily_limit": 600, "day": 60.0},
         {"sforce_usage": True}),
    ]
    tables = []
    for label, server_options, tapyard_options in cases[:1] if smoke else cases:
        pages = 1000
        log(f"h: {label}, {pages} pages, cap {cap:g}s")
        rows = []
        with serving({"charges": pages * page_size}, **server_options) as server:
            for client in ("baseline_obey", "tapyard_sqlite"):
                options = tapyard_options if client == "tapyard_sqlite" else {}
                row = runner.run(server, client, [{"name": "charges", "expected": pages * page_size}],
                                 page_size=page_size, cap=cap, options=options)
                stats = row["server"]
                row["quota_report"] = {k: stats.get(k) for k in ("window_limit", "daily_limit", "daily_used")}
                rows.append(row)
        tables.append({"case": label, "rows": rows})
    return {"title": f"Quotas per window, each client stopped after {cap:g} s", "tables": tables}


def scenario_c(runner: Runner) -> dict[str, Any]:
    smoke = runner.args.smoke
    total = 2_000 if smoke else 20_000
    quarter = total // 4
    latency = 50.0
    layouts: dict[str, list[dict[str, Any]]] = {
        "1 stream": [{"name": "events", "expected": total}],
        "4 streams": [{"name": n, "expected": quarter} for n in ("charges", "customers", "invoices", "refunds")],
        "1 stream in 4 partitions": [
            {"name": f"events_p{i}", "stream": "events", "params": {"partition": i, "partitions": 4},
             "expected": (i + 1) * total // 4 - i * total // 4}
            for i in range(4)
        ],
    }
    native = tapyard_has_partitions()
    log(f"c: {latency:g} ms latency, {total:,} records per layout")
    tables = []
    with serving({"events": total, "charges": quarter, "customers": quarter, "invoices": quarter,
                  "refunds": quarter}, latency_ms=latency) as server:
        for layout, streams in layouts.items():
            log(f"c: {layout}")
            rows = []
            for client in clients_for(runner, ALL_CLIENTS):
                if client in ("baseline_sqlite", "dlt_default"):
                    continue
                levels = [1] if len(streams) == 1 or client == "singer" else [1, 4]
                for level in levels:
                    options: dict[str, Any] = {}
                    if "partitions" in layout and client in ("airbyte", "singer"):
                        options["partitions"] = "native"
                    row = runner.run(server, client, streams, concurrency=level, options=options,
                                     label=f"{client} c={level}")
                    runner.note_failure("c", row)
                    rows.append(row)
                if client == "tapyard_sqlite" and "partitions" in layout and native:
                    row = runner.run(server, client, streams, concurrency=4, options={"partitions": "native"},
                                     label="tapyard_sqlite c=4 (RestStream.partitions)")
                    runner.note_failure("c", row)
                    rows.append(row)
            ref = next((r.get("records_per_s") for r in rows
                        if r["label"] == "baseline_httpx c=1" and r.get("ok")), None)
            for row in rows:
                if ref and row.get("records_per_s"):
                    row["x_baseline_httpx"] = round(row["records_per_s"] / ref, 3)
            tables.append({"layout": layout, "rows": rows})
    return {"title": f"{latency:g} ms latency per response, {total:,} records: one stream, four streams, "
                     "one stream in four partitions", "latency_ms": latency, "tables": tables}


def tapyard_has_partitions() -> bool:
    try:
        out = subprocess.run([MAIN_PYTHON, "-c", "import tapyard; print('partitions' in tapyard.RestStream.model_fields)"],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() == "True"
    except (OSError, subprocess.TimeoutExpired):
        return False


def scenario_d(runner: Runner) -> dict[str, Any]:
    smoke = runner.args.smoke
    records = 2_000 if smoke else 20_000
    # Small pages in the smoke run, so that its few records still meet both faults.
    page_size = 20 if smoke else 100
    log(f"d: faults, 5% 500s and 1% malformed pages, {records:,} records")
    rows = []
    with serving({"charges": records}, error_rate=0.05, malformed_rate=0.01, seed=1) as server:
        for client in clients_for(runner, ALL_CLIENTS):
            row = runner.run(server, client, [{"name": "charges", "expected": records}],
                             page_size=page_size, options={"faults": True}, timeout=900)
            runner.note_failure("d", row)
            if row.get("server_errors", 0) == 0 or row.get("malformed", 0) == 0:
                row.setdefault("notes", []).append("met no 500 or no malformed page")
                if smoke and row["client"] in CORE_CLIENTS:
                    runner.failures.append(f"d: {row['label']} met no 500 or no malformed page")
            rows.append(row)
            if client in ("airbyte", "dlt_parquet"):
                # What the framework does with a malformed page when the
                # author did not add the retry by hand.
                row = runner.run(server, client, [{"name": "charges", "expected": records}],
                                 page_size=page_size, options={"faults": False}, timeout=900,
                                 label=f"{client}, no malformed-page retry")
                row.setdefault("notes", []).append("without the malformed-page retry: the framework's own handling")
                rows.append(row)
    add_ratios(rows, "records_per_s", ("baseline_httpx",))
    return {"title": f"Faults: 5% of responses 500, 1% truncated 200 bodies; {records:,} records "
                     f"in pages of {page_size}, every one expected", "tables": [{"rows": rows}]}


def scenario_e(runner: Runner) -> dict[str, Any]:
    runs = 3 if runner.args.smoke else 11
    tapyard = str(Path(MAIN_PYTHON).parent / "tapyard")
    commands = {
        "python -c pass": [MAIN_PYTHON, "-c", "pass"],
        "python -c 'import tapyard'": [MAIN_PYTHON, "-c", "import tapyard"],
        "tapyard --help": [tapyard, "--help"],
        "tapyard connectors list": [tapyard, "connectors", "list"],
    }
    log(f"e: start-up, {runs} runs each")
    listed = subprocess.run([tapyard, "connectors", "list", "--json"], capture_output=True, text=True)
    try:
        connectors = [c["name"] for c in json.loads(listed.stdout)]
    except ValueError:
        connectors = []
    hyperfine = shutil.which("hyperfine")
    rows = []
    for name, cmd in commands.items():
        times: list[float] = []
        if hyperfine:
            export = runner.workdir / "hyperfine.json"
            subprocess.run([hyperfine, "-N", "--warmup", "2", "--runs", str(runs), "--export-json",
                            str(export), subprocess.list2cmdline(cmd)], capture_output=True, text=True,
                           preexec_fn=_pin_client)
            times = json.loads(export.read_text())["results"][0]["times"]
            tool = "hyperfine"
        else:
            tool = "subprocess"
            for i in range(runs + 1):
                started = time.perf_counter()
                done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      preexec_fn=_pin_client)
                if done.returncode != 0:
                    runner.failures.append(f"e: {name} exited {done.returncode}")
                    break
                if i:  # the first run warms the file cache
                    times.append(time.perf_counter() - started)
        if not times:
            continue
        rows.append({"label": name, "median_ms": round(statistics.median(times) * 1000, 1),
                     "min_ms": round(min(times) * 1000, 1), "runs": len(times), "tool": tool})
    base = next((r["median_ms"] for r in rows if r["label"] == "python -c pass"), None)
    for row in rows:
        if base:
            row["over_python_ms"] = round(row["median_ms"] - base, 1)
    return {"title": "CLI start-up", "connectors": connectors, "tables": [{"rows": rows}]}


def scenario_m(runner: Runner) -> dict[str, Any]:
    """Peak RSS of the README's main job at two sizes, against its targets (bench/memory.py)."""
    import memory

    out = memory.run(memory.SMOKE_SIZES if runner.args.smoke else memory.SIZES, runner.workdir, log)
    runner.failures += [f"m: {failure}" for failure in out["tables"][0]["failures"]]
    return out


def scenario_p(runner: Runner) -> dict[str, Any]:
    """PostgreSQL and DuckDB: tapyard's sync into each beside a hand-written loop into
    the same database (COPY with psycopg; Arrow into DuckDB), one stream, pages of 100.
    The PostgreSQL server is started here (tapyard.testing.postgres_server, fsync on);
    each run gets a database of its own. bench/destinations.py measures the loading alone."""
    from tapyard.testing import ServiceUnavailable, postgres_server

    size = 2_000 if runner.args.smoke else (runner.args.records or 100_000)
    out: dict[str, Any] = {"title": "PostgreSQL and DuckDB: tapyard's sync beside a hand-written loader",
                           "tables": []}
    streams = [{"name": "charges", "expected": size}]
    with serving({"charges": size}) as server:
        try:
            with postgres_server(settings={"fsync": "on", "synchronous_commit": "on",
                                           "full_page_writes": "on"}) as pg:
                log(f"p: PostgreSQL, {size:,} records")

                def options(client: str) -> dict[str, Any]:
                    return {"url": pg.create_database(f"bench_{runner.serial + 1}")}

                rows = _interleaved(runner, server, ("baseline_postgresql", "tapyard_postgresql"), streams, options)
                add_ratios(rows, "records_per_s", ("baseline_postgresql",))
                out["tables"].append({"records": size, "destination": "postgresql", "rows": rows})
        except ServiceUnavailable as exc:
            out["tables"].append({"records": size, "destination": "postgresql", "skipped": str(exc), "rows": []})
        log(f"p: DuckDB, {size:,} records")
        rows = _interleaved(runner, server, ("baseline_duckdb", "tapyard_duckdb"), streams, lambda client: {})
        add_ratios(rows, "records_per_s", ("baseline_duckdb",))
        out["tables"].append({"records": size, "destination": "duckdb", "rows": rows})
    return out


def _interleaved(runner: Runner, server: Server, clients: tuple[str, ...], streams: list[dict[str, Any]],
                 options: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Each client's ``--repeat`` runs taken in turns (loader, tapyard, loader, ...), so
    that a slow spell of the machine falls on both sides, not on one client's five
    runs in a row; each client's median run is its row."""
    runs: dict[str, list[dict[str, Any]]] = {client: [] for client in clients}
    for _ in range(max(1, runner.args.repeat)):
        for client in clients:
            runs[client].append(runner.run(server, client, streams, options=options(client), timeout=1800))
    rows = []
    for client in clients:
        done = sorted(runs[client], key=lambda r: r.get("records_per_s") or 0)
        row = done[len(done) // 2]
        row["repeats"] = [r.get("records_per_s") for r in runs[client]]
        runner.note_failure("p", row)
        rows.append(row)
    # each of tapyard's runs against the loader's run just before it: the spread of the ratio
    pairs = sorted(t["records_per_s"] / b["records_per_s"] for b, t in zip(runs[clients[0]], runs[clients[-1]], strict=True)
                   if b.get("records_per_s") and t.get("records_per_s"))
    if pairs:
        rows[-1]["pair_ratios"] = [round(r, 3) for r in pairs]
        rows[-1].setdefault("notes", []).append(
            f"each run over the loader's run before it: median {pairs[len(pairs) // 2]:.2f}x, {pairs[0]:.2f}-{pairs[-1]:.2f}x")
    return rows


def scenario_w(runner: Runner) -> dict[str, Any]:
    """One run's 8 partitions (50 ms per response) spread over Celery workers: one
    worker against two, each of concurrency 1 (bench/workers.py; its own PostgreSQL,
    redis-server and bench/server.py)."""
    import workers

    from tapyard.testing import ServiceUnavailable

    size = workers.SMOKE_SIZE if runner.args.smoke else workers.SIZE
    try:
        out = workers.run(size, 50.0, 100, max(1, runner.args.repeat), runner.workdir, log)
    except ServiceUnavailable as exc:
        return {"title": "one run's partitions over Celery workers", "tables": [], "skipped": str(exc)}
    runner.failures += out["failures"] + ([] if runner.args.smoke else out["missed"])
    return out


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e,
             "f": scenario_f, "g": scenario_g, "h": scenario_h, "m": scenario_m,
             "p": scenario_p, "w": scenario_w}


# --- output ---------------------------------------------------------------------

def fmt(value: Any, spec: str = "", suffix: str = "") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float | int) and spec:
        return format(value, spec) + suffix
    return f"{value}{suffix}"


def ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def row_notes(row: dict[str, Any]) -> str:
    parts = list(row.get("notes") or [])
    if row.get("skipped"):
        parts.append(row["skipped"])
    if row.get("error"):
        parts.append("FAILED: " + str(row["error"])[:160])
    elif row.get("complete") is False and not row.get("skipped"):
        parts.append(f"INCOMPLETE: {row.get('records')} of {row.get('expected')}")
    if row.get("repeats"):
        parts.append("runs: " + ", ".join(f"{v:,.0f}" for v in row["repeats"] if v))
    return "; ".join(parts).replace("|", "/")


def table_lines(headings: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: the first and last columns left-aligned, the others right-aligned."""
    align = ["---" if i in (0, len(headings) - 1) else "---:" for i in range(len(headings))]
    out = ["| " + " | ".join(headings) + " |", "|" + "|".join(align) + "|"]
    return [*out, *("| " + " | ".join(row) + " |" for row in rows), ""]


def capped_cells(row: dict[str, Any]) -> tuple[str, str, str]:
    """The "finished", "quota used" and "notes" cells of a row that a time cap may have stopped."""
    capped = row.get("stopped") == "cap"
    finished = "stopped at cap" if capped else ("yes" if row.get("ok") else "no")
    quota = row.get("quota_used")
    notes = row_notes(row if not capped else {**row, "error": None, "complete": None})
    return finished, fmt(quota * 100 if quota is not None else None, ".1f", "%"), notes


def late_text(late: dict[str, float] | None) -> str:
    """``p10 / p50 / p90`` of how late admitted requests arrived after their token, in ms."""
    if not late:
        return "-"
    return f"{late['p10']:.2f} / {late['p50']:.2f} / {late['p90']:.2f}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# tapyard benchmarks",
        "",
        f"Last run {results['finished']} on {results['machine']['cpus']} cores "
        f"({results['machine']['processor']}), Python {results['machine']['python']}; "
        f"clients on core {results['machine']['client_cores']}, server on core "
        f"{results['machine']['server_core']}.",
        "",
        "rec/s is records over the client's own measured time (after its imports); wall is the "
        "whole process; peak RSS and CPU come from `wait4` on the client process, CPU per record "
        "includes interpreter start and imports; requests, 429s and faults are counted by the server.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items())),
        "",
        "tapyard: commit {commit}{dirty}, core sources {core_sha256}".format(
            commit=results["tapyard_source"]["commit"],
            dirty=" with uncommitted changes to core/" if results["tapyard_source"]["core_modified"] else "",
            core_sha256=results["tapyard_source"]["core_sha256"],
        ) + (f" (changed to {results['tapyard_source']['changed_during_run_to']} during the run)"
             if results["tapyard_source"].get("changed_during_run_to") else "") + ".",
        "",
    ]
    for peer, status in results["peers"].items():
        if status != "ok":
            lines.append(f"- peer {peer}: {status}")
    for key, scenario in results["scenarios"].items():
        lines += ["", f"## ({key}) {scenario['title']}", ""]
        if scenario.get("load"):
            source = f", tapyard core sources {scenario['tapyard_source']}" if scenario.get("tapyard_source") else ""
            lines += [f"Run {scenario.get('run_at', results['finished'])}{source}, took {scenario['seconds']:g} s; "
                      f"1-minute load average {scenario['load'][0]:g} before, {scenario['load'][1]:g} after.", ""]
        for table in scenario["tables"]:
            if key == "a":
                when = f" (run {table['run_at']})" if table.get("run_at") else ""
                lines += [f"### {table['records']:,} records{when}", "",
                          "| client | records | rec/s | x baseline_httpx | x baseline_sqlite | wall s | "
                          "peak RSS MB | CPU µs/rec | requests | 429s | notes |",
                          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
                for r in table["rows"]:
                    lines.append(
                        f"| {r['label']} | {fmt(r.get('records'), ',')} | {fmt(r.get('records_per_s'), ',.0f')} | "
                        f"{ratio(r.get('x_baseline_httpx'))} | {ratio(r.get('x_baseline_sqlite'))} | "
                        f"{fmt(r.get('wall_s'), '.2f')} | {fmt(r.get('peak_rss_mb'), ',.0f')} | "
                        f"{fmt(r.get('cpu_us_per_record'), '.1f')} | {fmt(r.get('requests'), ',')} | "
                        f"{fmt(r.get('throttled'), ',')} | {row_notes(r)} |")
                lines.append("")
            elif key == "b":
                lines += ["| client | finished | records served | window s | rec/s served | requests | 429s | "
                          "quota used | late ms p10/p50/p90 | peak RSS MB | notes |",
                          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
                for r in table["rows"]:
                    finished, quota, notes = capped_cells(r)
                    lines.append(
                        f"| {r['label']} | {finished} | {fmt(r.get('records_served'), ',')} | "
                        f"{fmt(r.get('window_s'), '.1f')} | {fmt(r.get('served_per_s'), ',.0f')} | "
                        f"{fmt(r.get('requests'), ',')} | {fmt(r.get('throttled'), ',')} | {quota} | "
                        f"{late_text(r.get('late_ms'))} | {fmt(r.get('peak_rss_mb'), ',.0f')} | {notes} |")
                lines.append("")
            elif key == "c":
                lines += [f"### {table['layout']}", "",
                          "| client | rec/s | x baseline_httpx c=1 | seconds | requests | peak RSS MB | notes |",
                          "|---|---:|---:|---:|---:|---:|---|"]
                for r in table["rows"]:
                    lines.append(
                        f"| {r['label']} | {fmt(r.get('records_per_s'), ',.0f')} | {ratio(r.get('x_baseline_httpx'))} | "
                        f"{fmt(r.get('seconds'), '.2f')} | {fmt(r.get('requests'), ',')} | "
                        f"{fmt(r.get('peak_rss_mb'), ',.0f')} | {row_notes(r)} |")
                lines.append("")
            elif key == "d":
                lines += ["| client | all records | records | rec/s | x baseline_httpx | seconds | requests | "
                          "500s served | malformed served | peak RSS MB | notes |",
                          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
                for r in table["rows"]:
                    lines.append(
                        f"| {r['label']} | {'yes' if r.get('complete') else 'NO'} | {fmt(r.get('records'), ',')} | "
                        f"{fmt(r.get('records_per_s'), ',.0f')} | {ratio(r.get('x_baseline_httpx'))} | "
                        f"{fmt(r.get('seconds'), '.2f')} | {fmt(r.get('requests'), ',')} | "
                        f"{fmt(r.get('server_errors'), ',')} | {fmt(r.get('malformed'), ',')} | "
                        f"{fmt(r.get('peak_rss_mb'), ',.0f')} | {row_notes(r)} |")
                lines.append("")
            elif key == "f":
                lines += [f"### {table['convention']}, {table['rate']:g} requests/s, burst {table['burst']:g} "
                          f"(`--headers {table['headers']}`)", ""]
                lines += table_lines(
                    ["client", "finished", "window s", "requests", "429s", "quota used", "notes"],
                    [[r["label"], capped_cells(r)[0], fmt(r.get("window_s"), ".1f"), fmt(r.get("requests"), ","),
                      fmt(r.get("throttled"), ","), capped_cells(r)[1], capped_cells(r)[2]] for r in table["rows"]])
            elif key == "g":
                lines += [f"### rate {table['rate']:g} requests/s in config", ""]
                lines += table_lines(
                    ["client", "finished", "window s", "requests", "rate reached", "of the ceiling", "notes"],
                    [[r["label"], "yes" if r.get("ok") else "no", fmt(r.get("window_s"), ".1f"),
                      fmt(r.get("requests"), ","), fmt(r.get("rate_reached"), ".1f", "/s"),
                      fmt(r["ceiling_used"] * 100 if r.get("ceiling_used") is not None else None, ".1f", "%"),
                      row_notes(r)] for r in table["rows"]])
            elif key == "p":
                lines += [f"### {table['destination']}, {table['records']:,} records", ""]
                if table.get("skipped"):
                    lines += [f"skipped: {table['skipped']}", ""]
                    continue
                base = "baseline_" + table["destination"]
                lines += table_lines(
                    ["client", "rec/s", f"x {base}", "runs rec/s", "wall s", "notes"],
                    [[r["label"], fmt(r.get("records_per_s"), ","), ratio(r.get(f"x_{base}")),
                      ", ".join(fmt(x, ",") for x in r.get("repeats") or []), fmt(r.get("wall_s"), ".2f"),
                      row_notes(r)] for r in table["rows"]])
            elif key == "m":
                import memory

                lines += memory.markdown(scenario)
            elif key == "w":
                import workers

                lines += workers.markdown({"tables": [table]})
            elif key == "h":
                lines += [f"### {table['case']}", ""]
                lines += table_lines(
                    ["client", "finished", "window s", "requests", "refused (429/403)", "quota used", "notes"],
                    [[r["label"], capped_cells(r)[0], fmt(r.get("window_s"), ".1f"), fmt(r.get("requests"), ","),
                      fmt(r.get("throttled"), ","), capped_cells(r)[1], capped_cells(r)[2]] for r in table["rows"]])
            elif key == "e":
                lines += [f"Connectors installed: {', '.join(scenario.get('connectors') or []) or 'none'}.", "",
                          "| command | median ms | min ms | over `python -c pass` ms | runs | timed with |",
                          "|---|---:|---:|---:|---:|---|"]
                for r in table["rows"]:
                    lines.append(f"| `{r['label']}` | {r['median_ms']} | {r['min_ms']} | "
                                 f"{fmt(r.get('over_python_ms'))} | {r['runs']} | {r['tool']} |")
                lines.append("")
    if results.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in results["failures"]]
    return "\n".join(lines) + "\n"


def collect_versions(results: dict[str, Any]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for scenario in results["scenarios"].values():
        for table in scenario["tables"]:
            for row in table["rows"]:
                for k, v in (row.get("versions") or {}).items():
                    if v:
                        versions[k] = v
    return versions


def tapyard_fingerprint() -> dict[str, Any]:
    """The commit and a hash of the core's sources as they are now (others may be editing them)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "core" / "src").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "core"],
                           capture_output=True, text=True)
    return {"commit": head.stdout.strip() or None, "core_modified": bool(dirty.stdout.strip()),
            "core_sha256": digest.hexdigest()[:16]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the tapyard benchmarks.")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no peers: checks the suite works")
    parser.add_argument("--scenarios", default="a,b,c,d,e,f,g,h,m,p,w")
    parser.add_argument("--conventions", default=None,
                        help="scenario f only: the --headers values to run, e.g. epoch,epoch-frac (default all)")
    parser.add_argument("--records", type=int, default=None, help="records for scenario a (default 100k and 1M)")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=None,
                        help="run airbyte-cdk, singer-sdk and dlt (default: yes, except with --smoke)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per client in scenario a; the median is kept")
    parser.add_argument("--profile", action="store_true", help="cProfile tapyard's sync in scenario a")
    parser.add_argument("--output", default=str(RESULTS), help="folder for latest.json and latest.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--fresh", action="store_true",
                        help="do not keep the other scenarios of the last latest.json")
    args = parser.parse_args(argv)
    if args.peers is None:
        args.peers = not args.smoke
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {','.join(SCENARIOS)}")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)

    peers: dict[str, str] = {}
    versions: dict[str, str] = {}
    if args.peers:
        for peer in PEERS:
            peers[peer] = ensure_peer(peer)
            log(f"peer {peer}: {peers[peer]}")
            if peers[peer] == "ok":
                versions.update(peer_versions(peer))
    compile_sources()
    workdir = Path(tempfile.mkdtemp(prefix="tapyard-bench-"))
    runner = Runner(args, workdir, peers)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "client_cores": sorted(CLIENT_CORES) if CLIENT_CORES else "any",
            "server_core": SERVER_CORE if SERVER_CORE is not None else "any",
            "load_before": os.getloadavg(),
        },
        "peers": peers,
        "tapyard_source": tapyard_fingerprint(),
        "scenarios": {},
    }
    try:
        for key in chosen:
            began = time.perf_counter()
            load = os.getloadavg()[0]
            results["scenarios"][key] = SCENARIOS[key](runner)
            results["scenarios"][key]["seconds"] = round(time.perf_counter() - began, 1)
            # Other work on the machine skews numbers: keep the 1-minute load around each scenario.
            results["scenarios"][key]["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            results["scenarios"][key]["run_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            results["scenarios"][key]["tapyard_source"] = results["tapyard_source"]["core_sha256"]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"scratch kept in {workdir}")
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    after = tapyard_fingerprint()
    if after["core_sha256"] != results["tapyard_source"]["core_sha256"]:
        results["tapyard_source"]["changed_during_run_to"] = after["core_sha256"]
        log("warning: tapyard's core sources changed during the run")
    previous = output / "latest.json"
    if not args.fresh and previous.exists():
        # A partial run (say --scenarios b, rerun because the machine was busy)
        # replaces its own scenarios and keeps the others from the last run.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            old = json.loads(previous.read_text())
            if old.get("smoke") == args.smoke:
                new_a, old_a = results["scenarios"].get("a"), old["scenarios"].get("a")
                if new_a and old_a and args.records:
                    # --records reran one size of (a): keep the other sizes.
                    sizes = {t["records"] for t in new_a["tables"]}
                    others = [t for t in old_a["tables"] if t["records"] not in sizes]
                    for table in others:
                        table.setdefault("run_at", old_a.get("run_at", old.get("finished")))
                    for table in new_a["tables"]:
                        table["run_at"] = new_a["run_at"]
                    new_a["tables"] = sorted(others + new_a["tables"], key=lambda t: t["records"])
                kept = {k: v for k, v in old["scenarios"].items() if k not in results["scenarios"]}
                for scenario in kept.values():
                    scenario.setdefault("run_at", old.get("finished"))
                results["scenarios"] = dict(sorted({**kept, **results["scenarios"]}.items()))
                results["peers"] = {**old.get("peers", {}), **results["peers"]}
                results["failures"] = [f for f in old.get("failures", []) if f.split(":")[0] in kept]
    results["machine"]["load_after"] = os.getloadavg()
    results["versions"] = {**collect_versions(results), **versions}
    results["failures"] = results.get("failures", []) + runner.failures
    (output / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (output / "latest.md").write_text(markdown(results))
    log(f"wrote {output / 'latest.json'} and {output / 'latest.md'}")
    for failure in runner.failures:
        log(f"FAILED {failure}")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())

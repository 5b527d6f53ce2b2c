"""Operating jobs: dead letters of a job (list, show, replay, purge), alerts to a
signed webhook and to a command, Prometheus metrics, per-credential limits,
overlap policies and cancelling a run."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.jobs._clock import Clock, write_test_clock
from tapyard.testing import run_cli
from tests.jobs_helpers import _free_port, rows, schedulers, tapyard_env, wait_for
from tests.test_types import Loose, Strict, ValuesConnector

UTC = dt.UTC


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_dead_letters_of_a_job_listed_shown_replayed_and_purged(
    kind: str, tmp_path: Path, register_plugin: Any, request: pytest.FixtureRequest
) -> None:
    pages = [[{"id": 1, "at": 10, "amount": 1}, {"id": 2, "at": 20, "amount": "12.50"}, {"id": 3, "at": 30, "amount": "x"}]]
    connector = ValuesConnector({"pays": pages}, model=Strict, cursor_field="at")

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(connector)

    register_plugin(Plugin(), "values-plugin")
    to = f"sqlite:///{tmp_path / 'pays.db'}" if kind == "sqlite" else str(request.getfixturevalue("postgres_url"))
    assert run_cli("jobs", "add", "pays", "--connector", "values", "--cron", "0 * * * *", "--to", to).exit_code == 0
    ran = run_cli("jobs", "run", "pays", "--json")
    assert json.loads(ran.stdout)["dead_letters"] == 2
    letters = json.loads(run_cli("deadletters", "list", "--job", "pays", "--json").stdout)
    assert [json.loads(d["raw"])["id"] for d in letters] == [2, 3]
    shown = run_cli("deadletters", "show", str(letters[0]["id"]), "--job", "pays", "--json")
    assert json.loads(shown.stdout)["stream"] == "pays" and "amount" in json.loads(shown.stdout)["error"]
    assert "no dead letter with id 999" in run_cli("deadletters", "show", "999", "--job", "pays").stderr

    connector.model = Loose  # the schema now takes "12.50" (not "x")
    replayed = run_cli("deadletters", "replay", "--job", "pays", "--json")
    assert json.loads(replayed.stdout)[0]["replayed"] == 1 and replayed.exit_code == 1  # one still dead

    refused = run_cli("deadletters", "purge", "--job", "pays")
    assert refused.exit_code == 1 and "purge 2 dead letters (1 never replayed)" in refused.stderr and "--yes" in refused.stderr
    only = run_cli("deadletters", "purge", "--job", "pays", "--replayed-only", "--yes", "--json")
    assert json.loads(only.stdout) == {"purged": 1}
    assert len(json.loads(run_cli("deadletters", "list", "--job", "pays", "--replayed", "--json").stdout)) == 1
    assert json.loads(run_cli("deadletters", "purge", "--job", "pays", "--yes", "--json").stdout) == {"purged": 1}
    assert json.loads(run_cli("deadletters", "list", "--job", "pays", "--replayed", "--json").stdout) == []


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    _Hooks.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks", _Hooks.received
    server.shutdown()
    server.server_close()


def test_a_failing_job_alerts_a_signed_webhook_and_a_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: tuple[str, list[Any]]
) -> None:
    url, received = webhook
    monkeypatch.setenv("TAPYARD_ALERT_KEY", "alert-secret")
    out = tmp_path / "alert.json"
    command = f"command:{sys.executable} -c \"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())\""
    assert run_cli("jobs", "add", "broken", "--connector", "sample", "--cron", "0 * * * *", "--retries", "0",
                   "--to", f"sqlite:///{tmp_path}", "--on-failure", f"webhook:{url}", "--on-failure", command).exit_code == 0
    first = run_cli("jobs", "run", "broken")
    assert first.exit_code == 1 and "failed" in first.stderr
    (headers, body), = received
    payload = json.loads(body)
    assert payload["kind"] == "failure" and payload["job"] == "broken" and payload["status"] == "failed"
    stamp = headers["X-Tapyard-Timestamp"]
    expected = hmac.new(b"alert-secret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Tapyard-Signature"] == f"sha256={expected}"
    assert json.loads(out.read_text())["run_id"] == payload["run_id"]
    run_cli("jobs", "run", "broken")
    run_cli("jobs", "run", "broken")
    assert [json.loads(b)["kind"] for _, b in received] == ["failure", "failure", "repeated_failure"]


def test_metrics_are_served_in_prometheus_format(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'control.db'}"
    env = tapyard_env(tmp_path / "home", database, TAPYARD_VAULT_KEY="k" * 43 + "=")
    import subprocess

    expires = time.time() + 3600
    token = {"client_id": "c", "client_secret": "s3cret-value", "expires_at": f"{expires:.3f}"}
    subprocess.run([sys.executable, "-m", "tapyard", "creds", "add", "oauth", "--connector", "sample", "--kind",
                    "oauth2_client_credentials", "--from-json", "-"], input=json.dumps(token), text=True, env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "tapyard", "jobs", "add", "m", "--connector", "sample", "--cron", "0 0 1 1 *",
                    "--config", '{"records_per_stream": 20}', "--to", f"sqlite:///{tmp_path / 'd.db'}"], env=env, check=True)
    subprocess.run([sys.executable, "-m", "tapyard", "jobs", "add", "o", "--connector", "sample", "--cron", "0 0 1 1 *",
                    "--creds", "oauth", "--config", '{"auth": "oauth2", "server_client_secret": "s3cret-value"}'], env=env, check=True)
    subprocess.run([sys.executable, "-m", "tapyard", "jobs", "run", "m"], env=env, check=True, capture_output=True)
    port = _free_port()
    with schedulers(env, 1, "--metrics-port", str(port), "--poll", "0.2"):
        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return str(response.read().decode())
            except OSError:
                return None

        text = wait_for(scrape, 30, "the metrics server")
    assert 'tapyard_runs{status="ok"} 1.0' in text
    assert 'tapyard_records_24h{job="m",stream="orders"} 20.0' in text
    assert 'tapyard_http_requests_24h{job="m",outcome="requests"} 3.0' in text
    assert "tapyard_oldest_running_run_age_seconds 0.0" in text
    assert "tapyard_schedule_lag_seconds_count" in text
    (line,) = [x for x in text.splitlines() if x.startswith('tapyard_credential_expires_in_seconds{credential="oauth"}')]
    assert 3500 < float(line.split()[-1]) <= 3600
    assert "s3cret-value" not in text


def _long(name: str, *extra: str, tmp_path: Path) -> None:
    config = {"records_per_stream": 2000, "page_size": 10, "latency_ms": 30}
    result = run_cli("jobs", "add", name, "--connector", "sample", "--cron", "*/5 * * * *", "--config", json.dumps(config),
                     "--to", f"sqlite:///{tmp_path / (name + '.db')}", "--retries", "0", *extra)
    assert result.exit_code == 0, result.stderr


def test_overlap_policies_and_cancelling_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tapyard.jobs._scheduler import Scheduler
    from tapyard.jobs._store import ControlPlane

    clock_file = tmp_path / "clock.json"
    start = dt.datetime(2026, 5, 1, 10, 0, 10, tzinfo=UTC)
    write_test_clock(clock_file, start - dt.timedelta(minutes=1), rate=0)
    monkeypatch.setenv("TAPYARD_TEST_CLOCK", str(clock_file))
    for name, policy in (("skipper", "skip"), ("buffered", "buffer-one"), ("canceller", "cancel-other")):
        _long(name, "--overlap", policy, tmp_path=tmp_path)
    cp = ControlPlane()
    scheduler = Scheduler(cp, heartbeat=0.5, poll=0.1, echo=False, the_clock=Clock(str(clock_file)))
    try:
        write_test_clock(clock_file, start, rate=0)
        scheduler.once()
        wait_for(lambda: len(cp.runs(statuses=["running"])) == 3, 60, "three runs", step=0.1)
        for minutes in (5, 10):
            write_test_clock(clock_file, start + dt.timedelta(minutes=minutes), rate=0)
            scheduler.once()
        ticks = {(t.job, t.status) for t in rows(cp.url_with_password, "SELECT job, status FROM ticks")}
        assert ("skipper", "skipped") in ticks  # the second and third tick
        assert [t.status for t in rows(cp.url_with_password, "SELECT status FROM ticks WHERE job = 'buffered' ORDER BY id")] == ["run", "run", "skipped"]
        by_job = {job: [r.status for r in sorted(cp.runs(job=job), key=lambda r: r.id)] for job in ("skipper", "buffered", "canceller")}
        assert by_job["skipper"] == ["running"]
        assert by_job["buffered"] == ["running", "queued"]
        assert by_job["canceller"][0] == "cancelling" and by_job["canceller"][1:] == ["cancelled", "queued"]
        # runs cancel: the running one stops at its next heartbeat
        skipper = cp.runs(job="skipper")[0]
        assert run_cli("runs", "cancel", str(skipper.id)).exit_code == 0
        cancelled = wait_for(lambda: cp.run(skipper.id).status == "cancelled" and cp.run(skipper.id), 20, "the cancel")
        assert cancelled.ended_at - time.time() < 5
        # the cancelled run of cancel-other ended; its successor starts
        def progressed() -> bool:
            scheduler.once()
            newest, *_, oldest = cp.runs(job="canceller")  # newest first
            return oldest.status == "cancelled" and newest.status in ("starting", "running", "ok")
        wait_for(progressed, 30, "cancel-other's successor to start", step=0.2)
    finally:
        scheduler.drain_seconds = 0
        scheduler.drain()


def test_per_credential_limit_holds_across_schedulers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "k" * 43 + "=")
    stored = run_cli("creds", "add", "shared", "--kind", "api_key", "--connector", "sample", "--from-json", "-",
                     input='{"api_key": "sk_shared_key_123"}')
    assert stored.exit_code == 0, stored.stderr
    clock_file = tmp_path / "clock.json"
    start = dt.datetime(2026, 5, 1, 10, 0, 10, tzinfo=UTC)
    write_test_clock(clock_file, start - dt.timedelta(minutes=1), rate=0)
    monkeypatch.setenv("TAPYARD_TEST_CLOCK", str(clock_file))
    config = {"records_per_stream": 300, "page_size": 10, "latency_ms": 20, "auth": "api_key", "server_api_key": "sk_shared_key_123"}
    for i in range(4):
        added = run_cli("jobs", "add", f"c{i}", "--connector", "sample", "--cron", "0 10 * * *", "--creds", "shared",
                        "--config", json.dumps(config), "--to", f"sqlite:///{tmp_path / f'c{i}.db'}")
        assert added.exit_code == 0, added.stderr
    write_test_clock(clock_file, start, rate=0)
    import os

    database = f"sqlite:///{Path(os.environ['TAPYARD_HOME']) / 'control.db'}"
    env = tapyard_env(Path(os.environ["TAPYARD_HOME"]), database, TAPYARD_TEST_CLOCK=str(clock_file),
                      TAPYARD_VAULT_KEY="k" * 43 + "=")
    most = 0
    with schedulers(env, 2, "--per-credential", "1", "--poll", "0.05", "--heartbeat", "1"):
        def done() -> bool:
            nonlocal most
            active = rows(database, "SELECT id FROM runs WHERE status IN ('starting','running')")
            most = max(most, len(active))
            return len(rows(database, "SELECT id FROM runs WHERE status = 'ok'")) == 4
        wait_for(done, 120, "four runs", step=0.05)
    assert most == 1


def test_runs_logs_follow_prints_lines_as_they_come_and_ends_with_the_run(tmp_path: Path) -> None:
    import subprocess

    database = f"sqlite:///{tmp_path / 'control.db'}"
    env = tapyard_env(tmp_path / "home", database)
    config = {"records_per_stream": 600, "page_size": 10, "latency_ms": 10}
    subprocess.run([sys.executable, "-m", "tapyard", "jobs", "add", "f", "--connector", "sample", "--cron", "0 0 1 1 *",
                    "--config", json.dumps(config), "--to", f"sqlite:///{tmp_path / 'd.db'}"], env=env, check=True)
    job = subprocess.Popen([sys.executable, "-m", "tapyard", "jobs", "run", "f", "--heartbeat", "0.3"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: rows(database, "SELECT id FROM runs WHERE status = 'running'"), 60, "the run")
        follow = subprocess.run([sys.executable, "-m", "tapyard", "runs", "logs", "1", "--follow", "--interval", "0.1"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert job.wait(60) == 0
    finally:
        job.kill()
    lines = [json.loads(line) for line in follow.stdout.splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "end" and lines[-1]["status"] == "ok"
    assert all(line["run_id"] == 1 and line["job"] == "f" and line["connector"] == "sample" for line in lines)
    assert {line["stream"] for line in lines if line.get("event") == "stream_done"} == {"customers", "orders", "events"}


def test_state_reset_in_a_terminal_shows_the_change_and_asks(tmp_path: Path) -> None:
    import os

    from tests.terminal import TAPYARD, spawn

    env = {"TAPYARD_HOME": os.environ["TAPYARD_HOME"]}
    to = f"sqlite:///{tmp_path / 'd.db'}"
    assert run_cli("jobs", "add", "t", "--connector", "sample", "--cron", "0 * * * *", "--to", to,
                   "--config", '{"records_per_stream": 20}').exit_code == 0
    assert run_cli("jobs", "run", "t").exit_code == 0
    cursor = json.loads(run_cli("state", "show", "t", "orders", "--json").stdout)["orders"]["cursor"]
    term = spawn([TAPYARD, "state", "reset", "t", "orders"], env=env)
    term.expect(r"orders: cursor .* -> \(none\)")
    term.expect(r"reset the state of 1 stream\(s\)\? \[y/N\]")
    term.send("n\r")
    assert term.wait() == 1
    assert "nothing changed" in term.screen
    assert json.loads(run_cli("state", "show", "t", "orders", "--json").stdout)["orders"]["cursor"] == cursor
    term = spawn([TAPYARD, "state", "reset", "t", "orders"], env=env)
    term.expect(r"\[y/N\]")
    term.send("y\r")
    assert term.wait() == 0
    assert json.loads(run_cli("state", "show", "t", "orders", "--json").stdout)["orders"]["cursor"] is None


def test_a_credential_refused_by_its_token_server_alerts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: tuple[str, list[Any]]
) -> None:
    url, received = webhook
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "k" * 43 + "=")
    stored = run_cli("creds", "add", "stale-oauth", "--connector", "sample", "--kind", "oauth2_client_credentials",
                     "--from-json", "-", input='{"client_id": "c", "client_secret": "revoked-secret"}')
    assert stored.exit_code == 0, stored.stderr
    config = {"records_per_stream": 5, "auth": "oauth2", "server_client_secret": "the-current-secret"}
    assert run_cli("jobs", "add", "o", "--connector", "sample", "--cron", "0 * * * *", "--creds", "stale-oauth",
                   "--retries", "3", "--config", json.dumps(config), "--to", f"sqlite:///{tmp_path / 'o.db'}",
                   "--on-failure", f"webhook:{url}").exit_code == 0
    result = run_cli("jobs", "run", "o")
    assert result.exit_code == 1 and "revoked-secret" not in result.stderr
    (_, body), = received
    payload = json.loads(body)
    assert payload["kind"] == "credential" and payload["retry_run_id"]  # alerted although a retry follows
    assert "revoked-secret" not in body.decode()

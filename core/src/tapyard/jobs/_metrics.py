"""Prometheus metrics of a scheduler (``tapyard scheduler run --metrics-port PORT``).

Read from the control plane at each scrape, so any scheduler reports the
whole fleet's runs (label ``job``); figures over ended runs cover the last 24
hours (``*_24h``), so they move down as well as up. The schedule lag is this
scheduler's own: from the instant a run was due to the moment it was started.

- ``tapyard_runs{status}``: runs by status (all time)
- ``tapyard_run_duration_seconds_24h{job}``: a summary (count, sum) of ended runs
- ``tapyard_records_24h{job,stream}``, ``tapyard_dead_letters_24h{job,stream}``
- ``tapyard_http_requests_24h{job,outcome}``: requests, retries, throttled (429),
  server_errors, transport_errors
- ``tapyard_rate_limit_wait_seconds_24h{job}``
- ``tapyard_oldest_running_run_age_seconds``
- ``tapyard_oldest_waiting_run_seconds``: how long the oldest run claimed but not
  started yet (``starting``; with Celery, in the broker waiting for a worker) has waited
- ``tapyard_schedule_lag_seconds``: a histogram of tick-to-start lag
- ``tapyard_scheduler_running_runs``: runs this scheduler is running
- ``tapyard_credential_expires_in_seconds{credential}``: for each vault credential a
  job names whose OAuth token carries an expiry, the seconds until it expires
  (negative: expired); read from the vault at most once a minute (each read is
  audited), and absent when the vault cannot be opened here
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from tapyard.jobs import _db as db
from tapyard.jobs._scheduler import LAG_BUCKETS

__all__ = ["serve"]


class _Collector:
    def __init__(self, cp: Any, scheduler: Any) -> None:
        self.cp, self.scheduler = cp, scheduler
        self.expiries: dict[str, float] = {}
        self.expiries_read = 0.0

    def _expiries(self) -> dict[str, float]:
        """Each job credential's token expiry (epoch seconds), cached for a minute."""
        if time.time() - self.expiries_read < 60:
            return self.expiries
        self.expiries_read = time.time()
        found: dict[str, float] = {}
        wanted = {(j.spec.creds, j.spec.connector) for j in self.cp.jobs() if j.spec.creds}
        if wanted:
            import contextlib

            import tapyard

            with contextlib.suppress(Exception), tapyard.open_vault() as vault:
                for name, connector in sorted(wanted):
                    with contextlib.suppress(Exception):
                        field = vault.get(name, connector=connector, actor="metrics").fields.get("expires_at")
                        if field is not None and field.get_secret_value():
                            found[name] = float(field.get_secret_value())
        self.expiries = found
        return found

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            GaugeMetricFamily,
            HistogramMetricFamily,
            SummaryMetricFamily,
        )

        now = time.time()
        since = now - 86400
        with self.cp.engine.connect() as conn:
            by_status = conn.execute(sa.select(db.runs.c.status, sa.func.count()).group_by(db.runs.c.status)).all()
            ended = conn.execute(
                sa.select(db.runs.c.job, db.runs.c.started_at, db.runs.c.ended_at, db.runs.c.streams, db.runs.c.http)
                .where(db.runs.c.ended_at >= since)
            ).all()
            oldest = conn.execute(
                sa.select(sa.func.min(db.runs.c.started_at)).where(db.runs.c.status.in_(("running", "cancelling")))
            ).scalar()
            waiting = conn.execute(
                sa.select(sa.func.min(sa.func.coalesce(db.runs.c.claimed_at, db.runs.c.created_at)))
                .where(db.runs.c.status == "starting")
            ).scalar()
        runs = GaugeMetricFamily("tapyard_runs", "Runs by status", labels=["status"])
        for status, count in by_status:
            runs.add_metric([status], count)
        yield runs
        duration: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        records: dict[tuple[str, str], int] = defaultdict(int)
        dead: dict[tuple[str, str], int] = defaultdict(int)
        http: dict[tuple[str, str], int] = defaultdict(int)
        wait: dict[str, float] = defaultdict(float)
        for row in ended:
            if row.started_at is not None:
                duration[row.job][0] += 1
                duration[row.job][1] += row.ended_at - row.started_at
            for stream in json.loads(row.streams) if row.streams else ():
                records[row.job, stream["name"]] += stream["records"]
                dead[row.job, stream["name"]] += stream["dead_letters"]
            counters = json.loads(row.http) if row.http else {}
            for outcome in ("requests", "retries", "throttled", "server_errors", "transport_errors"):
                http[row.job, outcome] += counters.get(outcome, 0)
            wait[row.job] += counters.get("wait_ms", 0) / 1000
        summary = SummaryMetricFamily("tapyard_run_duration_seconds_24h", "Duration of runs ended in the last 24 h", labels=["job"])
        for job, (count, total) in duration.items():
            summary.add_metric([job], count_value=int(count), sum_value=total)
        yield summary
        family: GaugeMetricFamily
        for name, help_text, data in (
            ("tapyard_records_24h", "Records written by runs ended in the last 24 h", records),
            ("tapyard_dead_letters_24h", "Dead letters of runs ended in the last 24 h", dead),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["job", "stream"])
            for (job, stream), value in data.items():
                family.add_metric([job, stream], value)
            yield family
        requests = GaugeMetricFamily("tapyard_http_requests_24h", "HTTP requests of runs ended in the last 24 h", labels=["job", "outcome"])
        for (job, outcome), count in http.items():
            requests.add_metric([job, outcome], count)
        yield requests
        waited = GaugeMetricFamily("tapyard_rate_limit_wait_seconds_24h", "Seconds runs waited for rate limits and retries", labels=["job"])
        for job, seconds in wait.items():
            waited.add_metric([job], seconds)
        yield waited
        yield GaugeMetricFamily(
            "tapyard_oldest_running_run_age_seconds", "Age of the oldest running run", value=0 if oldest is None else now - oldest
        )
        yield GaugeMetricFamily(
            "tapyard_oldest_waiting_run_seconds", "Seconds the oldest claimed run not started yet (with Celery: in the queue) has waited",
            value=0 if waiting is None else now - waiting,
        )
        lag = self.scheduler.lag
        buckets = [(str(b), c) for b, c in zip(LAG_BUCKETS, lag.counts, strict=True)] + [("+Inf", lag.total)]
        yield HistogramMetricFamily(
            "tapyard_schedule_lag_seconds", "From the instant a run was due to its start, this scheduler",
            buckets=buckets, sum_value=lag.sum,
        )
        yield GaugeMetricFamily("tapyard_scheduler_running_runs", "Runs this scheduler is running", value=len(self.scheduler.children))
        expiring = GaugeMetricFamily(
            "tapyard_credential_expires_in_seconds", "Seconds until a job credential's OAuth token expires", labels=["credential"]
        )
        for name, at in self._expiries().items():
            expiring.add_metric([name], at - now)
        yield expiring


def serve(cp: Any, scheduler: Any, port: int, host: str = "127.0.0.1") -> int:
    """Serve the metrics on ``host:port`` (0: a free port) in a thread; the port."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(cp, scheduler))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_address[1])

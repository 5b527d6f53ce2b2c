"""OpenTelemetry traces (issue 18 item 6): a traced sync's spans reach an exporter
as one tree (run -> stream -> page -> HTTP attempt), and with tracing off nothing
of opentelemetry is ever imported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tapyard
from tapyard.base import reset_tracing
from tests.scripted_server import Reply, ScriptedServer
from tests.test_bounds import connector, page


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # the global provider can be set once per process: a test's own provider is
    # handed to tapyard's tracer through the proxy
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider, raising=False)
    monkeypatch.setenv("TAPYARD_TRACING", "1")
    reset_tracing()
    yield memory
    reset_tracing()


def test_a_traced_sync_is_one_tree_of_spans(exporter: object, tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script(
            "/items",
            Reply(503),  # retried: two attempts under one page span
            page([1, 2], "b"),
            page([3], None),
        )
        result = tapyard.sync(
            connector(server.url), {}, to=f"sqlite:///{tmp_path / 'x.db'}",
            http={"backoff_base": 0.01},
        )
    assert result.ok and result.records == 3
    spans = exporter.get_finished_spans()  # type: ignore[attr-defined]
    by_name: dict[str, list[object]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (run,) = by_name["tapyard.run"]
    (stream,) = by_name["tapyard.stream"]
    pages = by_name["tapyard.page"]
    attempts = by_name["HTTP GET"]
    assert len(pages) == 2 and len(attempts) == 3
    assert stream.parent.span_id == run.context.span_id  # type: ignore[attr-defined]
    assert all(p.parent.span_id == stream.context.span_id for p in pages)  # type: ignore[attr-defined]
    page_ids = {p.context.span_id for p in pages}  # type: ignore[attr-defined]
    assert all(a.parent.span_id in page_ids for a in attempts)  # type: ignore[attr-defined]
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}  # type: ignore[attr-defined]
    statuses = sorted(a.attributes["http.response.status_code"] for a in attempts)  # type: ignore[attr-defined]
    assert statuses == [200, 200, 503]
    assert run.attributes["tapyard.records"] == 3 and run.attributes["tapyard.destination"] == "sqlite"  # type: ignore[attr-defined]
    assert stream.attributes["tapyard.stream"] == "items"  # type: ignore[attr-defined]


def test_streams_in_worker_threads_keep_their_parent(exporter: object, tmp_path: Path) -> None:
    from tapyard import RestConnector, RestStream
    from tests.test_bounds import Item

    with ScriptedServer() as server:
        for name in ("a", "b", "c"):
            server.always(f"/{name}", page([1], None))
        conn = RestConnector(
            name="traced-threads",
            base_url=server.url,
            streams=[
                RestStream(name=n, path=f"/{n}", schema_model=Item,
                           paginator={"kind": "cursor", "cursor_path": "next", "cursor_param": "cursor",
                                      "has_more_field": None})
                for n in ("a", "b", "c")
            ],
        )
        assert tapyard.sync(conn, {}, to=f"sqlite:///{tmp_path / 'x.db'}", concurrency=3).ok
    spans = exporter.get_finished_spans()  # type: ignore[attr-defined]
    (run,) = [s for s in spans if s.name == "tapyard.run"]
    streams = [s for s in spans if s.name == "tapyard.stream"]
    assert len(streams) == 3
    assert all(s.parent.span_id == run.context.span_id for s in streams)


def test_with_tracing_off_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    # Nor is cryptography: a sync with no credential needs no vault (the limiter
    # store asks only for the data directory).
    code = (
        "import sys, tapyard\n"
        "from tests.scripted_server import ScriptedServer\n"
        "from tests.test_bounds import connector, page\n"
        "with ScriptedServer() as server:\n"
        "    server.always('/items', page([1], None))\n"
        f"    assert tapyard.sync(connector(server.url), {{}}, to='sqlite:///{tmp_path / 'x.db'}').ok\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry', 'cryptography'))]\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TAPYARD_TRACING"))}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr[-2000:]


def test_tracing_asked_for_with_exporter_none_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from tapyard.base import tracing_enabled

    monkeypatch.delenv("TAPYARD_TRACING", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    reset_tracing()
    try:
        assert tracing_enabled() is False
        monkeypatch.setenv("TAPYARD_TRACING", "0")
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
        reset_tracing()
        assert tracing_enabled() is False
    finally:
        reset_tracing()

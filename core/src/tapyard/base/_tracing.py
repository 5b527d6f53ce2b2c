"""OpenTelemetry traces of a sync, optional and free when off.

A sync traced is one tree of spans::

    tapyard.run            a call of tapyard.sync (connector, destination, streams)
      tapyard.stream       one stream (or one partition of it) read and written
        tapyard.page       one logical request for a page, retries included
          HTTP GET         each attempt on the wire (status code, attempt number)
        tapyard.call       any other request (a token endpoint), likewise
          HTTP POST

Tracing is on when the ``otel`` extra is installed (``pip install 'tapyard[otel]'``)
and ``TAPYARD_TRACING=1`` is set, or ``OTEL_TRACES_EXPORTER`` names an exporter
other than ``none``; ``TAPYARD_TRACING=0`` turns it off whatever else is set. The
exporter is OpenTelemetry's own business: when the application has installed no
tracer provider, tapyard installs one with the exporter ``OTEL_TRACES_EXPORTER``
names (``otlp``, ``console``; the standard ``OTEL_EXPORTER_OTLP_*`` and
``OTEL_SERVICE_NAME`` variables configure it), else it uses the application's.

Off, nothing of ``opentelemetry`` is imported and :func:`trace_span` hands back one
shared do-nothing context manager (a function call per request; bench a does not
see it). Log records get ``trace_id`` and ``span_id`` attributes while tracing is
on (:class:`TraceIdFilter`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["TraceIdFilter", "reset_tracing", "trace_context", "trace_span", "tracing_enabled"]

_state: dict[str, Any] = {}
_lock = threading.Lock()


class _NoSpan:
    """What :func:`trace_span` yields with tracing off: every method does nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def record_exception(self, exc: BaseException) -> None:
        return None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def tracing_enabled() -> bool:
    """Whether syncs are traced (see the module docstring); decided once per process
    (:func:`reset_tracing` decides again)."""
    on = _state.get("on")
    if on is None:
        with _lock:
            on = _state.get("on")
            if on is None:
                on = _decide()
                _state["on"] = on
    return bool(on)


def reset_tracing() -> None:
    """Forget the decision, so that the next :func:`tracing_enabled` reads the variables again."""
    with _lock:
        _state.clear()


def _decide() -> bool:
    switch = os.environ.get("TAPYARD_TRACING", "").strip().lower()
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if switch in ("0", "false", "off", "no"):
        return False
    if switch not in ("1", "true", "on", "yes") and exporter in ("", "none"):
        return False
    try:
        from opentelemetry import trace
    except ImportError:
        logging.getLogger("tapyard").warning(
            "tracing asked for, but OpenTelemetry is not installed: pip install 'tapyard[otel]'"
        )
        return False
    _install_provider(trace, exporter)
    _state["tracer"] = trace.get_tracer("tapyard")
    _state["trace"] = trace
    return True


def _install_provider(trace: Any, exporter: str) -> None:
    """Install a tracer provider with the named exporter, unless the application has one."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) or exporter in ("", "none"):
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "tapyard")}))
    for name in exporter.split(","):
        name = name.strip()
        span_exporter: Any = None
        if name == "console":
            span_exporter = ConsoleSpanExporter()
        elif name == "otlp":
            with contextlib.suppress(ImportError):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                span_exporter = OTLPSpanExporter()
        if span_exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)


def trace_span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: Any = None, client: bool = False
) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` around a ``with`` block, the current one's child (or
    ``parent``'s, a context from :func:`trace_context` in another thread); a do-nothing
    context manager when tracing is off. ``client`` marks an outgoing request."""
    if not tracing_enabled():
        return _NO_SPAN
    tracer = _state["tracer"]
    kind = _state["trace"].SpanKind.CLIENT if client else _state["trace"].SpanKind.INTERNAL
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    return tracer.start_as_current_span(name, context=parent, attributes=clean, kind=kind)  # type: ignore[no-any-return]


def trace_context() -> Any:
    """The current trace context, to parent spans made in another thread (``None`` when off)."""
    if not tracing_enabled():
        return None
    from opentelemetry import context

    return context.get_current()


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, empty when not traced) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = span_id = ""
        if tracing_enabled():
            current = _state["trace"].get_current_span().get_span_context()
            if current.is_valid:
                trace_id, span_id = f"{current.trace_id:032x}", f"{current.span_id:016x}"
        record.trace_id, record.span_id = trace_id, span_id
        return True

"""Shared fixtures: an isolated data directory, a fresh plugin manager per test,
and a network guard that refuses every address but loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"tests may only connect to loopback, not {host!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _network_guard() -> Iterator[None]:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from tapyard._plugins import reset_plugin_manager

    monkeypatch.setenv("TAPYARD_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("TAPYARD_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("TAPYARD_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("TAPYARD_QUIET", "1")
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def register_plugin() -> Iterator[Any]:
    """Register throwaway plugins for one test (datasette style); all are unregistered after."""
    from tapyard._plugins import register_plugin as _register
    from tapyard._plugins import unregister_plugin

    registered: list[str] = []

    def register(plugin: object, name: str) -> None:
        _register(plugin, name=name)
        registered.append(name)

    yield register
    for name in registered:
        with contextlib.suppress(ValueError):
            unregister_plugin(name=name)

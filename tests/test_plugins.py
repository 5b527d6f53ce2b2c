"""Plugin discovery: entry points, an outside package, broken plugins, the allow-list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.plugins._manager import PluginWarning, get_plugin_manager

ACME = '''
from pydantic import BaseModel
from tapyard import RestConnector, RestStream, hookimpl

class Widget(BaseModel):
    id: int
    name: str

connector = RestConnector(
    name="acme",
    description="Acme widgets",
    base_url="http://127.0.0.1:9",
    auth_kinds=["api_key"],
    streams=[RestStream(name="widgets", path="/widgets", schema_model=Widget)],
)

@hookimpl
def tapyard_register_connectors(register):
    register(connector)
'''


ACME_MANIFEST = """
plugin_api = 1
publisher = "Acme Corp"

[[connector]]
name = "acme"
description = "Acme widgets"
streams = ["widgets"]
auth_kinds = ["api_key"]
"""


def make_package(
    root: Path, name: str, module_source: str, *, requires: str = "tapyard>=0.1,<0.2",
    manifest: str | None = None,
) -> Path:
    """Write a connector distribution ``tapyard-<name>`` into ``root`` (with a
    ``tapyard-manifest.toml`` when ``manifest`` is given)."""
    pkg = root / name
    src = pkg / "src" / f"tapyard_{name}"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text(textwrap.dedent(module_source))
    if manifest is not None:
        (src / "tapyard-manifest.toml").write_text(textwrap.dedent(manifest))
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "tapyard-{name}"
            version = "2.3.4"
            dependencies = ["{requires}"]

            [project.entry-points.tapyard]
            {name} = "tapyard_{name}"

            [tool.hatch.build.targets.wheel]
            packages = ["src/tapyard_{name}"]
            """
        )
    )
    return pkg


def install(pkg: Path, target: Path) -> None:
    """A real pip install of the package (no dependencies: the core is already here)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(pkg)],
        check=True,
        capture_output=True,
    )


def cli(*args: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **env}
    if path is not None:
        environ["PYTHONPATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "tapyard", *args], capture_output=True, text=True, env=environ, timeout=60
    )


@pytest.mark.slow
@pytest.mark.parametrize("manifest", [None, ACME_MANIFEST], ids=["imported", "from-manifest"])
def test_outside_package_appears_without_core_change(tmp_path: Path, manifest: str | None) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    target = tmp_path / "site"
    install(make_package(tmp_path, "acme", ACME, manifest=manifest), target)
    done = cli("connectors", "list", "--json", path=target)
    assert done.returncode == 0, done.stderr
    listed = {c["name"]: c for c in json.loads(done.stdout)}
    assert listed["acme"]["version"] == "2.3.4"
    assert listed["acme"]["distribution"] == "tapyard-acme"
    assert listed["acme"]["streams"] == ["widgets"]
    assert listed["acme"]["auth_kinds"] == ["api_key"]
    assert "sample" in listed

    # without it on the path it is gone again
    done = cli("connectors", "list", "--json")
    assert "acme" not in {c["name"] for c in json.loads(done.stdout)}


@pytest.mark.slow
def test_broken_plugin_is_skipped_with_a_warning_and_strict_fails(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    target = tmp_path / "site"
    install(make_package(tmp_path, "broken", "raise ImportError('no module named vendorsdk')\n"), target)
    done = cli("connectors", "list", "--json", path=target)
    assert done.returncode == 0
    assert "sample" in {c["name"] for c in json.loads(done.stdout)}
    assert "skipping plugin 'broken'" in done.stderr and "vendorsdk" in done.stderr

    strict = cli("--strict-plugins", "connectors", "list", path=target)
    assert strict.returncode == 1
    assert strict.stderr.startswith("Error: plugin 'broken' failed to load")


@pytest.mark.slow
@pytest.mark.parametrize("manifest", [None, ACME_MANIFEST], ids=["imported", "from-manifest"])
def test_core_version_mismatch_warns(tmp_path: Path, manifest: str | None) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    target = tmp_path / "site"
    install(make_package(tmp_path, "acme", ACME, requires="tapyard>=9,<10", manifest=manifest), target)
    done = cli("connectors", "list", "--json", path=target)
    assert done.returncode == 0
    assert "plugin 'acme' (tapyard-acme 2.3.4) supports tapyard" in done.stderr
    assert ">=9" in done.stderr and "<10" in done.stderr and "it may not work" in done.stderr
    assert done.stderr.count("supports tapyard") == 1
    checked = cli("connectors", "list", "--check", "--json", path=target)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.count("supports tapyard") == 1  # once, though --check reads both


def test_allow_list_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPYARD_LOAD_PLUGINS", "")
    assert "sample" not in tapyard.collect_connectors()
    tapyard.plugins._manager.reset_plugin_manager()
    monkeypatch.setenv("TAPYARD_LOAD_PLUGINS", "sample")
    assert "sample" in tapyard.collect_connectors()


def test_builtins_are_registered_as_a_plugin() -> None:
    pm = get_plugin_manager()
    assert pm.has_plugin("tapyard.builtins.paginators") and pm.has_plugin("tapyard.builtins.auth")
    assert set(tapyard.collect_paginators()) >= {
        "none", "cursor", "next_url", "page_token", "offset", "page_number", "link_header"
    }
    assert set(tapyard.collect_auth_strategies()) >= {"api_key", "bearer", "basic"}
    assert set(tapyard.collect_destinations()) >= {"sqlite", "jsonl"}


def test_plugin_overrides_a_builtin_paginator(register_plugin: Any) -> None:
    class Mine(tapyard.CursorPaginator):
        pass

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_paginators(self, register: Any) -> None:
            register("cursor", Mine)

    register_plugin(Plugin(), name="mine")
    with pytest.warns(PluginWarning, match="replaces"):
        assert tapyard.collect_paginators()["cursor"] is Mine


def test_plugin_api_mismatch_is_refused(register_plugin: Any) -> None:
    from pydantic import BaseModel

    class Old(tapyard.RestConnector):
        plugin_api = 0

    class Row(BaseModel):
        id: int

    old = Old(name="old", base_url="http://127.0.0.1:9", streams=[tapyard.RestStream(name="r", path="/", schema_model=Row)])

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(old)

    register_plugin(Plugin(), name="old")
    with pytest.warns(PluginWarning, match="plugin API 0"):
        assert "old" not in tapyard.collect_connectors()


def test_broken_registration_hook_does_not_take_the_listing_down(register_plugin: Any) -> None:
    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            raise RuntimeError("boom")

    register_plugin(Plugin(), name="boom")
    with pytest.warns(PluginWarning, match="boom"):
        assert "sample" in tapyard.collect_connectors()


def test_unknown_connector_names_the_known_ones() -> None:
    with pytest.raises(tapyard.ConnectorNotFoundError, match=r"unknown connector 'acme' \(installed: .*sample.*\); install the package that provides it"):
        tapyard.get_connector("acme")

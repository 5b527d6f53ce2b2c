"""What a third-party connector author meets: the testing extra, tapyard.testing's
helpers, running the CLI from a test, and the checks a declarative connector gets
at load and at run time."""

from __future__ import annotations

import json
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import tapyard
from tapyard.testing import fake_credentials, run_cli

from .scripted_server import Reply, ScriptedServer


class Widget(BaseModel):
    id: int
    updated_at: str


def _bearer_connector(base_url: str, **stream: Any) -> tapyard.RestConnector:
    return tapyard.RestConnector(
        name="acme",
        base_url=base_url,
        auth_kinds=["bearer"],
        paginator=tapyard.SinglePage(),
        streams=[tapyard.RestStream(name="widgets", path="/v1/widgets", schema_model=Widget, **stream)],
    )


def _register(register_plugin: Any, connector: tapyard.Connector) -> None:
    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(connector)

    register_plugin(Plugin(), "acme-plugin")


def test_the_testing_extra_exists() -> None:
    assert "testing" in (metadata.metadata("tapyard").get_all("Provides-Extra") or [])
    wanted = [r for r in metadata.requires("tapyard") or [] if "extra == 'testing'" in r or 'extra == "testing"' in r]
    assert any(r.startswith("vcrpy") for r in wanted) and any(r.startswith("pytest") for r in wanted)


def test_fake_credentials_fit_the_connectors_model() -> None:
    creds = fake_credentials("sample", "api_key")
    assert creds.kind == "api_key"  # type: ignore[attr-defined]
    key = creds.api_key  # type: ignore[attr-defined]
    assert isinstance(key, SecretStr) and key.get_secret_value() == "fake-api_key"
    given = fake_credentials("sample", "api_key", api_key="k3y", location="query")
    assert given.location == "query" and given.api_key.get_secret_value() == "k3y"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="pass kind="):
        fake_credentials("sample")  # two kinds: which?
    with pytest.raises(ValueError, match="api_key"):
        fake_credentials("stripe")  # Stripe checks the key's prefix: the caller must give one
    assert fake_credentials("stripe", api_key="sk_test_" + "x" * 24).kind == "api_key"  # type: ignore[attr-defined]


def test_run_cli_gives_plugin_commands_errors_and_exit_codes(register_plugin: Any) -> None:
    import typer

    class Commands:
        @tapyard.hookimpl
        def tapyard_register_commands(self, cli: typer.Typer) -> None:
            @cli.command("hello")
            def hello(name: str) -> None:
                """Say hello."""
                typer.echo(f"hello {name}")

    register_plugin(Commands(), "hello-plugin")
    result = run_cli("hello", "there")
    assert result.exit_code == 0 and result.stdout == "hello there\n", result
    listed = run_cli("connectors", "list", "--json")
    assert listed.exit_code == 0 and "sample" in {c["name"] for c in json.loads(listed.stdout)}
    failed = run_cli("sync", "nope")
    assert failed.exit_code == 1 and failed.stderr.startswith("Error: unknown connector 'nope'")
    assert len(failed.stderr.splitlines()) == 1
    usage = run_cli("sync")
    assert usage.exit_code == 2 and "Missing argument" in usage.stderr
    piped = run_cli("creds", "add", "x", "--connector", "sample", "--kind", "api_key", "--from-json", "-", input="{")
    assert piped.exit_code == 1 and "Error:" in piped.stderr


def test_typers_cli_runner_sees_every_command() -> None:
    from typer.testing import CliRunner

    from tapyard.cli import app

    result = CliRunner().invoke(app, ["connectors", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert "sample" in {c["name"] for c in json.loads(result.stdout)}


def test_a_cursor_field_without_a_cursor_param_warns_at_load() -> None:
    with pytest.warns(UserWarning, match=r"'widgets' has cursor_field 'updated_at' but no cursor_param"):
        _bearer_connector("http://127.0.0.1:9", cursor_field="updated_at")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _bearer_connector("http://127.0.0.1:9", cursor_field="updated_at", cursor_param="since")
        _bearer_connector("http://127.0.0.1:9")


def test_a_credentialed_only_connector_refuses_to_run_without_credentials(
    register_plugin: Any, tmp_path: Path
) -> None:
    with ScriptedServer() as server:
        server.always("/v1/widgets", Reply.json({"data": [{"id": 1, "updated_at": "2024-01-01"}]}))
        connector = _bearer_connector(server.url)
        _register(register_plugin, connector)
        result = run_cli("sync", "acme", "--to", f"sqlite:///{tmp_path / 'a.db'}")
        assert result.exit_code == 1
        assert "needs credentials (bearer)" in result.stderr and "--creds" in result.stderr
        assert len(result.stderr.splitlines()) == 1
        with pytest.raises(tapyard.ConfigError, match="needs credentials"):
            tapyard.sync(connector, {}, to=f"sqlite:///{tmp_path / 'b.db'}")
        assert server.requests_for("/v1/widgets") == []  # refused before any request
        done = tapyard.sync(
            connector, {}, to=f"sqlite:///{tmp_path / 'c.db'}", credentials=fake_credentials(connector)
        )
        assert done.ok and done.records == 1
        sent = server.requests_for("/v1/widgets")[0].headers["authorization"]
        assert sent == "Bearer fake-token"

"""Connector manifests: listing without importing, and manifests that stay true."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tapyard
from tapyard.base._manifest import ManifestError, manifest_differences, parse_manifest
from tapyard.plugins._manager import ManifestWarning, describe_connector, installed_manifests
from tests.test_plugins import ACME, ACME_MANIFEST, cli, install, make_package

META = {"distribution": "tapyard-acme", "version": "2.3.4", "requires_core": None, "license": None, "homepage": None}
OURS = {"aws", "azure", "erp", "gcp", "salesforce", "sample", "stripe"}


def test_every_installed_connector_matches_its_manifest() -> None:
    manifests, without = installed_manifests()
    assert set(manifests) >= OURS, f"connectors without a manifest: {sorted(OURS - set(manifests))}"
    assert not without
    loaded = tapyard.collect_connectors()
    for name, manifest in manifests.items():
        assert name in loaded, f"{manifest.path} names {name!r}, which no plugin registers"
        assert manifest_differences(manifest, describe_connector(loaded[name])) == []
        assert manifest.plugin_api == loaded[name].plugin_api
        assert manifest.describe() == describe_connector(loaded[name])


def test_listing_imports_no_connector_and_no_model() -> None:
    code = (
        "import sys; from tapyard.cli import main; code = main(['connectors', 'list', '--json']);"
        "loaded = sorted(m for m in sys.modules if m.startswith('tapyard_') or m in "
        "('tapyard.base._model', 'tapyard.http._engine', 'pydantic', 'boto3', 'stripe', 'simple_salesforce'));"
        "print(json.dumps(loaded), file=sys.stderr); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
    listed = {c["name"]: c for c in json.loads(done.stdout)}
    assert set(listed) >= OURS
    assert listed["stripe"]["distribution"] == "tapyard-stripe" and listed["stripe"]["version"] == "0.1.0"


@pytest.mark.parametrize("args", [["--help"], ["connectors", "--help"], ["connectors", "list", "--help"]])
def test_help_still_works_with_its_default_false(args: list[str]) -> None:
    # tapyard.cli._typer gives typer's --help option a default of False (so that
    # parsing a command line does not import pydantic); --help itself still helps.
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ") and "--help" in done.stdout and "[default" not in done.stdout


def test_check_passes_for_the_installed_connectors() -> None:
    done = cli("connectors", "list", "--check", "--json")
    assert done.returncode == 0, done.stderr
    assert {c["name"] for c in json.loads(done.stdout)} >= OURS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugin_api = [", "not valid TOML"),
        ("[[connector]]\nname = 'x'\n", "'plugin_api' must be an integer"),
        ("plugin_api = true\n[[connector]]\nname = 'x'\n", "'plugin_api' must be an integer"),
        ("plugin_api = 1\n", "expected one or more [[connector]] tables"),
        ("plugin_api = 1\nconnector = 'x'\n", "expected one or more [[connector]] tables"),
        ("plugin_api = 1\n[[connector]]\ndescription = 'x'\n", "#1: 'name' must be a non-empty string"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nstreams = 'a,b'\n", "'streams' must be a list of non-empty strings"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nauth_kinds = ['']\n", "'auth_kinds' must be a list"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nstream = ['a']\n", "unknown keys stream"),
        ("plugin_api = 1\npublisher = 3\n[[connector]]\nname = 'x'\n", "'publisher' must be a string"),
    ],
)
def test_malformed_manifests_get_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "/pkg/tapyard-manifest.toml", plugin="x", meta=META)
    assert message in str(caught.value)
    assert str(caught.value).startswith("/pkg/tapyard-manifest.toml")
    assert "\n" not in str(caught.value)


def test_manifest_fields_and_metadata() -> None:
    (acme,) = parse_manifest(ACME_MANIFEST, "/pkg/m.toml", plugin="acme", meta=META)
    assert acme.publisher == "Acme Corp" and acme.plugin == "acme" and acme.plugin_api == 1
    assert acme.describe() == {
        "name": "acme", "version": "2.3.4", "distribution": "tapyard-acme",
        "description": "Acme widgets", "streams": ["widgets"], "auth_kinds": ["api_key"],
    }
    (bare,) = parse_manifest("plugin_api = 1\n[[connector]]\nname = 'bare'\n", "/m", plugin="b", meta=META)
    assert bare.streams == () and bare.auth_kinds == ("none",) and bare.description == ""


def test_differences_name_each_field() -> None:
    (acme,) = parse_manifest(ACME_MANIFEST, "/m", plugin="acme", meta=META)
    loaded = {**acme.describe(), "streams": ["widgets", "gadgets"], "description": "Acme"}
    differences = manifest_differences(acme, loaded)
    assert len(differences) == 2
    assert differences[0].startswith("description: the manifest says 'Acme widgets'")
    assert "the connector has ['widgets', 'gadgets']" in differences[1]


@pytest.mark.slow
def test_a_listed_plugin_is_not_imported_and_check_finds_it_broken(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    target = tmp_path / "site"
    broken = "raise ImportError('no module named vendorsdk')\n"
    install(make_package(tmp_path, "acme", broken, manifest=ACME_MANIFEST), target)

    # The listing reads the manifest: the import error does not happen.
    done = cli("connectors", "list", "--json", path=target)
    assert done.returncode == 0, done.stderr
    assert {c["name"]: c for c in json.loads(done.stdout)}["acme"]["streams"] == ["widgets"]
    assert done.stderr == ""

    # --check imports it, and says what is wrong in one line.
    checked = cli("connectors", "list", "--check", path=target)
    assert checked.returncode == 1
    assert "skipping plugin 'acme'" in checked.stderr and "vendorsdk" in checked.stderr
    error = checked.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: 1 manifest mismatch: acme: in ")
    assert "but not registered" in error and "Traceback" not in checked.stderr


@pytest.mark.slow
def test_a_stale_manifest_fails_check_and_a_malformed_one_falls_back(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    stale = ACME_MANIFEST.replace('streams = ["widgets"]', 'streams = ["widgets", "gadgets"]')
    target = tmp_path / "site"
    install(make_package(tmp_path, "acme", ACME, manifest=stale), target)
    checked = cli("connectors", "list", "--check", path=target)
    assert checked.returncode == 1
    assert ("acme: streams: the manifest says ['widgets', 'gadgets'], the connector has ['widgets']"
            in checked.stderr)
    assert "make the manifest say what the connector registers" in checked.stderr

    other = tmp_path / "other"
    other.mkdir()
    target = tmp_path / "site2"
    install(make_package(other, "acme", ACME, manifest="plugin_api = [\n"), target)
    done = cli("connectors", "list", "--json", path=target)
    assert done.returncode == 0, done.stderr
    assert "ignoring the manifest of plugin 'acme'" in done.stderr
    assert "not valid TOML" in done.stderr and "listing it by importing it" in done.stderr
    # listed all the same, by importing it
    assert {c["name"]: c for c in json.loads(done.stdout)}["acme"]["streams"] == ["widgets"]


@pytest.mark.slow
def test_a_manifest_for_another_plugin_api_is_skipped(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    target = tmp_path / "site"
    install(make_package(tmp_path, "acme", ACME, manifest=ACME_MANIFEST.replace("plugin_api = 1", "plugin_api = 7")),
            target)
    done = cli("connectors", "list", "--json", path=target)
    assert done.returncode == 0
    assert "acme" not in {c["name"] for c in json.loads(done.stdout)}
    assert "connector 'acme' was built for plugin API 7, this core speaks 1" in done.stderr


def test_malformed_manifest_warning_class() -> None:
    assert issubclass(ManifestWarning, tapyard.plugins._manager.PluginWarning)


PLUGIN_COMMAND = ACME + '''
import typer

@hookimpl
def tapyard_register_commands(cli):
    @cli.command("acme-hello")
    def hello(name: str = typer.Option("world")) -> None:
        """Say hello from acme."""
        print(f"hello {name} from acme")
'''


@pytest.mark.slow
def test_plugin_commands_run_and_built_in_commands_do_not_import_plugins(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the test package needs hatchling")
    target = tmp_path / "site"
    install(make_package(tmp_path, "acme", PLUGIN_COMMAND, manifest=ACME_MANIFEST), target)
    done = cli("acme-hello", "--name", "you", path=target)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello you from acme\n"
    assert "acme-hello" in cli("--help", path=target).stdout
    assert "acme-hello" in cli("--debug", "--help", path=target).stdout

    code = ("import sys; from tapyard.cli import main; main(['-q', 'connectors', 'list', '--json']);"
            "print('tapyard_acme' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(target)})
    assert done.returncode == 0 and done.stderr.strip() == "False"

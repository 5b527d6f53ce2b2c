"""The author's kit (issue 15): the manifest model and its schema, permissions enforced
at run time, the scaffold, and the conformance kit failing each defect it looks for."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import tapyard
from tapyard.base._manifest import ManifestError
from tapyard.base.manifest import (
    HostGuard,
    Permissions,
    load_manifest,
    manifest_json_schema,
    parse_manifest_text,
)
from tapyard.marketplace.kit import CHECKS, run_kit
from tapyard.marketplace.scan import scan_text
from tapyard.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]
OURS = ("aws", "azure", "erp", "gcp", "salesforce", "sample", "stripe")


# -- a server that counts what reaches it ------------------------------------------------


class Counting:
    """A loopback server that answers every GET with an empty page (or a redirect) and counts requests."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b'{"data": [], "has_more": false}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[list[Counting]]:
    started: list[Counting] = []
    yield started
    for server in started:
        server.close()


# -- the manifest model ------------------------------------------------------------------


def test_manifest_schema_command_prints_the_models_json_schema() -> None:
    result = run_cli("connectors", "manifest-schema")
    assert result.exit_code == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(manifest_json_schema()))
    connector = schema["$defs"]["ConnectorSpec"]["properties"]
    for field in ("name", "display_name", "description", "vendor", "categories", "streams", "auth_kinds",
                  "support_level", "license", "homepage", "core", "permissions"):
        assert field in connector, field
    permissions = schema["$defs"]["Permissions"]["properties"]
    assert set(permissions) == {"hosts", "files", "environment", "credentials"}


@pytest.mark.parametrize("name", OURS)
def test_every_repository_manifest_is_valid_and_declares_permissions(name: str) -> None:
    manifest = load_manifest(ROOT / "connectors" / name / "src" / f"tapyard_{name}" / "tapyard-manifest.toml")
    spec = manifest.get(name)
    assert spec is not None and spec.permissions is not None and spec.permissions.hosts
    assert set(spec.credential_kinds()) >= {k for k in spec.auth_kinds if k != "none"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugin_api = 1\n[[connector]]\nname = 'x'\n[connector.permissions]\nhosts = ['*']\n", "allows every host"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\n[connector.permissions]\nhosts = ['a.com:99999']\n", "port"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\n[connector.permissions]\nhosts = ['{env.HOME}']\n", "placeholders"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\n[connector.permissions]\nhosts = ['a.*.com']\n", "wildcard"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nsupport_level = 'gold'\n", "support_level"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nstreams = [{name = 'a', incremental = 'sometimes'}]\n", "streams"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nstreams = ['a', 'a']\n", "listed twice"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\ncore = 'soon'\n", "not a version specifier"),
        ("plugin_api = 1\n[[connector]]\nname = 'x'\nhosts = ['a.com']\n", "hosts"),
        ("plugin_api = true\n[[connector]]\nname = 'x'\n", "plugin_api"),
    ],
)
def test_a_malformed_manifest_is_one_line_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest_text(text, "m.toml")
    shown = str(caught.value)
    assert shown.startswith("m.toml: ") and message in shown and "\n" not in shown


class _Config(BaseModel):
    base_url: str | None = None
    tenant: str = "contoso"


@pytest.mark.parametrize(
    ("patterns", "url", "allowed"),
    [
        (["api.acme.com"], "https://api.acme.com/v1/x", True),
        (["api.acme.com"], "https://api.acme.com:8443/v1/x", False),
        (["api.acme.com"], "http://api.acme.com/v1/x", True),
        (["api.acme.com:8443"], "https://api.acme.com:8443/", True),
        (["api.acme.com:*"], "https://api.acme.com:1234/", True),
        (["*.acme.com"], "https://eu.api.acme.com/", True),
        (["*.acme.com"], "https://acme.com/", False),
        (["*.acme.com"], "https://evilacme.com/", False),
        (["API.Acme.com"], "https://api.acme.COM/", True),
        (["{config.base_url}"], "http://127.0.0.1:8123/x", True),
        (["{config.base_url}"], "http://127.0.0.1:8124/x", False),
        (["{config.tenant}.blob.core.windows.net"], "https://contoso.blob.core.windows.net/c", True),
        (["{config.tenant}.blob.core.windows.net"], "https://other.blob.core.windows.net/c", False),
        (["[::1]:8080"], "http://[::1]:8080/", True),
        (["https://login.example.com/oauth"], "https://login.example.com/token", True),
    ],
)
def test_host_patterns(patterns: list[str], url: str, allowed: bool) -> None:
    guard = HostGuard.for_run("acme", "m.toml", Permissions(hosts=patterns), _Config(base_url="http://127.0.0.1:8123"))
    assert guard.allows(url) is allowed


def test_an_empty_placeholder_allows_nothing_and_an_unknown_field_is_one_line() -> None:
    guard = HostGuard.for_run("acme", "m.toml", Permissions(hosts=["{config.base_url}"]), _Config())
    with pytest.raises(tapyard.PermissionDeniedError) as caught:
        guard.check("http://127.0.0.1:8123/x?token=s3cr3t")
    message = str(caught.value)
    assert "127.0.0.1:8123" in message and "m.toml" in message and "s3cr3t" not in message and "\n" not in message
    with pytest.raises(tapyard.ConfigError, match=r"\{config.nope\}"):
        HostGuard.for_run("acme", "m.toml", Permissions(hosts=["{config.nope}"]), _Config())


# -- permissions at run time -------------------------------------------------------------


class _Widget(BaseModel):
    id: int


def _connector(manifest: Path, *, auth_kinds: tuple[str, ...] = ("none",)) -> tapyard.RestConnector:
    class Config(BaseModel):
        base_url: str

    connector = tapyard.RestConnector(
        name="fenced",
        description="a connector with a manifest",
        base_url="{config.base_url}",
        config_model=Config,
        auth_kinds=list(auth_kinds),
        streams=[tapyard.RestStream(name="widgets", path="/v1/widgets", schema_model=_Widget)],
    )
    connector.manifest_path = str(manifest)  # type: ignore[attr-defined]
    return connector


def _manifest(tmp_path: Path, hosts: list[str], credentials: list[str] | None = None) -> Path:
    path = tmp_path / "tapyard-manifest.toml"
    creds = "" if credentials is None else f"credentials = {json.dumps(credentials)}\n"
    path.write_text(
        "plugin_api = 1\npublisher = \"test\"\n[[connector]]\nname = \"fenced\"\n"
        f"[connector.permissions]\nhosts = {json.dumps(hosts)}\n{creds}"
    )
    return path


def test_a_sync_to_an_undeclared_port_is_refused_before_the_request_leaves(
    tmp_path: Path, servers: list[Counting]
) -> None:
    declared, undeclared = Counting(), Counting()
    servers += [declared, undeclared]
    connector = _connector(_manifest(tmp_path, [f"127.0.0.1:{declared.port}"]))
    with pytest.raises(tapyard.PermissionDeniedError) as caught:
        tapyard.sync(connector, {"base_url": undeclared.url}, to=f"sqlite:///{tmp_path / 'x.db'}")
    assert undeclared.requests == 0
    error = str(caught.value)
    assert f"may not call 127.0.0.1:{undeclared.port}" in error and "tapyard-manifest.toml" in error
    assert "\n" not in error
    allowed = tapyard.sync(connector, {"base_url": declared.url}, to=f"sqlite:///{tmp_path / 'y.db'}")
    assert allowed.ok and declared.requests == 1


@pytest.mark.slow
def test_an_installed_package_calling_an_undeclared_port_is_refused_by_the_cli(
    tmp_path: Path, servers: list[Counting]
) -> None:
    """As a user meets it: `pip install` a connector whose manifest declares one port, `tapyard sync`
    it against another: one line naming the host and the manifest, and nothing reaches the server."""
    pytest.importorskip("hatchling", reason="building the package needs hatchling")
    from tests.test_plugins import install

    declared, undeclared = Counting(), Counting()
    servers += [declared, undeclared]
    project = tmp_path / "acme"
    assert run_cli("connectors", "new", "acme", "--dir", str(project), "--auth", "none").exit_code == 0
    _edit(project / "src" / "tapyard_acme" / "tapyard-manifest.toml", 'hosts = ["{config.base_url}"]',
          f'hosts = ["127.0.0.1:{declared.port}"]')
    site = tmp_path / "site"
    install(project, site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-m", "tapyard", "sync", "acme", "-c", json.dumps({"base_url": undeclared.url}),
         "--to", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert undeclared.requests == 0
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"Error: connector 'acme' may not call 127.0.0.1:{undeclared.port}: its manifest (")
    assert f"{site}/tapyard_acme/tapyard-manifest.toml) declares hosts 127.0.0.1:{declared.port}" in done.stderr


@pytest.mark.slow
def test_list_check_validates_the_whole_manifest(acme: Path, tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the package needs hatchling")
    from tests.test_plugins import install

    project = _copy(acme, tmp_path)
    _edit(project / "src" / "tapyard_acme" / "tapyard-manifest.toml", 'hosts = ["{config.base_url}"]', 'hosts = ["*"]')
    site = tmp_path / "site"
    install(project, site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "tapyard", "connectors", "list", "--json"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0 and "acme" in {c["name"] for c in json.loads(listed.stdout)}
    checked = subprocess.run([sys.executable, "-m", "tapyard", "connectors", "list", "--check"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert checked.returncode == 1 and checked.stderr.count("\n") == 1, checked.stderr
    assert "connector.0.permissions.hosts: '*' allows every host" in checked.stderr


_AZURE = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=ZmFrZS1rZXk=;BlobEndpoint={url}/devstoreaccount1;"


@pytest.mark.parametrize(
    ("name", "config", "credentials"),
    [
        ("aws", {"endpoint_url": "{url}", "bucket": "data"}, None),
        ("azure", {"account_url": "{url}/devstoreaccount1", "container": "data"},
         {"kind": "azure_connection_string", "connection_string": _AZURE}),
        ("gcp", {"endpoint_url": "{url}", "project": "p", "bucket": "data"}, None),
        ("salesforce", {"login_url": "{url}"}, {"kind": "salesforce_password"}),
        ("stripe", {"api_base": "{url}"}, {"kind": "api_key", "api_key": "rk_test_tapyardReadOnly0123456789"}),
    ],
)
def test_the_sdk_path_refuses_an_undeclared_host_before_the_request_leaves(
    name: str, config: dict[str, str], credentials: dict[str, str] | None, tmp_path: Path,
    servers: list[Counting], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK connectors' own manifests declare {config.endpoint_url} and the like; this one declares
    # another port, so the server the configuration names is outside it.
    server = Counting()
    servers.append(server)
    connector = tapyard.get_connector(name)
    manifest = tmp_path / "tapyard-manifest.toml"
    kinds = json.dumps(list(connector.auth_kinds))
    manifest.write_text(f'plugin_api = 1\npublisher = "test"\n[[connector]]\nname = "{name}"\nauth_kinds = {kinds}\n'
                        '[connector.permissions]\nhosts = ["127.0.0.1:1"]\n')
    monkeypatch.setattr(connector, "manifest_path", str(manifest), raising=False)
    fields = {k: v.replace("{url}", server.url) for k, v in (credentials or {}).items() if k != "kind"}
    creds = tapyard.testing.fake_credentials(connector, credentials["kind"], **fields) if credentials else None
    with pytest.raises(tapyard.PermissionDeniedError) as caught:
        tapyard.sync(connector, {k: v.replace("{url}", server.url) for k, v in config.items()}, credentials=creds,
                     to=f"sqlite:///{tmp_path / 'x.db'}")
    assert server.requests == 0
    assert str(caught.value).startswith(f"connector '{name}' may not call 127.0.0.1:{server.port}: its manifest (")


def test_a_redirect_to_an_undeclared_host_is_refused(tmp_path: Path, servers: list[Counting]) -> None:
    elsewhere = Counting()
    bouncing = Counting(redirect_to=elsewhere.url)
    servers += [elsewhere, bouncing]
    connector = _connector(_manifest(tmp_path, ["{config.base_url}"]))
    with pytest.raises(tapyard.PermissionDeniedError, match=f"may not call 127.0.0.1:{elsewhere.port}"):
        tapyard.sync(connector, {"base_url": bouncing.url}, to=f"sqlite:///{tmp_path / 'x.db'}")
    assert bouncing.requests == 1 and elsewhere.requests == 0


def test_credentials_of_a_kind_the_manifest_does_not_ask_for_are_refused(tmp_path: Path, servers: list[Counting]) -> None:
    server = Counting()
    servers.append(server)
    manifest = _manifest(tmp_path, ["{config.base_url}"], credentials=["api_key"])
    connector = _connector(manifest, auth_kinds=("api_key", "bearer"))
    bearer = tapyard.testing.fake_credentials(connector, "bearer")
    with pytest.raises(tapyard.PermissionDeniedError) as caught:
        tapyard.sync(connector, {"base_url": server.url}, credentials=bearer, to=f"sqlite:///{tmp_path / 'x.db'}")
    assert "'bearer' credentials" in str(caught.value) and "asks for api_key" in str(caught.value)
    assert server.requests == 0 and not (tmp_path / "x.db").exists()
    api_key = tapyard.testing.fake_credentials(connector, "api_key")
    assert tapyard.sync(connector, {"base_url": server.url}, credentials=api_key, to=f"sqlite:///{tmp_path / 'y.db'}").ok


def test_an_installed_connector_is_fenced_by_its_installed_manifest(tmp_path: Path, servers: list[Counting]) -> None:
    # The repository's sample connector declares {config.base_url} (and its own loopback server):
    # an installed connector's manifest is found without the kit's help.
    from tapyard.plugins._manager import connector_manifest_path

    sample = tapyard.get_connector("sample")
    assert connector_manifest_path(sample) == str(
        ROOT / "connectors" / "sample" / "src" / "tapyard_sample" / "tapyard-manifest.toml"
    )
    aws = tapyard.get_connector("aws")
    with pytest.raises(tapyard.PermissionDeniedError, match="asks for aws"):
        tapyard.sync(aws, {}, credentials=tapyard.testing.fake_credentials("sample", "api_key"),
                     to=f"sqlite:///{tmp_path / 'x.db'}")


def test_connectors_info_shows_the_permissions() -> None:
    result = run_cli("connectors", "info", "aws", "--json")
    assert result.exit_code == 0, result.stderr
    permissions = json.loads(result.stdout)["permissions"]
    assert permissions["hosts"] == ["*.amazonaws.com", "*.amazonaws.com.cn", "169.254.169.254", "{config.endpoint_url}"]
    assert permissions["files"] is True and permissions["environment"] is True and permissions["credentials"] == ["aws"]
    shown = run_cli("connectors", "info", "stripe").stdout
    assert "permissions: hosts api.stripe.com, files.stripe.com, {config.api_base}; reads files: no" in shown


# -- the cassette scan -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz123456", "bearer token"),
        ("key: sk_live_abcdefgh12345678", "Stripe secret key"),
        ("AKIAABCDEFGHIJKLMNOP", "AWS access key id"),
        ("-----BEGIN RSA PRIVATE KEY-----", "private key"),
    ],
)
def test_the_scan_finds_credentials(text: str, kind: str) -> None:
    assert [f.kind for f in scan_text(text, "c.yaml")] == [kind]


def test_the_scan_ignores_scrubbed_values() -> None:
    assert scan_text("Authorization: Bearer REDACTED\nkey: REDACTED\nBearer fake-token-1234567890123456") == []


def test_the_repository_cassettes_hold_no_secret() -> None:
    done = subprocess.run([sys.executable, "-m", "tapyard.marketplace.scan"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert re.search(r"^0 credential-shaped values in [1-9]\d* cassette files$", done.stdout, re.M), done.stdout


# -- the scaffold and the kit ---------------------------------------------------------------


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scaffolded package (written once; each test copies it)."""
    target = tmp_path_factory.mktemp("scaffold") / "acme"
    result = run_cli("connectors", "new", "acme", "--dir", str(target))
    assert result.exit_code == 0, result.stderr
    return target


def _copy(acme: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "acme"
    shutil.copytree(acme, copy)
    return copy


def test_the_scaffold_passes_the_kit_and_is_certified(acme: Path) -> None:
    report = run_kit(acme)
    assert report.ok, report.render()
    assert report.support_level == "certified" and report.score == 100
    assert {c.id for c in report.checks} == set(CHECKS)
    assert all(c.status == "passed" for c in report.checks), report.render()
    for path in ("pyproject.toml", "README.md", "src/tapyard_acme/__init__.py", "src/tapyard_acme/py.typed",
                 "src/tapyard_acme/tapyard-manifest.toml", "tests/test_acme.py", "tests/stand_in.py",
                 "tests/cassettes/acme.yaml", ".github/workflows/ci.yml"):
        assert (acme / path).is_file(), path
    pyproject = tomllib.loads((acme / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["tapyard"] == {"acme": "tapyard_acme"}
    assert pyproject["project"]["dependencies"] == ["tapyard>=0.1,<0.2"]


@pytest.mark.parametrize(
    ("options", "auth"),
    [
        (["--paginator", "page_number", "--auth", "api_key"], "api_key"),
        (["--paginator", "offset", "--auth", "basic"], "basic"),
        (["--paginator", "next_url", "--auth", "none"], "none"),
        (["--kind", "sdk"], "bearer"),
    ],
    ids=["page_number-api_key", "offset-basic", "next_url-none", "sdk"],
)
def test_every_scaffold_variant_passes_the_kit(tmp_path: Path, options: list[str], auth: str) -> None:
    result = run_cli("connectors", "new", "widgetco", "--dir", str(tmp_path / "w"), *options)
    assert result.exit_code == 0, result.stderr
    report = run_kit(tmp_path / "w")
    assert report.ok and report.support_level == "certified", report.render()
    skipped = [c.id for c in report.checks if c.status == "skipped"]
    assert skipped == [], report.render()
    spec = load_manifest(tmp_path / "w" / "src" / "tapyard_widgetco" / "tapyard-manifest.toml").get("widgetco")
    assert spec is not None and spec.auth_kinds == [auth]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Acme"], "is not a connector name"),
        (["acme", "--auth", "magic"], "--auth 'magic' is not one of"),
        (["acme", "--paginator", "telepathy"], "--paginator 'telepathy' is not one of"),
    ],
)
def test_scaffold_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("connectors", "new", *args, "--dir", str(tmp_path / "x"))
    assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_scaffold_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = run_cli("connectors", "new", "acme", "--dir", str(tmp_path / "x"))
    assert result.exit_code == 1 and "is not empty" in result.stderr
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["keep.txt"]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _failure(project: Path, check_id: str) -> str:
    report = run_kit(project)
    assert not report.ok
    failed = {c.id: c for c in report.failures}
    assert check_id in failed, report.render()
    check = failed[check_id]
    assert check.fix and "\n" not in check.message and "\n" not in check.fix
    return f"{check.message} / fix: {check.fix}"


def test_kit_fails_an_undeclared_host(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    manifest = project / "src" / "tapyard_acme" / "tapyard-manifest.toml"
    _edit(manifest, 'hosts = ["{config.base_url}"]', 'hosts = ["api.acme.example"]')
    shown = _failure(project, "hosts.declared")
    assert "127.0.0.1:" in shown and "[connector.permissions] hosts" in shown
    report = run_kit(project)
    assert report.support_level == "none"  # a safety check failed


def test_kit_fails_manifest_code_drift(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    manifest = project / "src" / "tapyard_acme" / "tapyard-manifest.toml"
    _edit(manifest, '{ name = "widgets", incremental = "cursor", deletes = "none" },',
          '{ name = "widgets", incremental = "cursor", deletes = "none" },\n    "gadgets",')
    shown = _failure(project, "manifest.matches_code")
    assert "gadgets" in shown and "make the manifest list what the connector registers" in shown


def test_kit_fails_drift_in_a_streams_modes(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    manifest = project / "src" / "tapyard_acme" / "tapyard-manifest.toml"
    _edit(manifest, 'deletes = "none"', 'deletes = "vendor"')
    shown = _failure(project, "manifest.matches_code")
    assert "widgets" in shown and "deletes" in shown


def test_kit_fails_a_secret_in_a_cassette(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    cassette = project / "tests" / "cassettes" / "acme.yaml"
    cassette.write_text(cassette.read_text() + "# Authorization: Bearer sk_live_51Habcdefghijklmnopqrstuv\n")
    shown = _failure(project, "cassettes.secrets")
    assert "Stripe secret key" in shown and "sk_live_51H" in shown and "abcdefghijklmnop" not in shown
    assert "re-record through tapyard.testing.cassette()" in shown


def test_kit_fails_a_paginator_that_never_ends(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    # a paginator that ignores "has_more" and asks for the same page again, for ever
    init = project / "src" / "tapyard_acme" / "__init__.py"
    _edit(init, "connector = tapyard.RestConnector(", (
        "class Forever(tapyard.CursorPaginator):\n"
        "    def next(self, request, response, body, records):  # type: ignore[no-untyped-def]\n"
        "        return tapyard.PageRequest(request.url, dict(request.params))\n\n\n"
        "connector = tapyard.RestConnector("))
    _edit(init, 'paginator={"kind": "cursor", "page_size": "{config.page_size}"},', "paginator=Forever(page_size=2),")
    shown = _failure(project, "read.pagination_ends")
    assert "make the paginator stop" in shown


def test_kit_fails_an_incremental_read_that_rereads_everything(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    _edit(project / "src" / "tapyard_acme" / "__init__.py", 'cursor_param="updated_after",', "")
    shown = _failure(project, "read.incremental")
    assert "re-read all 3 records" in shown and "cursor_param" in shown


def test_kit_fails_a_missing_schema(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    init = project / "src" / "tapyard_acme" / "__init__.py"
    _edit(init, "class Widget(BaseModel):", "class Widget(BaseModel):\n    model_config = ConfigDict(extra='allow')\n\n\nclass _Unused(BaseModel):")
    shown = _failure(project, "streams.schemas")
    assert "declares no fields" in shown and "schema_model" in shown


def test_kit_fails_a_claimed_level_not_earned_and_reports_json(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    (project / "README.md").unlink()
    result = run_cli("connectors", "test", str(project), "--json")
    assert result.exit_code == 1
    (report,) = json.loads(result.stdout)
    assert report["ok"] is False and report["support_level"] == "community" and report["claimed_level"] == "certified"
    failed = {c["id"]: c for c in report["checks"] if c["status"] == "failed"}
    assert set(failed) == {"docs.readme", "support.claimed"}
    assert 'support_level = "community"' in failed["support.claimed"]["fix"]
    assert report["score"] < 100 and set(report["score_parts"]) == {"checks", "coverage", "modes", "typed", "docs"}


@pytest.mark.slow
def test_kit_reads_an_sdist_fully_and_a_wheel_without_its_cassettes(acme: Path, tmp_path: Path) -> None:
    import tarfile

    sdist = tmp_path / "tapyard_acme-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(acme, arcname="tapyard_acme-0.1.0")
    report = run_kit(sdist)
    assert report.ok and report.support_level == "certified", report.render()
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(acme)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    report = run_kit(wheel)
    assert [c.id for c in report.failures] == ["cassettes.present", "support.claimed"], report.render()
    assert report.check("manifest.matches_code").status == "passed"  # type: ignore[union-attr]
    assert report.check("docs.readme").status == "passed"  # type: ignore[union-attr]
    assert "the source tree or the sdist" in report.failures[0].fix


def test_kit_refuses_a_target_it_cannot_read_in_one_line(tmp_path: Path) -> None:
    for target, message in ((str(tmp_path / "nope"), "no such file or directory"),
                            (str(tmp_path), "holds no pyproject.toml"),
                            ("no_such_connector", "neither a path nor an installed connector")):
        result = run_cli("connectors", "test", target)
        assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def _conformance(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tapyard-conformance", "-k", "conformance"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )


def test_pytest_conformance_option_runs_the_kit(acme: Path, tmp_path: Path) -> None:
    project = _copy(acme, tmp_path)
    done = _conformance(project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(CHECKS)} passed" in done.stdout and "score 100/100, support level certified" in done.stdout
    _edit(project / "src" / "tapyard_acme" / "__init__.py", 'cursor_param="updated_after",', "")
    done = _conformance(project)
    assert done.returncode == 1 and "read.incremental" in done.stdout and "fix: send the saved cursor" in done.stdout


# The acceptance path in a fresh environment (venv, tapyard from the checkout, `connectors new acme`,
# `pip install ./acme`, `connectors list`, `connectors test ./acme`, its own tests and
# `pytest --tapyard-conformance`) is docs/authoring.md's first section, which
# tests/test_docs_examples.py runs as written.


# -- fuzzing -------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_CONNECTOR_KEYS = st.sampled_from(["name", "streams", "auth_kinds", "permissions", "support_level", "core", "categories"])


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(
    _JSON,
    st.fixed_dictionaries({"plugin_api": _JSON, "connector": st.lists(st.dictionaries(_CONNECTOR_KEYS, _JSON), max_size=3)}),
))
def test_any_manifest_data_is_valid_or_one_bounded_line(data: object) -> None:
    from tapyard.base.manifest import manifest_from_data

    try:
        manifest_from_data(data, "m.toml")
    except ManifestError as exc:
        shown = str(exc)
        assert shown.startswith("m.toml: ") and "\n" not in shown and len(shown) <= 400


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(max_size=40), url=st.text(max_size=60))
def test_any_host_pattern_is_refused_or_matches_without_raising(pattern: str, url: str) -> None:
    try:
        permissions = Permissions(hosts=[pattern])
    except ValueError:
        return
    try:
        guard = HostGuard.for_run("acme", "m.toml", permissions, _Config(base_url="http://127.0.0.1:1"))
    except tapyard.ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert guard.allows(url) in (True, False)
    assert guard.allows("http://not-declared.invalid:1/") is False or "*" in pattern or "invalid" in pattern.lower() or "{" in pattern

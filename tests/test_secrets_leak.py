"""The acceptance test of issue 4: after storing known secrets and using them, no
secret value (nor its base64 or URL-encoded form) is in the vault file, the
destination database, the logs, or any command's output."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard_sample import LocalAuthorizationServer
from tests.creds_helpers import run, vault_environment

pytestmark = pytest.mark.reliability


@pytest.fixture
def vault_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    yield from vault_environment(monkeypatch, tmp_path)


API_KEY = "ak-Qz9/w+Lm=Vx7&Tn4?Rp2%Ys8"
CLIENT_SECRET = "cs-Hj3+Kd8/Pq1=Wz5&Mn7?Bv0"
PASSWORD = "pw-Ux6/Ge2+Ra9=Lc4&Fo1?Ti3"


def _forms(value: str) -> set[bytes]:
    raw = value.encode()
    forms = {
        raw,
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        urllib.parse.quote(value, safe="").encode(),
        urllib.parse.quote_plus(value).encode(),
        urllib.parse.quote(value, safe="").lower().encode(),
    }
    return forms


def _files(directory: Path, pattern: str) -> list[Path]:
    return [p for p in directory.glob(pattern) if p.is_file()]


def _leaks(secrets: list[str], blobs: dict[str, bytes]) -> list[str]:
    found = []
    for secret in secrets:
        for form in _forms(secret):
            for where, blob in blobs.items():
                if form in blob:
                    found.append(f"{secret[:3]}... as {form[:12]!r}... in {where}")
    return found


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every access and refresh token the sample server's authorization server issues."""
    tokens: list[str] = []
    real = LocalAuthorizationServer._save

    def save(self: LocalAuthorizationServer, token: Any, request: Any) -> None:
        tokens.extend(str(token[k]) for k in ("access_token", "refresh_token") if token.get(k))
        real(self, token, request)

    monkeypatch.setattr(LocalAuthorizationServer, "_save", save)
    return tokens


def test_no_secret_reaches_the_vault_file_the_database_the_logs_or_any_output(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    vault_env: str,
    tmp_path: Path,
    issued: list[str],
    register_plugin: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []

    def cli(*args: str, ok: bool = True) -> str:
        code, out, err = run(capsys, *args)
        outputs.extend([out, err])
        assert (code == 0) == ok, err
        return out

    # A basic-auth connector, so that a password is among the secrets too.
    connector = tapyard.RestConnector(
        name="acme", base_url="http://127.0.0.1:9", auth_kinds=["basic"], streams=[]
    )

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(connector)

    register_plugin(Plugin(), "acme-plugin")

    # Store the secrets: from the environment, from JSON on a file, from stdin.
    monkeypatch.setenv("SQ_API_KEY", API_KEY)
    monkeypatch.setenv("SQ_LOCATION", "query")
    monkeypatch.setenv("SQ_KEY_NAME", "api_key")
    cli("creds", "add", "sample-key", "--connector", "sample", "--kind", "api_key", "--from-env", "SQ_")
    doc = tmp_path / "oauth.json"
    doc.write_text(json.dumps({"client_secret": CLIENT_SECRET}))
    cli("creds", "add", "sample-oauth", "--connector", "sample", "--kind", "oauth2_client_credentials", "--from-json", str(doc))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps({"username": "me", "password": PASSWORD})))
    cli("creds", "add", "acme-login", "--connector", "acme", "--from-json", "-")
    doc.unlink()

    # Use them: syncs (the API key in the query string, debug logging on: -vv), check,
    # discover, failures, and every listing.
    db = tmp_path / "out.db"
    keyed = json.dumps({"records_per_stream": 40, "page_size": 7, "auth": "api_key", "server_api_key": API_KEY})
    oauth = json.dumps({"records_per_stream": 48, "page_size": 4, "auth": "oauth2", "server_client_secret": CLIENT_SECRET, "token_ttl_s": 1, "latency_ms": 60})
    cli("--debug", "-vv", "sync", "sample", "-c", keyed, "--creds", "sample-key", "--to", f"sqlite:///{db}", "--json")
    cli("--debug", "-vv", "sync", "sample", "-c", oauth, "--creds", "sample-oauth", "--to", f"sqlite:///{db}", "--full-refresh")
    cli("check", "sample", "-c", keyed, "--creds", "sample-key")
    cli("discover", "sample", "-c", oauth, "--creds", "sample-oauth", "--json")
    wrong = json.dumps({"auth": "api_key", "server_api_key": "another-key-entirely"})
    cli("sync", "sample", "-c", wrong, "--creds", "sample-key", "--to", f"sqlite:///{db}", "--json", ok=False)
    cli("check", "sample", "-c", wrong, "--creds", "sample-key", ok=False)
    cli("check", "sample", "-c", keyed, "--creds", "acme-login", ok=False)  # access denied
    for listing in (("creds", "list"), ("creds", "list", "--json"), ("creds", "show", "sample-key"),
                    ("creds", "show", "sample-oauth", "--json"), ("creds", "audit"), ("creds", "audit", "--json")):
        cli(*listing)

    assert len(issued) >= 2  # tokens were obtained and renewed during the oauth sync
    secrets = [API_KEY, CLIENT_SECRET, PASSWORD, *issued]
    blobs = {str(p.name): p.read_bytes() for p in _files(tmp_path, "vault.db*") + _files(tmp_path, "out.db*")}
    assert "vault.db" in blobs and "out.db" in blobs
    blobs["command output"] = "\n".join(outputs).encode()
    blobs["log records"] = "\n".join(r.getMessage() for r in caplog.records).encode()
    # The debug log recorded every request URL, the key in the query masked.
    assert "/v1/customers?limit=7&api_key=***" in blobs["log records"].decode()
    assert _leaks(secrets, blobs) == []


class _EchoingApi(http.server.BaseHTTPRequestHandler):
    """An API that wants ``api_key`` in the query and, like some real ones, echoes
    every query parameter into its next link; the third page fails."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        page = int(query.get("page", "1"))
        if query.get("api_key") != API_KEY:
            status, body = 401, {"error": "no key"}
        elif page >= 3:
            status, body = 500, {"error": "down"}
        else:
            following = urllib.parse.urlencode({**query, "page": page + 1})
            host, port = self.server.server_address[:2]
            body = {"data": [{"id": page * 10 + i} for i in range(3)], "next": f"http://{host}:{port}/items?{following}"}
            status = 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def echoing_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingApi)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_query_api_key_echoed_in_next_links_never_reaches_the_saved_state(echoing_api: str, tmp_path: Path) -> None:
    from pydantic import BaseModel

    from tapyard import ApiKeyAuth, RestConnector, RestStream

    class Item(BaseModel):
        id: int

    connector = RestConnector(
        name="echoing",
        base_url=echoing_api,
        auth_kinds=["api_key"],
        http={"max_attempts": 1},
        streams=[
            RestStream(name="items", path="/items", schema_model=Item, paginator={"kind": "next_url", "next_path": "next"})
        ],
    )
    credentials = ApiKeyAuth.Options(api_key=API_KEY, location="query", key_name="api_key", name="echo-key")
    db = tmp_path / "state.db"
    result = tapyard.sync(connector, {}, to=f"sqlite:///{db}", credentials=credentials)
    assert not result.ok and result.records == 6  # two pages, then the failure
    import sqlite3

    (state,) = sqlite3.connect(db).execute("SELECT state FROM _tapyard_state").fetchone()
    resume = json.loads(state)["resume"]
    assert resume["url"] == "/items?page=3"  # where to go on: kept, without the key
    blobs = {p.name: p.read_bytes() for p in _files(tmp_path, "state.db*")}
    blobs["stream errors"] = " ".join(s.error or "" for s in result.streams).encode()
    assert _leaks([API_KEY], blobs) == []

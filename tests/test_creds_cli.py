"""``tapyard creds`` and ``--creds``: typed fields from prompts, the environment or
JSON; listings without values; access control and the audit log; key rotation;
``creds login``; and every vault error as one line with the file untouched."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tapyard
from tapyard_sample import LocalAuthorizationServer, OAuthClient
from tests.creds_helpers import run, vault_environment


@pytest.fixture
def vault_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    yield from vault_environment(monkeypatch, tmp_path)


KEY = "k3y-" + "a1b2c3d4" * 3
SAMPLE = ["--config", json.dumps({"records_per_stream": 30, "auth": "api_key", "server_api_key": KEY})]


@pytest.fixture
def acme(register_plugin: Any) -> tapyard.Connector:
    """A throwaway connector that takes API keys and authorization-code logins."""
    from tapyard import RestConnector, RestStream
    from tapyard_sample import Customer

    connector = RestConnector(
        name="acme",
        base_url="http://127.0.0.1:9",
        auth_kinds=["api_key", "oauth2_authorization_code"],
        streams=[RestStream(name="customers", path="/v1/customers", schema_model=Customer)],
    )

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_connectors(self, register: Any) -> None:
            register(connector)

    register_plugin(Plugin(), "acme-plugin")
    return connector


def _one_line_error(code: int, err: str) -> str:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return lines[0]


def _add_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str = "sk", *extra: str) -> None:
    monkeypatch.setenv("SAMPLE_API_KEY", KEY)
    code, out, err = run(capsys, "creds", "add", name, "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_", *extra)
    assert code == 0, err
    assert f"stored credential {name!r}: api_key for sample (fields: api_key" in out


# --- storing --------------------------------------------------------------------------------


def test_keygen_prints_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    from tapyard_credentials import VaultKey

    code, out, err = run(capsys, "creds", "keygen")
    assert code == 0 and "TAPYARD_VAULT_KEY" in err
    VaultKey.from_key(out.strip())
    code, _, err = run(capsys, "creds", "keygen", "--keyring")
    assert "OS keyring" in _one_line_error(code, err)


def test_keygen_never_replaces_a_key_in_the_keyring(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, tmp_path: Path
) -> None:
    """The keyring's key is the only copy of it: replacing it locks the vault made with it."""
    import keyring
    from keyring.backend import KeyringBackend

    from tapyard_credentials import VaultKey

    class Keychain(KeyringBackend):
        priority = 10  # type: ignore[assignment]
        store: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.store.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.store[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.store.pop((service, username), None)

    keyring.set_keyring(Keychain())
    monkeypatch.delenv("TAPYARD_VAULT_KEY")
    code, out, err = run(capsys, "creds", "keygen", "--keyring")
    assert code == 0 and "stored a new vault key in the OS keyring" in out, err
    first = VaultKey.from_keyring()
    monkeypatch.setenv("SAMPLE_API_KEY", KEY)
    code, _, err = run(capsys, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_")
    assert code == 0, err
    code, _, err = run(capsys, "creds", "keygen", "--keyring")
    assert "the OS keyring already holds a vault key" in _one_line_error(code, err)
    assert VaultKey.from_keyring().derive(first.new_params()) == first.derive(first.new_params())
    code, out, _ = run(capsys, "creds", "list", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "sk"
    code, out, err = run(capsys, "creds", "rotate-key")  # the keyring keeps the old key: say so
    assert code == 0 and "the OS keyring still holds the old key" in err, err
    monkeypatch.setenv("TAPYARD_VAULT_KEY", out.strip())
    code, out, _ = run(capsys, "creds", "list", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "sk"


def test_add_from_the_environment_json_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, tmp_path: Path
) -> None:
    _add_key(capsys, monkeypatch)
    doc = tmp_path / "key.json"
    doc.write_text(json.dumps({"api_key": KEY, "location": "query", "key_name": "api_key"}))
    code, out, err = run(capsys, "creds", "add", "sq", "--connector", "sample", "--kind", "api_key", "--from-json", str(doc), "--allow", "other")
    assert code == 0, err
    assert "allowed: sample, other" in out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps({"client_secret": KEY})))
    code, out, err = run(capsys, "creds", "add", "so", "--connector", "sample", "--kind", "oauth2_client_credentials", "--from-json", "-")
    assert code == 0, err
    code, out, _ = run(capsys, "creds", "list", "--json")
    listed = {c["name"]: c for c in json.loads(out)}
    assert listed["sk"]["kind"] == "api_key" and listed["sk"]["connector"] == "sample"
    assert listed["sq"]["fields"] == ["api_key", "key_name", "location"]
    assert listed["so"]["kind"] == "oauth2_client_credentials" and listed["so"]["last_used_at"] is None
    assert KEY not in out


def test_add_asks_with_hidden_input_for_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str
) -> None:
    from typer._click import termui

    from tapyard.cli import _creds

    hidden: list[str] = []
    visible: list[str] = []
    answers = {"api_key": KEY, "location": "", "key_name": "X-Sample-Key", "prefix": ""}
    label = [""]

    def echo(message: Any = None, **_: Any) -> None:
        if message:  # the prompt's text: "api_key (The API key.)"
            label[0] = str(message).split(" ")[0]

    def answer(asked: list[str]) -> str:
        asked.append(label[0])
        return answers[label[0]]

    monkeypatch.setattr(termui, "echo", echo)
    monkeypatch.setattr(termui, "hidden_prompt_func", lambda _: answer(hidden))
    monkeypatch.setattr(termui, "visible_prompt_func", lambda _: answer(visible))
    monkeypatch.setattr(_creds, "interactive", lambda: True)
    code, out, err = run(capsys, "creds", "add", "typed", "--connector", "sample", "--kind", "api_key")
    assert code == 0, err
    assert hidden == ["api_key"]  # only the secret is typed blind
    assert visible == ["location", "key_name", "prefix"]
    code, out, _ = run(capsys, "creds", "show", "typed", "--json")
    assert json.loads(out)["fields"] == {"api_key": "***", "key_name": "***"}


def test_add_refuses_unknown_and_missing_fields_clearly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, tmp_path: Path
) -> None:
    cases = {
        json.dumps({"api_key": KEY, "colour": "red"}): "does not fit sample's api_key credential model: colour: unknown field",
        json.dumps({"key_name": "X"}): "does not fit sample's api_key credential model: api_key: required field is missing",
        json.dumps({"api_key": KEY, "location": "cookie"}): "location: Input should be 'header' or 'query'",
        json.dumps(["not", "an", "object"]): "must hold a JSON object",
        "{oops": "is not valid JSON",
    }
    for i, (text, expected) in enumerate(cases.items()):
        doc = tmp_path / f"{i}.json"
        doc.write_text(text)
        code, _, err = run(capsys, "creds", "add", "bad", "--connector", "sample", "--kind", "api_key", "--from-json", str(doc))
        line = _one_line_error(code, err)
        assert expected in line and KEY not in line
    code, _, err = run(capsys, "creds", "add", "bad", "--connector", "sample", "--from-env", "SAMPLE_")
    assert "takes api_key, oauth2_client_credentials credentials: pick one with --kind" in _one_line_error(code, err)
    code, _, err = run(capsys, "creds", "add", "bad", "--connector", "sample", "--kind", "basic", "--from-env", "SAMPLE_")
    assert "does not take 'basic' credentials" in _one_line_error(code, err)
    code, _, err = run(capsys, "creds", "add", "bad", "--connector", "sample", "--kind", "api_key")
    assert "no field values given" in _one_line_error(code, err)
    _add_key(capsys, monkeypatch)
    code, _, err = run(capsys, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_")
    assert "already exists; pass --replace" in _one_line_error(code, err)
    code, _, err = run(capsys, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_", "--replace")
    assert code == 0, err
    code, out, _ = run(capsys, "creds", "list", "--json")
    assert [c["name"] for c in json.loads(out)] == ["sk"]


def test_from_env_reads_only_the_fields_of_the_credential_model(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str
) -> None:
    """AWS_ is a prefix the AWS tools share: AWS_CA_BUNDLE, AWS_DEFAULT_REGION and the
    rest are no fields of an aws credential and must not make it invalid."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "")  # set but empty: not a value
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca.pem")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    code, out, err = run(capsys, "creds", "add", "prod", "--connector", "aws", "--from-env", "AWS_")
    assert code == 0, err
    assert "fields: access_key_id, secret_access_key;" in out
    assert "read AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; ignored AWS_CA_BUNDLE, AWS_DEFAULT_REGION (not fields of aws's aws credentials)" in err
    assert KEY not in out + err and "eu-west-1" not in out + err
    monkeypatch.setenv("ACME_COLOUR", "vermilion")
    code, _, err = run(capsys, "creds", "add", "x", "--connector", "sample", "--kind", "api_key", "--from-env", "ACME_")
    line = _one_line_error(code, err)
    assert "no environment variable ACME_<FIELD> is set for any field of sample's api_key credentials" in line
    assert "ACME_API_KEY" in line and "vermilion" not in line


def test_add_checks_the_vault_key_before_asking_for_any_field(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str
) -> None:
    from typer._click import termui

    from tapyard.cli import _creds
    from tapyard_credentials import generate_key

    _add_key(capsys, monkeypatch)
    asked: list[str] = []
    monkeypatch.setattr(termui, "visible_prompt_func", lambda p: asked.append(p) or "")
    monkeypatch.setattr(termui, "hidden_prompt_func", lambda p: asked.append(p) or KEY)
    monkeypatch.setattr(_creds, "interactive", lambda: True)
    add = ("creds", "add", "new", "--connector", "sample", "--kind", "api_key")
    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())  # not this vault's key
    code, _, err = run(capsys, *add)
    assert "the vault key does not open" in _one_line_error(code, err)
    code, _, err = run(capsys, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key")
    assert "the vault key does not open" in _one_line_error(code, err)
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "not a key")
    code, _, err = run(capsys, *add)
    assert "TAPYARD_VAULT_KEY is not a vault key" in _one_line_error(code, err)
    monkeypatch.setenv("TAPYARD_VAULT_KEY", vault_env)
    code, _, err = run(capsys, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key")
    assert "already exists; pass --replace" in _one_line_error(code, err)
    assert asked == []  # nobody typed a secret for nothing
    # a new vault with no key anywhere, and nobody to ask: said before the environment is read
    monkeypatch.delenv("TAPYARD_VAULT_KEY")
    monkeypatch.setenv("TAPYARD_VAULT", str(Path(os.environ["TAPYARD_VAULT"]).with_name("other.db")))
    monkeypatch.setattr(_creds, "interactive", lambda: False)
    code, _, err = run(capsys, *add, "--from-env", "SAMPLE_")
    assert "no vault key: set TAPYARD_VAULT_KEY" in _one_line_error(code, err)
    assert not Path(os.environ["TAPYARD_VAULT"]).exists()


# --- using ----------------------------------------------------------------------------------


def test_sync_check_and_discover_with_a_stored_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, tmp_path: Path
) -> None:
    _add_key(capsys, monkeypatch)
    code, out, err = run(capsys, "sync", "sample", *SAMPLE, "--creds", "sk", "--to", f"sqlite:///{tmp_path / 'o.db'}", "--json")
    assert code == 0, err
    assert json.loads(out)["records"] == 90
    code, out, err = run(capsys, "check", "sample", *SAMPLE, "--creds", "sk")
    assert code == 0 and "ok: sample is reachable" in out, err
    code, out, err = run(capsys, "discover", "sample", *SAMPLE, "--creds", "sk", "--json")
    assert code == 0, err
    code, _, err = run(capsys, "check", "sample", *SAMPLE)
    assert "401 Unauthorized" in _one_line_error(code, err)
    code, out, _ = run(capsys, "creds", "show", "sk", "--json")
    assert json.loads(out)["last_used_at"] is not None


def test_sync_with_oauth_client_credentials_saves_the_token_in_the_vault(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("SO_CLIENT_SECRET", KEY)
    code, _, err = run(capsys, "creds", "add", "so", "--connector", "sample", "--kind", "oauth2_client_credentials", "--from-env", "SO_")
    assert code == 0, err
    config = json.dumps({"records_per_stream": 20, "auth": "oauth2", "server_client_secret": KEY})
    code, out, err = run(capsys, "sync", "sample", "-c", config, "--creds", "so", "--to", f"sqlite:///{tmp_path / 'o.db'}", "--json")
    assert code == 0, err
    code, out, _ = run(capsys, "creds", "show", "so", "--json")
    assert set(json.loads(out)["fields"]) >= {"client_secret", "access_token", "expires_at"}
    code, out, _ = run(capsys, "creds", "audit", "--name", "so", "--json")
    assert [e["action"] for e in json.loads(out)][:2] == ["update_fields", "get"]


def test_access_control_refuses_other_connectors_and_audits_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, acme: tapyard.Connector
) -> None:
    monkeypatch.setenv("ACME_API_KEY", KEY)
    code, _, err = run(capsys, "creds", "add", "acme-key", "--connector", "acme", "--kind", "api_key", "--from-env", "ACME_")
    assert code == 0, err
    code, _, err = run(capsys, "check", "sample", *SAMPLE, "--creds", "acme-key")
    line = _one_line_error(code, err)
    assert "connector 'sample' may not use credential 'acme-key' (allowed: acme)" in line
    code, _, err = run(capsys, "check", "sample", *SAMPLE, "--creds", "nobody")
    assert "no credential named 'nobody'" in _one_line_error(code, err)
    code, _, err = run(capsys, "creds", "add", "acme-key", "--connector", "acme", "--kind", "api_key", "--from-env", "ACME_", "--replace", "--allow", "sample")
    assert code == 0, err
    code, out, err = run(capsys, "check", "sample", *SAMPLE, "--creds", "acme-key")
    assert code == 0, err
    code, out, _ = run(capsys, "creds", "audit", "--json")
    entries = [(e["action"], e["name"], e["connector"], e["outcome"]) for e in reversed(json.loads(out))]
    assert entries == [
        ("put", "acme-key", "acme", "ok"),
        ("get", "acme-key", "sample", "denied"),
        ("get", "nobody", "sample", "not_found"),
        ("put", "acme-key", "acme", "ok"),
        ("get", "acme-key", "sample", "ok"),
    ]
    code, out, _ = run(capsys, "creds", "audit")
    assert "denied" in out and KEY not in out
    code, out, _ = run(capsys, "creds", "rm", "acme-key")
    assert code == 0 and "removed credential 'acme-key'" in out
    code, _, err = run(capsys, "creds", "rm", "acme-key")
    assert "no credential named 'acme-key'" in _one_line_error(code, err)


def test_rotate_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str) -> None:
    _add_key(capsys, monkeypatch)
    code, out, err = run(capsys, "creds", "rotate-key")
    assert code == 0, err
    new_key = out.strip()  # standard output holds the key alone: NEW=$(tapyard creds rotate-key)
    assert len(out.splitlines()) == 1 and len(new_key) == 44
    assert err.startswith("re-encrypted the vault under the new key (key id ")
    code, _, err = run(capsys, "creds", "list")
    assert "the vault key does not open" in _one_line_error(code, err)
    monkeypatch.setenv("TAPYARD_VAULT_KEY", new_key)
    code, out, _ = run(capsys, "creds", "list", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "sk"
    monkeypatch.setenv("NEXT_KEY", vault_env)
    code, out, err = run(capsys, "creds", "rotate-key", "--new-key-from-env", "NEXT_KEY")
    assert code == 0 and vault_env not in out, err
    monkeypatch.setenv("TAPYARD_VAULT_KEY", vault_env)
    code, _, _ = run(capsys, "creds", "list")
    assert code == 0


# --- a new key is in the user's hands before the old one stops working ----------------------


def _tapyard(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with real descriptors (capsys has none)."""
    return subprocess.run([sys.executable, "-m", "tapyard", *args], text=True, timeout=60, **kwargs)


def _intact(key: str) -> None:
    """The vault opens with ``key`` and the stored credential is whole."""
    from tapyard_credentials import VaultKey

    with tapyard.open_vault(key=VaultKey.from_key(key)) as vault:
        assert [i.name for i in vault.list()] == ["sk"]
        assert vault.get("sk", connector="sample").fields["api_key"].get_secret_value() == KEY
        vault.verify()


def _closed_pipe() -> int:
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize(
    "output",
    ["/dev/full", "closed pipe", "closed descriptor", "/dev/null", "reader that never reads"],
)
def test_rotate_key_never_leaves_the_vault_under_a_key_nobody_has(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, output: str
) -> None:
    """The key goes out before the commit; when it cannot (ENOSPC, EPIPE, EBADF, a
    sink that keeps nothing, a reader that exits without reading) nothing changes."""
    _add_key(capsys, monkeypatch)
    vault_file = Path(os.environ["TAPYARD_VAULT"])
    before = hashlib.sha256(vault_file.read_bytes()).hexdigest()
    if output == "closed descriptor":  # cmd >&-
        done = subprocess.run(
            ["sh", "-c", '"$0" -m tapyard creds rotate-key >&-', sys.executable],
            capture_output=True, text=True, timeout=60,
        )
        code, err = done.returncode, done.stderr
    elif output == "reader that never reads":  # cmd | sleep 1
        proc = subprocess.Popen(
            [sys.executable, "-m", "tapyard", "creds", "rotate-key"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)  # readable, and left unread
        time.sleep(0.5)
        assert ready and proc.poll() is None  # it has written the key and waits for it to be read
        proc.stdout.close()
        code, err = proc.wait(60), proc.stderr.read()
        proc.stderr.close()
    else:
        target = _closed_pipe() if output == "closed pipe" else os.open(output, os.O_WRONLY)
        try:
            done = _tapyard("creds", "rotate-key", stdout=target, stderr=subprocess.PIPE)
        finally:
            os.close(target)
        code, err = done.returncode, done.stderr
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot hand the new key over: "), err
    assert "the vault was not changed and still opens with the current key" in lines[0]
    assert hashlib.sha256(vault_file.read_bytes()).hexdigest() == before
    _intact(vault_env)


def test_rotate_key_to_a_reader_that_reads_late_and_to_a_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, tmp_path: Path
) -> None:
    _add_key(capsys, monkeypatch)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapyard", "creds", "rotate-key"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1)
    assert proc.poll() is None  # nothing committed until the key is read
    from tapyard_credentials import VaultKey

    # reading only: the rotation holds the vault's write lock while it waits
    with tapyard.open_vault(key=VaultKey.from_key(vault_env)) as vault:
        assert [i.name for i in vault.list()] == ["sk"]
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    _intact(out.strip())

    key_file = tmp_path / "new.key"
    monkeypatch.setenv("TAPYARD_VAULT_KEY", out.strip())
    done = _tapyard("creds", "rotate-key", "--key-file", str(key_file), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert f"written to {key_file} (mode 0600)" in done.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600
    third = key_file.read_text().strip()
    assert third not in done.stdout + done.stderr
    _intact(third)
    monkeypatch.setenv("TAPYARD_VAULT_KEY", third)
    again = _tapyard("creds", "rotate-key", "--key-file", str(key_file), capture_output=True)  # never replaced
    assert again.returncode == 1 and f"{key_file} exists; name a new file" in again.stderr
    assert key_file.read_text().strip() == third
    _intact(third)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_rotate_key_stopped_while_its_key_waits_to_be_read_changes_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str, sig: int, code: int
) -> None:
    _add_key(capsys, monkeypatch)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tapyard", "creds", "rotate-key"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)  # readable, and left unread
    assert ready and proc.poll() is None  # the key is in the pipe; the transaction waits
    proc.send_signal(sig)
    assert proc.wait(30) == code
    assert proc.stderr is not None and proc.stdout is not None
    err = proc.stderr.read()
    unused = proc.stdout.read().strip()
    proc.stderr.close()
    proc.stdout.close()
    assert err.strip() == (
        "interrupted; the vault was not changed and still opens with the current key "
        "(a new key that reached standard output was never used)"
    )
    _intact(vault_env)
    with pytest.raises(Exception, match="does not open"):
        _intact(unused)


def test_rotate_key_that_fails_after_showing_the_key_says_it_was_never_used(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str
) -> None:
    import sqlite3

    from tapyard_credentials._local import LocalBackend

    _add_key(capsys, monkeypatch)

    def disk_full(*_: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(LocalBackend, "_insert_audit", disk_full)
        code, out, err = run(capsys, "creds", "rotate-key")
    line = _one_line_error(code, err)
    assert "the vault was not re-keyed: it still opens with the current key" in line
    assert "the new key printed above was never used" in line
    assert len(out.strip()) == 44  # it was shown
    _intact(vault_env)


def test_a_passphrase_is_asked_for_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, vault_env: str
) -> None:
    from typer._click import termui

    from tapyard.cli import _creds

    monkeypatch.delenv("TAPYARD_VAULT_KEY")
    asked: list[str] = []
    monkeypatch.setattr(termui, "hidden_prompt_func", lambda p: asked.append(p) or "correct horse battery")
    monkeypatch.setattr(_creds, "interactive", lambda: True)
    monkeypatch.setenv("SAMPLE_API_KEY", KEY)
    code, _, err = run(capsys, "creds", "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "SAMPLE_")
    assert code == 0, err
    assert len(asked) == 2  # a new vault: asked twice
    monkeypatch.setattr(_creds, "interactive", lambda: False)
    code, _, err = run(capsys, "creds", "list")
    assert "no vault key" in _one_line_error(code, err)
    monkeypatch.setenv("TAPYARD_VAULT_PASSPHRASE", "wrong horse battery")
    code, _, err = run(capsys, "creds", "list")
    assert "wrong TAPYARD_VAULT_KEY or passphrase" in _one_line_error(code, err)
    monkeypatch.setenv("TAPYARD_VAULT_PASSPHRASE", "correct horse battery")
    code, out, _ = run(capsys, "creds", "list", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "sk"


# --- login ----------------------------------------------------------------------------------


@pytest.fixture
def authz() -> Iterator[LocalAuthorizationServer]:
    client = OAuthClient("acme-cli", None, redirect_uris=("http://127.0.0.1/callback",))
    with LocalAuthorizationServer([client]) as running:
        yield running


def _browser(url: str) -> bool:
    threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()
    return True


def test_login_opens_the_browser_and_stores_the_tokens(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: str,
    acme: tapyard.Connector,
    authz: LocalAuthorizationServer,
    tmp_path: Path,
) -> None:
    import webbrowser

    doc = tmp_path / "login.json"
    doc.write_text(json.dumps({"authorize_url": authz.authorize_url, "token_url": authz.token_url, "client_id": "acme-cli"}))
    code, _, err = run(capsys, "creds", "add", "acme-user", "--connector", "acme", "--kind", "oauth2_authorization_code", "--from-json", str(doc))
    assert code == 0, err
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or _browser(url))
    code, out, err = run(capsys, "creds", "login", "acme-user", "--timeout", "10")
    assert code == 0, err
    assert "logged in: credential 'acme-user' holds new tokens, with a refresh token" in out
    assert opened and opened[0] in err.replace("\n", "")
    assert authz.stats["authorization_code:ok"] == 1
    code, out, _ = run(capsys, "creds", "show", "acme-user", "--json")
    assert {"access_token", "refresh_token"} <= set(json.loads(out)["fields"])

    def forged(url: str) -> bool:
        return _browser(url.replace("state=", "state=x"))

    monkeypatch.setattr(webbrowser, "open", forged)
    code, _, err = run(capsys, "creds", "login", "acme-user", "--timeout", "10")
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert code == 1 and len(errors) == 1 and "wrong state: refused" in errors[0], err
    monkeypatch.setenv("ACME_API_KEY", KEY)
    run(capsys, "creds", "add", "acme-key", "--connector", "acme", "--kind", "api_key", "--from-env", "ACME_")
    code, _, err = run(capsys, "creds", "login", "acme-key")
    assert "only authorization-code credentials" in _one_line_error(code, err)


# --- a damaged or locked vault: one line, file untouched ------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored_vault(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    from tapyard_credentials import Vault

    _add_key(capsys, monkeypatch)
    Vault.open(path).close()  # checkpointed: everything in the main file


@pytest.mark.parametrize("damage", ["wrong-key", "truncated", "flipped-byte", "not-a-vault"])
def test_vault_errors_are_one_line_and_leave_the_file_alone(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: str,
    tmp_path: Path,
    damage: str,
) -> None:
    from tapyard_credentials import generate_key

    path = tmp_path / "vault.db"
    _stored_vault(capsys, monkeypatch, path)
    data = bytearray(path.read_bytes())
    expected = "is damaged"
    if damage == "wrong-key":
        monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
        expected = "the vault key does not open"
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flipped-byte":
        import sqlite3

        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        (blob,) = conn.execute("SELECT secret FROM credentials").fetchone()
        conn.close()
        data[bytes(data).find(blob) + len(blob) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        shutil.copyfile(Path(__file__), path)
    before = _sha(path)
    for args in (
        ("creds", "show", "sk"),
        ("sync", "sample", *SAMPLE, "--creds", "sk", "--to", f"sqlite:///{tmp_path / 'o.db'}"),
    ):
        code, out, err = run(capsys, *args)
        line = _one_line_error(code, err)
        assert expected in line, line
        assert KEY not in out + err
    if damage != "flipped-byte":
        code, _, err = run(capsys, "creds", "list")
        assert expected in _one_line_error(code, err)
    assert _sha(path) == before

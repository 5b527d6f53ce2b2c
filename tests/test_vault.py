"""The vault's API: typed credentials, access control, the audit log, keys, files,
and the promise that no secret leaks into the file, the log, an error or a repr."""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import stat
import string
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

import tapyard_credentials
from tapyard_credentials import (
    AccessDeniedError,
    CredentialNotFoundError,
    CredentialValidationError,
    KeyringUnavailableError,
    Redactor,
    Vault,
    VaultError,
    VaultKey,
    VaultKeyError,
    generate_key,
    save_key_to_keyring,
)

#: no key from the environment or the real OS keyring leaks into a test (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_ambient_keys")


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def vault(tmp_path: Path, key: str) -> Iterator[Vault]:
    with Vault.open(tmp_path / "vault.db", key=key, redactor=Redactor()) as opened:
        yield opened


def _random_secret(length: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits + "+/=&?%: @"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        urllib.parse.quote(value, safe="").encode(),
        urllib.parse.quote_plus(value).encode(),
        raw.hex().encode(),
    ]


def test_every_error_derives_from_vault_error_and_is_documented() -> None:
    from tapyard_credentials import _exceptions

    tree = _exceptions.__doc__ or ""
    for name in _exceptions.__all__:
        cls = getattr(_exceptions, name)
        assert issubclass(cls, VaultError)
        assert name in tree, f"{name} missing from the tree in the module docstring"
        assert "safe" in (cls.__doc__ or "").lower(), name


def test_the_vault_imports_nothing_of_tapyard() -> None:
    src = Path(tapyard_credentials.__file__).parent
    for module in src.glob("*.py"):
        text = module.read_text()
        assert (
            "import tapyard\n" not in text
            and "from tapyard " not in text
            and "from tapyard." not in text
        ), module


# --- storing and reading ----------------------------------------------------------------


def test_put_get_round_trip(vault: Vault) -> None:
    info = vault.put(
        "stripe-prod", connector="stripe", kind="api_key", fields={"api_key": "sk_live_0123456789"}
    )
    assert info.name == "stripe-prod" and info.allowed_connectors == ("stripe",)
    assert info.field_names == ("api_key",) and info.last_used_at is None

    credential = vault.get("stripe-prod", connector="stripe")
    assert credential.fields["api_key"].get_secret_value() == "sk_live_0123456789"
    assert credential.secret("api_key") == "sk_live_0123456789"
    assert credential.kind == "api_key"
    assert credential.last_used_at is not None
    assert vault.info("stripe-prod").last_used_at == credential.last_used_at


def test_put_replaces_and_keeps_created_at(vault: Vault) -> None:
    first = vault.put("x", connector="acme", kind="api_key", fields={"api_key": "one-one-one"})
    second = vault.put(
        "x", connector="acme", kind="api_key", fields={"api_key": SecretStr("two-two-two")}
    )
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at
    assert vault.get("x", connector="acme").secret("api_key") == "two-two-two"
    assert len(vault.list()) == 1


def test_list_and_info_show_no_values(vault: Vault) -> None:
    secret = _random_secret()
    vault.put("b", connector="acme", kind="api_key", fields={"api_key": secret})
    vault.put(
        "a", connector="acme", kind="basic", fields={"username": "alice", "password": secret + "x"}
    )
    listed = vault.list()
    assert [i.name for i in listed] == ["a", "b"]
    assert listed[0].field_names == ("password", "username")
    for shown in (
        repr(listed),
        str(listed),
        repr(vault.info("a")),
        vault.info("a").model_dump_json(),
    ):
        assert secret not in shown
    assert not hasattr(listed[0], "fields")


def test_missing_credential(vault: Vault) -> None:
    with pytest.raises(CredentialNotFoundError, match="no credential named 'nope'"):
        vault.info("nope")
    vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    with pytest.raises(CredentialNotFoundError):
        vault.get("nope", connector="acme")
    with pytest.raises(CredentialNotFoundError):
        vault.remove("nope")
    with pytest.raises(CredentialNotFoundError):
        vault.update_fields("nope", {"k": "v"})


def test_remove(vault: Vault) -> None:
    vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    vault.remove("x")
    assert vault.list() == []
    with pytest.raises(CredentialNotFoundError):
        vault.get("x", connector="acme")


def test_update_fields_merges_and_is_durable(tmp_path: Path, key: str) -> None:
    path = tmp_path / "vault.db"
    with Vault.open(path, key=key) as vault:
        vault.put(
            "oauth",
            connector="acme",
            kind="oauth2_refresh",
            fields={
                "client_id": "cid-123456",
                "client_secret": "cs-1234567",
                "refresh_token": "rt-old-1234",
            },
        )
        updated = vault.update_fields(
            "oauth", {"refresh_token": "rt-new-5678", "access_token": "at-5678901"}
        )
        assert updated.field_names == (
            "access_token",
            "client_id",
            "client_secret",
            "refresh_token",
        )
        # Durable when it returns: another connection (another process) sees it at once.
        other = Vault.open(path, key=key)
        fields = other.get("oauth", connector="acme").fields
        assert fields["refresh_token"].get_secret_value() == "rt-new-5678"
        assert fields["client_secret"].get_secret_value() == "cs-1234567"
        other.close()
        # synchronous=FULL is in force for the commit of a durable write.
        conn = vault.backend._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_input_is_validated_without_echoing_values(vault: Vault) -> None:
    secret = _random_secret()
    bad_inputs: list[dict[str, Any]] = [
        {"name": "", "connector": "acme", "kind": "api_key", "fields": {"k": secret}},
        {"name": " padded", "connector": "acme", "kind": "api_key", "fields": {"k": secret}},
        {"name": "x", "connector": "no spaces", "kind": "api_key", "fields": {"k": secret}},
        {"name": "x", "connector": "acme", "kind": "API Key", "fields": {"k": secret}},
        {"name": "x", "connector": "acme", "kind": "api_key", "fields": {"k": 12345}},
        {"name": "x", "connector": "acme", "kind": "api_key", "fields": {"": secret}},
        {"name": "x", "connector": "acme", "kind": "api_key", "fields": [("k", secret)]},
        {
            "name": "x",
            "connector": "acme",
            "kind": "api_key",
            "fields": {"k": secret},
            "allowed_connectors": ["a b"],
        },
    ]
    for bad in bad_inputs:
        with pytest.raises(CredentialValidationError) as caught:
            vault.put(**bad)
        assert secret not in str(caught.value)
    assert vault.list() == []


# --- access control and the audit log ---------------------------------------------------


def test_access_control_and_audit(vault: Vault) -> None:
    vault.put(
        "shared",
        connector="acme",
        kind="api_key",
        fields={"k": "v-123456"},
        allowed_connectors=["acme-eu"],
    )
    assert vault.info("shared").allowed_connectors == ("acme", "acme-eu")
    vault.get("shared", connector="acme-eu", actor="scheduler")
    with pytest.raises(
        AccessDeniedError, match="connector 'evil' may not use credential 'shared'"
    ) as caught:
        vault.get("shared", connector="evil", actor="job:42")
    assert caught.value.connector == "evil" and caught.value.name == "shared"
    with pytest.raises(CredentialNotFoundError):
        vault.get("ghost", connector="acme")
    vault.update_fields("shared", {"k": "v-789012"})
    vault.remove("shared")

    entries = vault.audit()
    summary = [(e.action, e.name, e.connector, e.outcome, e.actor) for e in entries]
    assert summary == [
        ("remove", "shared", None, "ok", "cli"),
        ("update_fields", "shared", None, "ok", "cli"),
        ("get", "ghost", "acme", "not_found", "cli"),
        ("get", "shared", "evil", "denied", "job:42"),
        ("get", "shared", "acme-eu", "ok", "scheduler"),
        ("put", "shared", "acme", "ok", "cli"),
    ]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    assert all(e.pid == os.getpid() and e.user for e in entries)
    assert [e.action for e in vault.audit(name="ghost")] == ["get"]
    assert len(vault.audit(limit=2)) == 2


def test_audit_log_is_append_only_in_the_database(vault: Vault) -> None:
    vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    conn = sqlite3.connect(vault.location)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET outcome = 'ok'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit")
        conn.rollback()
    finally:
        conn.close()
    assert len(vault.audit()) == 1


def test_to_model_validates_against_a_connector_model(vault: Vault) -> None:
    class AcmeCredentials(BaseModel):
        model_config = ConfigDict(extra="forbid")
        api_key: SecretStr
        region: str = "eu"

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        api_key: str

        @field_validator("api_key")
        @classmethod
        def _long(cls, value: str) -> str:
            raise ValueError(f"{value} is not accepted")

    secret = _random_secret()
    vault.put("good", connector="acme", kind="api_key", fields={"api_key": secret})
    model = vault.get("good", connector="acme").to_model(AcmeCredentials)
    assert model.api_key.get_secret_value() == secret and model.region == "eu"

    vault.put("bad", connector="acme", kind="api_key", fields={"colour": secret})
    with pytest.raises(CredentialValidationError) as caught:
        vault.get("bad", connector="acme").to_model(AcmeCredentials)
    assert str(caught.value) == (
        "credential 'bad' does not fit acme's credential model: "
        "api_key: required field is missing; colour: unknown field"
    )

    with pytest.raises(CredentialValidationError) as caught:
        vault.get("good", connector="acme").to_model(Strict)
    assert secret not in str(caught.value) and "api_key:" in str(caught.value)


def test_repr_and_errors_never_show_secrets(vault: Vault) -> None:
    secret = _random_secret()
    vault.put("x", connector="acme", kind="api_key", fields={"api_key": secret})
    credential = vault.get("x", connector="acme")
    for shown in (
        repr(credential),
        str(credential),
        credential.model_dump_json(),
        repr(credential.fields),
    ):
        assert secret not in shown
    assert secret not in repr(VaultKey.from_passphrase(secret))


def test_no_secret_in_the_file_the_wal_the_audit_log_or_errors(tmp_path: Path, key: str) -> None:
    path = tmp_path / "vault.db"
    known = [_random_secret(n) for n in (8, 16, 24, 40, 64) for _ in range(4)]
    messages: list[str] = []
    vault = Vault.open(path, key=key, redactor=Redactor())
    for i, value in enumerate(known):
        vault.put(
            f"cred-{i}",
            connector="acme",
            kind="api_key",
            fields={"api_key": value, "user": f"u{i}"},
        )
    for i in range(len(known)):
        vault.get(f"cred-{i}", connector="acme")
        for name, connector in ((f"cred-{i}", "evil"), (f"cred-{i}x", "acme")):
            try:
                vault.get(name, connector=connector)
            except VaultError as exc:
                messages.append(f"{exc!s} {exc!r}")
    assert len(messages) == 2 * len(known)
    vault.update_fields("cred-0", {"api_key": known[0] + "-2"})
    # While the vault is open the data sits in the -wal file; look at both, then at
    # the main file after the checkpoint on close.
    blobs = [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
    assert any(p.name.endswith("-wal") for p in tmp_path.iterdir())
    audit_text = "".join(e.model_dump_json() for e in vault.audit(limit=10_000))
    reprs = repr(vault.list()) + "".join(
        repr(vault.get(f"cred-{i}", connector="acme")) for i in range(3)
    )
    vault.close()
    blobs += [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
    for value in known:
        for form in _forms(value):
            for blob in blobs:
                assert form not in blob
            assert form.decode() not in audit_text
            assert form.decode() not in reprs
            for message in messages:
                assert form.decode() not in message


# --- keys ----------------------------------------------------------------------------


def test_generate_key_is_32_random_bytes() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for text in keys:
        assert len(base64.urlsafe_b64decode(text)) == 32


def test_malformed_keys_are_refused_without_echo() -> None:
    for bad in ("short", "A" * 43 + "!", base64.urlsafe_b64encode(b"x" * 31).decode()):
        with pytest.raises(VaultKeyError, match="not a vault key") as caught:
            VaultKey.from_key(bad)
        assert bad not in str(caught.value)


def test_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("TAPYARD_VAULT_KEY", key)
    with Vault.open(tmp_path / "vault.db") as vault:
        vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    with pytest.raises(VaultKeyError, match="wrong TAPYARD_VAULT_KEY or passphrase"):
        Vault.open(tmp_path / "vault.db")


def test_no_key_anywhere_is_one_clear_error(tmp_path: Path) -> None:
    vault = Vault.open(tmp_path / "vault.db")
    assert vault.list() == []  # nothing to read yet; no key needed
    with pytest.raises(VaultKeyError, match="no vault key: set TAPYARD_VAULT_KEY"):
        vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    assert not (tmp_path / "vault.db").exists()


def test_passphrase_from_env_and_from_a_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vault.db"
    monkeypatch.setenv("TAPYARD_VAULT_PASSPHRASE", "correct horse battery staple")
    with Vault.open(path) as vault:
        vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
        assert vault.key_id
    monkeypatch.delenv("TAPYARD_VAULT_PASSPHRASE")
    asked: list[int] = []

    def prompt() -> str:
        asked.append(1)
        return "correct horse battery staple"

    with Vault.open(path, key=VaultKey.from_passphrase(prompt)) as vault:
        assert vault.get("x", connector="acme").secret("k") == "value-1234"
    assert asked == [1]
    # A passphrase-made vault names the right way to open it when given a key.
    with pytest.raises(VaultKeyError, match="opened with a passphrase"):
        Vault.open(path, key=generate_key())
    # scrypt at OWASP strength, salt recorded in the metadata.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (doc,) = conn.execute("SELECT doc FROM vault_meta").fetchone()
    conn.close()
    assert '"n":131072' in doc and '"r":8' in doc and '"p":1' in doc and '"salt":' in doc


def _keyring_backend(name: str, priority: float, module: str = "tests.fake_keyrings") -> Any:
    from keyring.backend import KeyringBackend

    def get_password(self: Any, service: str, username: str) -> str | None:
        found: str | None = self.store.get((service, username))
        return found

    def set_password(self: Any, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self: Any, service: str, username: str) -> None:
        self.store.pop((service, username), None)

    cls = type(
        name,
        (KeyringBackend,),
        {
            "priority": priority,
            "__module__": module,
            "get_password": get_password,
            "set_password": set_password,
            "delete_password": delete_password,
        },
    )
    backend = cls()
    backend.store = {}
    return backend


def test_keyring_secure_backend_holds_the_key(tmp_path: Path) -> None:
    import keyring

    keyring.set_keyring(_keyring_backend("SecureKeychain", 10))
    key = generate_key()
    save_key_to_keyring(key)
    with Vault.open(tmp_path / "vault.db", key=VaultKey.from_keyring()) as vault:
        vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    # With no key given and none in the environment, the keyring's key is used.
    with Vault.open(tmp_path / "vault.db") as vault:
        assert vault.get("x", connector="acme").secret("k") == "value-1234"
    with Vault.open(tmp_path / "vault.db", key=key) as vault:
        assert vault.list()


@pytest.mark.parametrize(
    ("name", "priority", "module"),
    [
        ("PlaintextKeyring", 10, "keyrings.alt.file"),
        ("Keyring", 0, "keyring.backends.fail"),
        ("Keyring", -1, "keyring.backends.null"),
        ("SomeWeakKeyring", 0.5, "tests.fake_keyrings"),
    ],
)
def test_insecure_keyring_backends_are_refused(name: str, priority: float, module: str) -> None:
    import keyring

    keyring.set_keyring(_keyring_backend(name, priority, module))
    with pytest.raises(KeyringUnavailableError, match="no secure backend"):
        save_key_to_keyring(generate_key())
    with pytest.raises(KeyringUnavailableError, match="no secure backend"):
        VaultKey.from_keyring()


def test_empty_keyring_is_a_clear_error() -> None:
    import keyring

    keyring.set_keyring(_keyring_backend("SecureKeychain", 10))
    with pytest.raises(KeyringUnavailableError, match="holds no vault key"):
        VaultKey.from_keyring()


# --- files -------------------------------------------------------------------------


def test_default_path_and_creation_on_first_write(
    key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TAPYARD_HOME", str(home))
    vault = Vault.open(key=key)
    assert vault.location == str(home / "vault.db")
    assert not home.exists()
    vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    assert stat.S_IMODE((home / "vault.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for sidecar in home.glob("vault.db-*"):
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar
    assert not list(home.glob(".*.tmp"))
    vault.close()
    monkeypatch.delenv("TAPYARD_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert Vault.open(key=key).location == str(
        tmp_path / "user" / ".local" / "share" / "tapyard" / "vault.db"
    )


def test_vault_is_sqlite_in_wal_mode(vault: Vault) -> None:
    vault.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    conn = sqlite3.connect(vault.location)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_closed_vault_refuses_use(vault: Vault) -> None:
    vault.close()
    with pytest.raises(VaultError, match="closed"):
        vault.list()
    vault.close()

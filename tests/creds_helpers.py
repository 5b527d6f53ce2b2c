"""Shared pieces of the credential, auth and OAuth tests: a vault key in the
environment (never the real keyring), RSA keys, and a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tapyard.cli import main


def vault_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """For a fixture: a fresh vault key in TAPYARD_VAULT_KEY, the vault in
    tmp_path, no OS keyring. Yields the key."""
    import keyring
    from keyring.backends import fail

    from tapyard_credentials import generate_key

    key = generate_key()
    monkeypatch.setenv("TAPYARD_VAULT_KEY", key)
    monkeypatch.delenv("TAPYARD_VAULT_PASSPHRASE", raising=False)
    monkeypatch.setenv("TAPYARD_VAULT", str(tmp_path / "vault.db"))
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    yield key
    keyring.set_keyring(previous)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return its exit code, stdout and stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def rsa_key_pair() -> tuple[str, str]:
    """A fresh 2048-bit RSA key: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public

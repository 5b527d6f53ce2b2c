"""The publisher's Ed25519 signing key and registry token, kept in the data directory.

``publisher/ed25519.pem`` (0600) is made once by ``tapyard registry register``
or ``tapyard registry key``; ``TAPYARD_PUBLISHER_KEY`` names another PEM file.
The token a registration returns is kept in ``publisher/token`` (0600) unless
``--token``/``TAPYARD_REGISTRY_TOKEN`` gives one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tapyard.marketplace._errors import RegistryError

__all__ = ["key_path", "load_signer", "public_key_pem", "read_token", "save_token"]


def _folder() -> Path:
    from tapyard_credentials import data_dir

    return data_dir() / "publisher"


def key_path() -> Path:
    return Path(os.environ["TAPYARD_PUBLISHER_KEY"]) if os.environ.get("TAPYARD_PUBLISHER_KEY") else _folder() / "ed25519.pem"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def ensure_key() -> tuple[Path, bool]:
    """The key file, made now when there is none; and whether it was made."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = key_path()
    if path.exists():
        return path, False
    key = Ed25519PrivateKey.generate()
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path, True


def _private() -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = key_path()
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise RegistryError(f"no publisher key at {path}; make one with `tapyard registry key`") from None
    except (ValueError, TypeError):
        raise RegistryError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RegistryError(f"{path} is not an Ed25519 key; make one with `tapyard registry key`")
    return key


def load_signer() -> Any:
    """A python-tuf signer over the publisher's key."""
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(_private())


def public_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    data: bytes = _private().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


def save_token(token: str) -> Path:
    path = _folder() / "token"
    _write_private(path, token.encode() + b"\n")
    return path


def read_token(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("TAPYARD_REGISTRY_TOKEN"):
        return os.environ["TAPYARD_REGISTRY_TOKEN"]
    try:
        return (_folder() / "token").read_text(encoding="utf-8").strip()
    except OSError:
        raise RegistryError(
            "no publisher token: register with `tapyard registry register NAMESPACE`, or pass --token / set TAPYARD_REGISTRY_TOKEN"
        ) from None

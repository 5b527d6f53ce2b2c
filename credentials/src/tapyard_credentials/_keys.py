"""Where a vault's master key comes from: a generated key, a passphrase, the OS keyring.

A master key is 32 random bytes, written as URL-safe base64 (what
:func:`generate_key` returns and ``TAPYARD_VAULT_KEY`` holds). A passphrase is
stretched into one with scrypt at OWASP's recommended strength (N=2**17, r=8,
p=1) and a random 16-byte salt kept in the vault's metadata, so the same
passphrase opens the vault on any machine. The OS keyring is used only through
a backend that keeps secrets encrypted by the OS (macOS Keychain, Windows
Credential Locker, Secret Service, KWallet); the plaintext, ``fail`` and
``null`` backends are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from tapyard_credentials._exceptions import KeyringUnavailableError, VaultKeyError

__all__ = [
    "DEFAULT_KEYRING_SERVICE",
    "DEFAULT_KEYRING_USERNAME",
    "ENV_KEY",
    "ENV_PASSPHRASE",
    "KdfParams",
    "VaultKey",
    "generate_key",
    "save_key_to_keyring",
]

ENV_KEY = "TAPYARD_VAULT_KEY"
ENV_PASSPHRASE = "TAPYARD_VAULT_PASSPHRASE"
DEFAULT_KEYRING_SERVICE = "tapyard"
DEFAULT_KEYRING_USERNAME = "vault-key"

KEY_BYTES = 32
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
# Bounds on parameters read from a vault file, so a crafted file cannot make
# opening it take gigabytes of memory.
_MAX_SCRYPT_N = 2**22
_MAX_SCRYPT_R = 32
_MAX_SCRYPT_P = 16


def generate_key() -> str:
    """A new random master key: 32 bytes from the OS's CSPRNG as URL-safe base64 (44 chars).

    This is what ``tapyard creds keygen`` prints and ``TAPYARD_VAULT_KEY`` holds.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def decode_key(text: str, *, source: str) -> bytes:
    """The 32 bytes of a key written as URL-safe (or standard) base64, padding optional.

    Raises :class:`VaultKeyError` naming ``source`` (never the text) if it is malformed.
    """
    cleaned = "".join(text.split())
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise VaultKeyError(
            f"{source} is not a vault key: expected the URL-safe base64 of 32 random bytes "
            "(make one with `tapyard creds keygen`)"
        )
    return raw


@dataclass(frozen=True)
class KdfParams:
    """How the master key is obtained, as recorded in a vault's metadata.

    ``name`` is ``"none"`` for a key used as is, ``"scrypt"`` for a passphrase.
    """

    name: Literal["none", "scrypt"]
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0

    @classmethod
    def new_scrypt(cls) -> KdfParams:
        """Fresh scrypt parameters: a random salt at OWASP's recommended strength."""
        return cls("scrypt", secrets.token_bytes(SALT_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P)

    def to_json(self) -> dict[str, Any]:
        if self.name == "none":
            return {"name": "none"}
        salt = base64.b64encode(self.salt).decode("ascii")
        return {"name": "scrypt", "salt": salt, "n": self.n, "r": self.r, "p": self.p}

    @classmethod
    def from_json(cls, data: object) -> KdfParams:
        """Parse recorded parameters; raises ``ValueError`` when they are malformed or out of bounds."""
        if not isinstance(data, Mapping):
            raise ValueError("kdf is not an object")
        if data.get("name") == "none":
            return cls("none")
        if data.get("name") != "scrypt":
            raise ValueError("unknown kdf")
        n, r, p, salt = data.get("n"), data.get("r"), data.get("p"), data.get("salt")
        if not (isinstance(n, int) and isinstance(r, int) and isinstance(p, int)):
            raise ValueError("kdf parameters are not integers")
        if not (
            2 <= n <= _MAX_SCRYPT_N
            and n & (n - 1) == 0
            and 1 <= r <= _MAX_SCRYPT_R
            and 1 <= p <= _MAX_SCRYPT_P
        ):
            raise ValueError("kdf parameters are out of bounds")
        if not isinstance(salt, str):
            raise ValueError("kdf salt is not a string")
        raw_salt = base64.b64decode(salt, validate=True)
        if len(raw_salt) < 8:
            raise ValueError("kdf salt is too short")
        return cls("scrypt", raw_salt, n, r, p)


def _scrypt(passphrase: str, params: KdfParams) -> bytes:
    maxmem = 128 * params.r * (params.n + params.p + 2) + 1024 * 1024
    return hashlib.scrypt(
        passphrase.encode("utf-8"),
        salt=params.salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=maxmem,
        dklen=KEY_BYTES,
    )


PassphraseSource = str | SecretStr | Callable[[], "str | SecretStr"]


class VaultKey:
    """Where a vault's master key comes from: a key, or a passphrase to stretch.

    Build one with :meth:`from_key`, :meth:`from_passphrase`, :meth:`from_keyring`
    or :meth:`from_env`. It never shows its secret: ``repr()`` names only the kind
    and the source. A passphrase given as a callable (a prompt) is asked for at most
    once, when the vault first needs it.
    """

    __slots__ = ("_cache", "_key", "_lock", "_passphrase", "kind", "source")

    def __init__(
        self,
        *,
        kind: Literal["key", "passphrase"],
        source: str,
        key: bytes | None = None,
        passphrase: PassphraseSource | None = None,
    ) -> None:
        self.kind: Literal["key", "passphrase"] = kind
        self.source = source
        self._key = key
        self._passphrase = passphrase
        self._cache: dict[KdfParams, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VaultKey(kind={self.kind!r}, source={self.source!r})"

    @classmethod
    def from_key(cls, key: str | bytes | SecretStr, *, source: str = "the vault key") -> VaultKey:
        """A key as :func:`generate_key` writes it (base64 text), or its 32 raw bytes.

        Raises :class:`VaultKeyError` if it is not 32 bytes.
        """
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        if isinstance(key, bytes):
            if len(key) != KEY_BYTES:
                raise VaultKeyError(f"{source} is not a vault key: expected 32 bytes")
            raw = key
        else:
            raw = decode_key(key, source=source)
        return cls(kind="key", source=source, key=raw)

    @classmethod
    def from_passphrase(
        cls, passphrase: PassphraseSource, *, source: str = "the vault passphrase"
    ) -> VaultKey:
        """A passphrase, or a callable returning one (called at most once, when needed).

        The passphrase is stretched with scrypt and the vault's salt.
        """
        if isinstance(passphrase, str | SecretStr) and not _text(passphrase):
            raise VaultKeyError(f"{source} is empty")
        return cls(kind="passphrase", source=source, passphrase=passphrase)

    @classmethod
    def from_keyring(
        cls, *, service: str = DEFAULT_KEYRING_SERVICE, username: str = DEFAULT_KEYRING_USERNAME
    ) -> VaultKey:
        """The key stored in the OS keyring under ``service``/``username``.

        Raises :class:`KeyringUnavailableError` when the keyring has no secure backend
        or holds no key there.
        """
        backend = secure_keyring_backend()
        where = (
            f"the OS keyring ({type(backend).__name__}, service {service!r}, entry {username!r})"
        )
        try:
            stored = backend.get_password(service, username)
        except Exception as exc:
            raise KeyringUnavailableError(f"cannot read {where}: {type(exc).__name__}") from None
        if not isinstance(stored, str) or not stored:
            raise KeyringUnavailableError(
                f"{where} holds no vault key: store one with `tapyard creds keygen --keyring`"
            )
        return cls.from_key(stored, source=where)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefer: str = "key"
    ) -> VaultKey | None:
        """The key in ``TAPYARD_VAULT_KEY`` or the passphrase in ``TAPYARD_VAULT_PASSPHRASE``.

        When both are set, ``prefer`` ("key" or "passphrase") picks one. ``None`` when
        neither is set.
        """
        env = os.environ if environ is None else environ
        key, phrase = env.get(ENV_KEY), env.get(ENV_PASSPHRASE)
        if key and (prefer == "key" or not phrase):
            return cls.from_key(key, source=ENV_KEY)
        if phrase:
            return cls.from_passphrase(phrase, source=ENV_PASSPHRASE)
        return None

    def derive(self, params: KdfParams) -> bytes:
        """The 32-byte master key under ``params`` (scrypt for a passphrase).

        Raises :class:`VaultKeyError` when the key's kind does not match how the vault
        was made (a passphrase for a key vault or the other way round).
        """
        if self.kind == "key":
            if params.name != "none":
                raise VaultKeyError(
                    f"this vault is opened with a passphrase ({ENV_PASSPHRASE}), not with {self.source}"
                )
            assert self._key is not None
            return self._key
        if params.name != "scrypt":
            raise VaultKeyError(
                f"this vault is opened with a key ({ENV_KEY}), not with {self.source}"
            )
        with self._lock:
            cached = self._cache.get(params)
            if cached is None:
                cached = self._cache[params] = _scrypt(self._get_passphrase(), params)
            return cached

    def new_params(self) -> KdfParams:
        """Parameters for a vault created (or re-keyed) with this key."""
        return KdfParams("none") if self.kind == "key" else KdfParams.new_scrypt()

    def _get_passphrase(self) -> str:
        source = self._passphrase
        if callable(source):
            value = _text(source())
            if not value:
                raise VaultKeyError(f"{self.source} is empty")
            self._passphrase = value
            return value
        assert source is not None
        return _text(source)


def _text(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# --- the OS keyring -------------------------------------------------------------

_INSECURE_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def keyring_backend_problem(backend: object) -> str | None:
    """Why ``backend`` may not hold a vault key, or ``None`` if it is a secure one.

    Refused: keyring's ``fail`` and ``null`` backends, everything in ``keyrings.alt``
    (files on disk), any class named like a plaintext store, and any backend with a
    priority below 1 (keyring's own mark of "not recommended").
    """
    cls = type(backend)
    module, name = cls.__module__, cls.__name__
    label = f"{module}.{name}"
    if module.startswith(_INSECURE_MODULES) or "plaintext" in name.lower():
        return f"{label} keeps secrets unencrypted or nowhere"
    try:
        priority = float(getattr(backend, "priority", 0))
    except (TypeError, ValueError):
        priority = 0.0
    if priority < 1:
        return f"{label} is not a recommended backend (priority {priority:g})"
    return None


def secure_keyring_backend() -> Any:
    """The highest-priority secure backend of the OS keyring.

    When keyring chains several backends, the first secure one is used on its own,
    so a key can never land in (or be read from) an insecure one further down the
    chain. Raises :class:`KeyringUnavailableError` when there is none.
    """
    try:
        import keyring
        from keyring.backends.chainer import ChainerBackend
    except ImportError:
        raise KeyringUnavailableError(
            "the OS keyring is not available: install the `keyring` package"
        ) from None
    try:
        current = keyring.get_keyring()
    except Exception as exc:
        raise KeyringUnavailableError(
            f"the OS keyring cannot be loaded: {type(exc).__name__}"
        ) from None
    candidates: list[object] = (
        list(current.backends) if isinstance(current, ChainerBackend) else [current]
    )
    problems: list[str] = []
    for candidate in candidates:
        problem = keyring_backend_problem(candidate)
        if problem is None:
            return candidate
        problems.append(problem)
    found = "; ".join(problems) or "no keyring backend is installed"
    raise KeyringUnavailableError(
        f"the OS keyring has no secure backend ({found}); use {ENV_KEY} or {ENV_PASSPHRASE} instead"
    )


def save_key_to_keyring(
    key: str, *, service: str = DEFAULT_KEYRING_SERVICE, username: str = DEFAULT_KEYRING_USERNAME
) -> None:
    """Store a key (as :func:`generate_key` writes it) in the OS keyring's secure backend.

    Raises :class:`VaultKeyError` if ``key`` is malformed and
    :class:`KeyringUnavailableError` if no secure backend can store it.
    """
    decode_key(key, source="the key to store")
    backend = secure_keyring_backend()
    try:
        backend.set_password(service, username, key)
    except Exception as exc:
        raise KeyringUnavailableError(
            f"cannot write to the OS keyring ({type(backend).__name__}): {type(exc).__name__}"
        ) from None


def keyring_key_if_available(
    *, service: str = DEFAULT_KEYRING_SERVICE, username: str = DEFAULT_KEYRING_USERNAME
) -> VaultKey | None:
    """The keyring's vault key when a secure backend holds one; ``None`` otherwise.

    Used when no key was given and none is in the environment: it never raises for a
    missing or insecure keyring, it just finds nothing.
    """
    try:
        return VaultKey.from_keyring(service=service, username=username)
    except KeyringUnavailableError:
        return None

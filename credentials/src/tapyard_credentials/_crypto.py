"""Authenticated encryption of vault rows, key ids, key check values and row digests.

The master key is never used directly: HKDF-SHA256 derives the AES-256-GCM key
from it, and HMAC-SHA256 derives a short public key id (a fingerprint that says
*which* key made the vault without revealing anything about it). Every sealed
value is ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``, with a
fresh nonce per write. Digests are unkeyed BLAKE2b over a row's columns: they
catch accidental damage in columns that are not encrypted (timestamps, the audit
log); the GCM tag catches tampering with what matters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["NONCE_BYTES", "KeyMaterial", "digest", "key_id_of"]

NONCE_BYTES = 12
_KEY_CHECK_PLAINTEXT = b"tapyard vault key check v1"
_KEY_CHECK_AAD = b"tapyard-vault/key-check/v1"
_ENCRYPTION_INFO = b"tapyard-vault/aes-256-gcm/v1"
_KEY_ID_LABEL = b"tapyard-vault/key-id/v1"


def key_id_of(master: bytes) -> str:
    """A 16-hex-character fingerprint of a master key; safe to show and store."""
    return hmac.new(master, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


class KeyMaterial:
    """The working keys derived from one master key. Never printed; holds no master key."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, master: bytes) -> None:
        self.key_id = key_id_of(master)
        encryption_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_ENCRYPTION_INFO
        ).derive(master)
        self._aead = AESGCM(encryption_key)

    def __repr__(self) -> str:
        return f"KeyMaterial(key_id={self.key_id!r})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` bound to ``aad``, under a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes | None:
        """The plaintext of ``sealed``, or ``None`` if it does not authenticate with ``aad``
        under this key (wrong key, changed bytes, or a value moved from elsewhere)."""
        if len(sealed) < NONCE_BYTES + 16:
            return None
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            return None

    def key_check(self) -> bytes:
        """A key check value: a constant sealed under this key with a fixed AAD."""
        return self.seal(_KEY_CHECK_PLAINTEXT, _KEY_CHECK_AAD)

    def opens_key_check(self, sealed: bytes) -> bool:
        """Whether ``sealed`` is a key check value made with this key."""
        return self.unseal(sealed, _KEY_CHECK_AAD) == _KEY_CHECK_PLAINTEXT


def digest(*columns: object) -> str:
    """A BLAKE2b-128 digest of a row's columns (JSON-encodable; bytes as hex)."""
    encoded = json.dumps(
        [c.hex() if isinstance(c, bytes) else c for c in columns],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def aad(*parts: object) -> bytes:
    """Canonical associated data from a label and the values a ciphertext is bound to."""
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

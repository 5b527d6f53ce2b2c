"""The local vault: an encrypted SQLite file, the default :class:`SecretBackend`.

Guarantees, and how they are kept:

- **Encrypted at rest.** Each credential's fields are one JSON document sealed with
  AES-256-GCM under a fresh 96-bit nonce per write; its name, connector, kind,
  allowed connectors and field names are the associated data, so a ciphertext moved
  to another row, or an edited access list, fails to authenticate.
- **A wrong key is caught before anything is touched.** The metadata holds a key id
  and a key check value; they are checked through a read-only connection before the
  file is opened for writing.
- **Damage is reported, never repaired or written over.** Before the first read-write
  connection, the raw header and size are checked and SQLite runs ``quick_check``
  through a read-only connection; every row carries a digest checked on read. A
  damaged file raises :class:`VaultCorruptError` and is left byte for byte as found.
- **Atomic, crash-safe writes.** Each change is one ``BEGIN IMMEDIATE`` transaction
  holding the change and its audit entry, in WAL mode: a process killed at any point
  leaves the vault as it was before or after the transaction. ``put``,
  ``update_fields``, ``remove`` and key rotation commit with ``synchronous=FULL``
  (durable against power loss when they return); the bookkeeping of a read
  (``last_used_at`` and its audit entry) with ``NORMAL``.
- **Key rotation is one transaction**: every row, the key check value and the key id
  change together, so the vault opens with the old key or the new one, never neither.
- **Several threads and processes** share one file safely: a busy timeout, immediate
  write transactions, and a check in every write that the key was not rotated by
  another process meanwhile.
- **Created on first write**, atomically (built under a temporary name, then linked
  into place) with mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import os
import secrets
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tapyard_credentials._backend import ProgressCallback, SecretBackend, info_for_put
from tapyard_credentials._crypto import KeyMaterial, aad, digest
from tapyard_credentials._exceptions import (
    VaultError,
    VaultKeyError,
    VaultStorageError,
)
from tapyard_credentials._fileformat import (
    APPLICATION_ID,
    FORMAT_VERSION,
    SCHEMA,
    check_header,
    damaged,
)
from tapyard_credentials._keys import (
    ENV_KEY,
    ENV_PASSPHRASE,
    KdfParams,
    VaultKey,
    keyring_key_if_available,
)
from tapyard_credentials._lock import LockTable
from tapyard_credentials._models import AuditEntry, AuditEvent, Credential, CredentialInfo

__all__ = ["BUSY_TIMEOUT", "LocalBackend"]

BUSY_TIMEOUT = 10.0
"""Seconds a write waits for another process's transaction before giving up."""

_AAD_LABEL = "tapyard-vault/credential/v1"
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_CANTOPEN = 14
_ROW_COLUMNS = (
    "name, connector, kind, allowed_connectors, field_names, created_at, updated_at, "
    "last_used_at, secret, digest"
)
_AUDIT_COLUMNS = "id, at, actor, action, name, connector, outcome, os_user, pid, digest"


class _BadText(Exception):
    """A TEXT value that is not UTF-8: SQLite cannot tell, so a changed byte shows up here."""


def _text_factory(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadText from None


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(path))}?mode={mode}"


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _credential_row(conn: sqlite3.Connection, name: str) -> Sequence[Any] | None:
    """The stored row of credential ``name`` (columns ``_ROW_COLUMNS``), or ``None``."""
    row: Sequence[Any] | None = conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM credentials WHERE name = ?", (name,)
    ).fetchone()
    return row


class _Meta:
    __slots__ = ("doc", "kdf", "key_check", "key_id")

    def __init__(self, doc: str, kdf: KdfParams, key_id: str, key_check: bytes) -> None:
        self.doc, self.kdf, self.key_id, self.key_check = doc, kdf, key_id, key_check

    @classmethod
    def build(cls, kdf: KdfParams, keys: KeyMaterial) -> _Meta:
        check = keys.key_check()
        doc = json.dumps(
            {
                "format": FORMAT_VERSION,
                "kdf": kdf.to_json(),
                "key_id": keys.key_id,
                "key_check": base64.b64encode(check).decode("ascii"),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return cls(doc, kdf, keys.key_id, check)

    @classmethod
    def parse(cls, path: Path, doc: object, stored_digest: object) -> _Meta:
        if not isinstance(doc, str) or stored_digest != digest(doc):
            raise damaged(path, "its metadata was changed")
        try:
            data = json.loads(doc)
            if data["format"] != FORMAT_VERSION:
                raise ValueError("format")
            kdf = KdfParams.from_json(data["kdf"])
            key_id, check = data["key_id"], base64.b64decode(data["key_check"], validate=True)
            if not isinstance(key_id, str):
                raise ValueError("key id")
        except (ValueError, KeyError, TypeError):
            raise damaged(path, "its metadata cannot be read") from None
        return cls(doc, kdf, key_id, check)


class LocalBackend(SecretBackend):
    """The default backend: one encrypted SQLite file (see the module documentation).

    ``key`` says where the master key comes from; ``None`` means ``TAPYARD_VAULT_KEY``,
    then ``TAPYARD_VAULT_PASSPHRASE``, then the OS keyring (secure backends only).
    An existing file is verified and its key checked here; a missing one is created
    on the first write.
    """

    def __init__(self, path: Path, key: VaultKey | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        self._key_spec = key
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._keys: KeyMaterial | None = None
        self._meta: _Meta | None = None
        self._durable: bool | None = None
        self._locks = LockTable(self.path.with_name(self.path.name + ".locks"))
        self._closed = False
        if os.path.lexists(self.path):
            self._attach()

    # --- SecretBackend ------------------------------------------------------------

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def key_id(self) -> str | None:
        return None if self._keys is None else self._keys.key_id

    def get(self, name: str) -> Credential | None:
        with self._lock, self._errors("read"):
            conn = self._connection(create=False)
            if conn is None:
                return None
            row = _credential_row(conn, name)
            if row is None:
                return None
            info = self._row_info(row)
            fields = self._open_fields(conn, info, row[8])
            return Credential(
                **info.model_dump(), fields={k: SecretStr(v) for k, v in fields.items()}
            )

    def info(self, name: str) -> CredentialInfo | None:
        with self._lock, self._errors("read"):
            conn = self._connection(create=False)
            if conn is None:
                return None
            row = _credential_row(conn, name)
            return None if row is None else self._row_info(row)

    def list(self) -> builtins.list[CredentialInfo]:
        with self._lock, self._errors("read"):
            conn = self._connection(create=False)
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_ROW_COLUMNS} FROM credentials ORDER BY name").fetchall()
            return [self._row_info(row) for row in rows]

    def put(
        self,
        name: str,
        *,
        connector: str,
        kind: str,
        fields: Mapping[str, str],
        allowed_connectors: Sequence[str],
        at: datetime,
        audit: AuditEvent,
    ) -> CredentialInfo:
        with self._lock, self._write(durable=True) as conn:
            found = _credential_row(conn, name)
            # A damaged row is reported, not silently written over (remove() still works).
            previous = None if found is None else self._row_info(found)
            info = info_for_put(
                previous, name, connector=connector, kind=kind, fields=fields,
                allowed_connectors=allowed_connectors, at=at,
            )
            self._store(conn, info, dict(fields), replace=found is not None)
            self._insert_audit(conn, audit)
            return info

    def update_fields(
        self, name: str, fields: Mapping[str, str], *, at: datetime, audit: AuditEvent
    ) -> CredentialInfo | None:
        with self._lock, self._write(durable=True) as conn:
            row = _credential_row(conn, name)
            if row is None:
                return None
            old = self._row_info(row)
            merged = {**self._open_fields(conn, old, row[8]), **fields}
            info = old.model_copy(update={"field_names": tuple(sorted(merged)), "updated_at": at})
            self._store(conn, info, merged, replace=True)
            self._insert_audit(conn, audit)
            return info

    def delete(self, name: str, *, audit: AuditEvent) -> bool:
        with self._lock:
            if self._connection(create=False) is None:
                return False
            with self._write(durable=True) as conn:
                if conn.execute("DELETE FROM credentials WHERE name = ?", (name,)).rowcount == 0:
                    return False
                self._insert_audit(conn, audit)
                return True

    def mark_used(self, name: str, *, at: datetime, audit: AuditEvent) -> None:
        with self._lock, self._write(durable=False) as conn:
            row = _credential_row(conn, name)
            if row is not None:
                info = self._row_info(row).model_copy(update={"last_used_at": at})
                conn.execute(
                    "UPDATE credentials SET last_used_at = ?, digest = ? WHERE name = ?",
                    (_ts(at), self._row_digest(info, row[8]), name),
                )
            self._insert_audit(conn, audit)

    def record(self, event: AuditEvent) -> None:
        with self._lock:
            # A refusal is not worth creating a vault file for.
            if self._connection(create=False) is None:
                return
            with self._write(durable=False) as conn:
                self._insert_audit(conn, event)

    def audit(self, *, limit: int, name: str | None = None) -> builtins.list[AuditEntry]:
        with self._lock, self._errors("read"):
            conn = self._connection(create=False)
            if conn is None:
                return []
            if name is None:
                rows = conn.execute(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE name = ? ORDER BY id DESC LIMIT ?",
                    (name, limit),
                ).fetchall()
            return [self._audit_entry(row) for row in rows]

    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        return self._locks.lock(name, timeout=timeout)

    def rotate_key(
        self, new_key: VaultKey, *, audit: AuditEvent, progress: ProgressCallback | None = None
    ) -> str:
        with self._lock:
            if self._connection(create=False) is None:
                raise VaultError(f"there is no vault at {self.path} yet: nothing to re-key")
            kdf = new_key.new_params()
            new_keys = KeyMaterial(new_key.derive(kdf))
            new_meta = _Meta.build(kdf, new_keys)
            with self._write(durable=True) as conn:
                rows = conn.execute(
                    f"SELECT {_ROW_COLUMNS} FROM credentials ORDER BY name"
                ).fetchall()
                total = len(rows)
                if progress is not None:
                    progress(0, total)
                for done, row in enumerate(rows, start=1):
                    info = self._row_info(row)
                    fields = self._open_fields(conn, info, row[8])
                    self._store(conn, info, fields, replace=True, keys=new_keys)
                    if progress is not None:
                        progress(done, total)
                conn.execute(
                    "UPDATE vault_meta SET doc = ?, digest = ? WHERE id = 1",
                    (new_meta.doc, digest(new_meta.doc)),
                )
                self._insert_audit(conn, audit)
            self._keys, self._meta, self._key_spec = new_keys, new_meta, new_key
            return new_keys.key_id

    def verify(self) -> None:
        with self._lock, self._errors("verify"):
            conn = self._connection(create=False)
            if conn is None:
                return
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise damaged(
                    self.path, f"SQLite's integrity check failed ({_one_line(problems[0])})"
                )
            self._check_schema(conn)
            row = conn.execute("SELECT doc, digest FROM vault_meta WHERE id = 1").fetchone()
            if row is None:
                raise damaged(self.path, "its metadata is missing")
            meta = _Meta.parse(self.path, row[0], row[1])
            self._check_meta_is_current(meta)
            for row in conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM credentials ORDER BY name"
            ).fetchall():
                self._open_fields(conn, self._row_info(row), row[8])
            for row in conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY id"):
                self._audit_entry(row)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # --- opening and creating -------------------------------------------------------

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        if self._closed:
            raise VaultError(f"vault {self.path} is closed")
        if self._conn is None:
            if os.path.lexists(self.path):
                self._attach()
            elif create:
                self._create()
                self._attach()
        return self._conn

    def _resolve_key(self, kdf: KdfParams | None) -> VaultKey:
        if self._key_spec is None:
            prefer = "passphrase" if kdf is not None and kdf.name == "scrypt" else "key"
            self._key_spec = VaultKey.from_env(prefer=prefer) or keyring_key_if_available()
            if self._key_spec is None:
                raise VaultKeyError(
                    f"no vault key: set {ENV_KEY} (make one with `tapyard creds keygen`), "
                    f"set {ENV_PASSPHRASE}, or store a key in the OS keyring"
                )
        return self._key_spec

    def _attach(self) -> None:
        """Verify the existing file through a read-only connection, then open it for writing."""
        try:
            check_header(self.path)
        except OSError as exc:
            raise VaultStorageError(
                f"cannot read vault {self.path}: {exc.strerror or type(exc).__name__}"
            ) from exc
        meta = self._inspect()
        key = self._resolve_key(meta.kdf)
        keys = KeyMaterial(key.derive(meta.kdf))
        if keys.key_id != meta.key_id:
            if keys.opens_key_check(meta.key_check):
                raise damaged(self.path, "its key id was changed")
            raise VaultKeyError(
                f"the vault key does not open {self.path}: wrong {ENV_KEY} or passphrase "
                f"(tried {key.source}; the vault was made with key id {meta.key_id})"
            )
        if not keys.opens_key_check(meta.key_check):
            raise damaged(self.path, "its key check value was changed")
        with self._errors("open"):
            conn = sqlite3.connect(
                _uri(self.path, "rw"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT,
            )
            conn.text_factory = _text_factory
            try:
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA cell_size_check = ON")
                conn.execute("PRAGMA trusted_schema = OFF")
            except BaseException:
                conn.close()
                raise
        self._conn, self._keys, self._meta, self._durable = conn, keys, meta, False

    def _inspect(self) -> _Meta:
        """Structure, schema and metadata checks through a read-only connection."""
        with self._errors("open", verifying=True):
            ro = sqlite3.connect(
                _uri(self.path, "ro"), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT
            )
            ro.text_factory = _text_factory
            try:
                ro.execute("PRAGMA cell_size_check = ON")
                problems = [r[0] for r in ro.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise damaged(
                        self.path, f"SQLite's integrity check failed ({_one_line(problems[0])})"
                    )
                self._check_schema(ro)
                rows = ro.execute("SELECT id, doc, digest FROM vault_meta").fetchall()
                if len(rows) != 1 or rows[0][0] != 1:
                    raise damaged(self.path, "its metadata is missing")
                return _Meta.parse(self.path, rows[0][1], rows[0][2])
            finally:
                ro.close()

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        found = sorted(
            (str(t), str(n), str(s))
            for t, n, s in conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            )
        )
        if found != sorted(SCHEMA):
            raise damaged(self.path, "its tables are not those of a tapyard vault")
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if app_id != APPLICATION_ID or version != FORMAT_VERSION:
            raise damaged(self.path, "it is not a tapyard vault of a known format")

    def _create(self) -> None:
        """Build a new vault under a temporary name and link it into place, so the path
        never holds a half-made vault. If another process got there first, its vault is
        kept (and must open with our key)."""
        key = self._resolve_key(None)
        kdf = key.new_params()
        keys = KeyMaterial(key.derive(kdf))
        meta = _Meta.build(kdf, keys)
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(8)}.tmp"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            conn = sqlite3.connect(_uri(tmp, "rw"), uri=True, isolation_level=None)
            try:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                    raise VaultStorageError(f"cannot put vault {self.path} in WAL mode")
                conn.execute("BEGIN IMMEDIATE")
                for _, _, sql in SCHEMA:
                    conn.execute(sql)
                conn.execute(
                    "INSERT INTO vault_meta (id, doc, digest) VALUES (1, ?, ?)",
                    (meta.doc, digest(meta.doc)),
                )
                conn.execute("COMMIT")
            finally:
                conn.close()
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            # link, not rename: never replace a vault another process just created.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)
            _fsync_dir(directory)
        except OSError as exc:
            raise VaultStorageError(
                f"cannot create vault {self.path}: {exc.strerror or type(exc).__name__}"
            ) from exc
        except sqlite3.Error as exc:
            raise VaultStorageError(f"cannot create vault {self.path}: {_errorname(exc)}") from exc
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    # --- transactions and errors ----------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, doing: str, *, verifying: bool = False) -> Iterator[None]:
        """Map SQLite's errors to the vault's, with safe messages."""
        try:
            yield
        except (_BadText, UnicodeDecodeError):
            raise damaged(self.path, "a text value in it is not UTF-8 any more") from None
        except sqlite3.Error as exc:
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            if code in _BUSY_CODES:
                raise VaultStorageError(
                    f"vault {self.path} is busy: another process held it for more than {BUSY_TIMEOUT:g} s"
                ) from exc
            if code in _CORRUPT_CODES or (
                verifying and isinstance(exc, sqlite3.DatabaseError) and code != _CANTOPEN
            ):
                raise damaged(self.path, f"SQLite reports {_errorname(exc)}") from exc
            raise VaultStorageError(f"cannot {doing} vault {self.path}: {_errorname(exc)}") from exc

    @contextlib.contextmanager
    def _write(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        """One immediate write transaction; rolled back on any error."""
        with self._errors("write to"):
            conn = self._connection(create=True)
            assert conn is not None
            if self._durable != durable:
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT doc, digest FROM vault_meta WHERE id = 1").fetchone()
                if row is None:
                    raise damaged(self.path, "its metadata is missing")
                if self._meta is None or row[0] != self._meta.doc:
                    self._check_meta_is_current(_Meta.parse(self.path, row[0], row[1]))
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _check_meta_is_current(self, meta: _Meta) -> None:
        if self._keys is None or meta.key_id != self._keys.key_id:
            raise VaultKeyError(
                f"the key of vault {self.path} was rotated by another process (now key id "
                f"{meta.key_id}): open the vault again with the new key"
            )

    # --- rows -----------------------------------------------------------------------

    def _row_info(self, row: Sequence[Any]) -> CredentialInfo:
        name = row[0]
        try:
            info = CredentialInfo(
                name=name,
                connector=row[1],
                kind=row[2],
                allowed_connectors=tuple(json.loads(row[3])),
                field_names=tuple(json.loads(row[4])),
                created_at=datetime.fromisoformat(row[5]),
                updated_at=datetime.fromisoformat(row[6]),
                last_used_at=None if row[7] is None else datetime.fromisoformat(row[7]),
            )
            ok = isinstance(row[8], bytes) and self._row_digest(info, row[8]) == row[9]
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise damaged(self.path, f"the row of credential {name!r} was changed")
        return info

    @staticmethod
    def _row_values(info: CredentialInfo) -> tuple[str | None, ...]:
        """The columns of a credential's row before its sealed fields, as stored and as
        covered by the row's digest."""
        return (
            info.name,
            info.connector,
            info.kind,
            json.dumps(info.allowed_connectors),
            json.dumps(info.field_names),
            _ts(info.created_at),
            _ts(info.updated_at),
            _ts(info.last_used_at),
        )

    def _row_digest(self, info: CredentialInfo, sealed: bytes) -> str:
        return digest(*self._row_values(info), sealed)

    @staticmethod
    def _aad(info: CredentialInfo) -> bytes:
        return aad(
            _AAD_LABEL,
            info.name,
            info.connector,
            info.kind,
            info.allowed_connectors,
            info.field_names,
        )

    def _open_fields(
        self, conn: sqlite3.Connection, info: CredentialInfo, sealed: bytes
    ) -> dict[str, str]:
        assert self._keys is not None
        plaintext = self._keys.unseal(sealed, self._aad(info))
        if plaintext is None:
            row = conn.execute("SELECT doc, digest FROM vault_meta WHERE id = 1").fetchone()
            if row is not None and self._meta is not None and row[0] != self._meta.doc:
                self._check_meta_is_current(_Meta.parse(self.path, row[0], row[1]))
            raise damaged(
                self.path,
                f"credential {info.name!r} does not authenticate (its ciphertext was changed "
                "or moved from another row)",
            )
        fields = json.loads(plaintext)
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise damaged(self.path, f"credential {info.name!r} holds malformed fields")
        return fields

    def _store(
        self,
        conn: sqlite3.Connection,
        info: CredentialInfo,
        fields: dict[str, str],
        *,
        replace: bool,
        keys: KeyMaterial | None = None,
    ) -> None:
        keys = keys or self._keys
        assert keys is not None
        sealed = keys.seal(json.dumps(fields, sort_keys=True).encode("utf-8"), self._aad(info))
        conn.execute(
            f"{'REPLACE' if replace else 'INSERT'} INTO credentials ({_ROW_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*self._row_values(info), sealed, self._row_digest(info, sealed)),
        )

    def _insert_audit(self, conn: sqlite3.Connection, event: AuditEvent) -> None:
        (next_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM audit").fetchone()
        values = (
            next_id,
            _ts(event.at),
            event.actor,
            event.action,
            event.name,
            event.connector,
            event.outcome,
            event.user,
            event.pid,
        )
        conn.execute(
            f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, digest(*values)),
        )

    def _audit_entry(self, row: Sequence[Any]) -> AuditEntry:
        if digest(*row[:9]) != row[9]:
            raise damaged(self.path, f"audit entry {row[0]} was changed")
        try:
            return AuditEntry(
                id=row[0],
                at=datetime.fromisoformat(row[1]),
                actor=row[2],
                action=row[3],
                name=row[4],
                connector=row[5],
                outcome=row[6],
                user=row[7],
                pid=row[8],
            )
        except (ValueError, TypeError):
            raise damaged(self.path, f"audit entry {row[0]} cannot be read") from None


def _one_line(problem: object) -> str:
    text = " ".join(str(problem).replace("*** in database main ***", "").split())
    return text[:200]


def _errorname(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return str(name) if name else type(exc).__name__


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

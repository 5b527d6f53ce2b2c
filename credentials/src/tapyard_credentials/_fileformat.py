"""The local vault's file format: its SQLite schema and the checks made on the raw
file before SQLite is allowed near it.

A vault is an SQLite database in WAL mode with ``application_id`` 0x54505944
("TPYD") and ``user_version`` equal to :data:`FORMAT_VERSION`. Its tables:

``vault_meta``
    one row: a JSON document (format, key derivation parameters, key id, key check
    value) and its digest.
``credentials``
    one row per credential: name (the key), connector, kind, allowed connectors and
    field names (JSON), timestamps, the sealed fields JSON, and a digest of the row.
``audit``
    the append-only log (triggers refuse UPDATE and DELETE), each row with a digest.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["APPLICATION_ID", "FORMAT_VERSION", "SCHEMA", "check_header", "damaged"]

from tapyard_credentials._exceptions import VaultCorruptError

APPLICATION_ID = 0x54505944
FORMAT_VERSION = 1

SCHEMA: tuple[tuple[str, str, str], ...] = (
    (
        "table",
        "vault_meta",
        "CREATE TABLE vault_meta (id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL, "
        "digest TEXT NOT NULL)",
    ),
    (
        "table",
        "credentials",
        "CREATE TABLE credentials (name TEXT PRIMARY KEY NOT NULL, connector TEXT NOT NULL, "
        "kind TEXT NOT NULL, allowed_connectors TEXT NOT NULL, field_names TEXT NOT NULL, "
        "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_used_at TEXT, "
        "secret BLOB NOT NULL, digest TEXT NOT NULL) WITHOUT ROWID",
    ),
    (
        "table",
        "audit",
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, "
        "action TEXT NOT NULL, name TEXT, connector TEXT, outcome TEXT NOT NULL, "
        "os_user TEXT NOT NULL, pid INTEGER NOT NULL, digest TEXT NOT NULL)",
    ),
    ("index", "audit_by_name", "CREATE INDEX audit_by_name ON audit (name, id)"),
    (
        "trigger",
        "audit_no_update",
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the vault audit log is append-only'); END",
    ),
    (
        "trigger",
        "audit_no_delete",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the vault audit log is append-only'); END",
    ),
)

_MAGIC = b"SQLite format 3\x00"
_WAL_HEADER_BYTES = 32


def damaged(path: Path | str, what: str) -> VaultCorruptError:
    """The one error for a damaged vault: what is wrong, and what to do about it."""
    return VaultCorruptError(f"vault {path} is damaged: {what}; restore it from a backup")


def check_header(path: Path) -> None:
    """Check the raw SQLite header and size of an existing vault file, reading only.

    Catches what SQLite would otherwise paper over or report vaguely: an empty or
    truncated file, a file that is not SQLite or not a tapyard vault, and header
    fields a vault never has. Raises :class:`VaultCorruptError`.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        header = handle.read(100)
    if size == 0:
        raise damaged(path, "the file is empty")
    if not header.startswith(_MAGIC[: len(header)]) or len(header) < 16:
        raise damaged(path, "it is not an SQLite database")
    if len(header) < 100:
        raise damaged(path, f"the file is only {size} bytes long (truncated)")
    if header[:16] != _MAGIC:
        raise damaged(path, "it is not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise damaged(path, "its header holds an impossible page size")
    fixed = {
        "application id": (header[68:72], APPLICATION_ID.to_bytes(4, "big")),
        "file format": (header[18:20], b"\x02\x02"),
        "reserved bytes per page": (header[20:21], b"\x00"),
        "payload fractions": (header[21:24], b"\x40\x20\x20"),
        "schema format": (header[44:48], (4).to_bytes(4, "big")),
        "text encoding": (header[56:60], (1).to_bytes(4, "big")),
        "format version": (header[60:64], FORMAT_VERSION.to_bytes(4, "big")),
        "reserved header space": (header[72:92], bytes(20)),
    }
    for field, (found, expected) in fixed.items():
        if found != expected:
            if field == "application id":
                raise damaged(path, "it is not a tapyard vault (wrong application id)")
            raise damaged(path, f"its header has an unexpected {field}")
    if size % page_size:
        raise damaged(path, "its size is not a whole number of pages (truncated)")
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    wal = Path(f"{path}-wal")
    # With a non-empty WAL (a checkpoint cut short by a kill), the main file may be
    # legitimately shorter than its header says until the checkpoint is redone.
    wal_in_use = wal.exists() and wal.stat().st_size > _WAL_HEADER_BYTES
    if counter_valid and pages and size < pages * page_size and not wal_in_use:
        raise damaged(
            path,
            f"the file holds {size // page_size} of the {pages} pages its header promises (truncated)",
        )

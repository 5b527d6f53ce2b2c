"""A wrong key, a wrong passphrase, a truncated file, a changed byte: one clear
VaultError each, and the file is left byte for byte as it was found."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from tapyard_credentials import (
    AccessDeniedError,
    Redactor,
    Vault,
    VaultCorruptError,
    VaultError,
    VaultKey,
    VaultKeyError,
    generate_key,
)
from tapyard_credentials._crypto import digest

NAMES = [f"cred-{i}" for i in range(8)]


#: no key from the environment or the real OS keyring leaks into a test (tests/conftest.py)
pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("no_ambient_keys")]


def _fill(path: Path, key: str | VaultKey) -> dict[str, str]:
    values = {name: f"secret-value-{name}-{generate_key()}" for name in NAMES}
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        for name, value in values.items():
            vault.put(
                name, connector="acme", kind="api_key", fields={"api_key": value, "user": "me"}
            )
        for name in NAMES[:3]:
            vault.get(name, connector="acme")
    return values


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """A closed vault (everything checkpointed into the main file) and its key."""
    path = tmp_path_factory.mktemp("pristine") / "vault.db"
    key = generate_key()
    values = _fill(path, key)
    assert not Path(f"{path}-wal").exists()
    return path, key, values


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "vault.db"
    shutil.copyfile(pristine, target)
    return target


def _wal_untouched(path: Path) -> bool:
    wal = Path(f"{path}-wal")
    return not wal.exists() or wal.stat().st_size == 0


def test_wrong_key_is_one_clear_error_and_touches_nothing(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    path = _copy(pristine[0], tmp_path)
    before = _sha(path)
    with pytest.raises(VaultKeyError) as caught:
        Vault.open(path, key=generate_key())
    assert str(caught.value).startswith(
        f"the vault key does not open {path}: wrong TAPYARD_VAULT_KEY or passphrase"
    )
    assert _sha(path) == before and _wal_untouched(path)


def test_wrong_passphrase_is_one_clear_error_and_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    _fill(path, VaultKey.from_passphrase("the right passphrase"))
    before = _sha(path)
    with pytest.raises(VaultKeyError, match="wrong TAPYARD_VAULT_KEY or passphrase"):
        Vault.open(path, key=VaultKey.from_passphrase("the wrong passphrase"))
    assert _sha(path) == before and _wal_untouched(path)
    with Vault.open(path, key=VaultKey.from_passphrase("the right passphrase")) as vault:
        assert len(vault.list()) == len(NAMES)


@pytest.mark.parametrize("keep", [0, 1, 50, 99, 100, 4096, "half", "minus-page", "minus-byte"])
def test_truncated_file_is_one_clear_error_and_touches_nothing(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path, keep: int | str
) -> None:
    path = _copy(pristine[0], tmp_path)
    data = path.read_bytes()
    size = {
        "half": len(data) // 2,
        "minus-page": len(data) - 4096,
        "minus-byte": len(data) - 1,
    }.get(str(keep))
    path.write_bytes(data[: size if size is not None else int(keep)])
    before = _sha(path)
    with pytest.raises(VaultCorruptError) as caught:
        vault = Vault.open(path, key=pristine[1])
        vault.verify()
    message = str(caught.value)
    assert message.startswith(f"vault {path} is damaged: ") and message.endswith(
        "; restore it from a backup"
    )
    assert "\n" not in message
    assert _sha(path) == before and _wal_untouched(path)


def _blob_offset(path: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (blob,) = conn.execute("SELECT secret FROM credentials WHERE name = ?", (name,)).fetchone()
    finally:
        conn.close()
    offset = path.read_bytes().find(blob)
    assert offset > 0
    return offset + len(blob) // 2


def test_flipped_byte_in_a_ciphertext(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    path = _copy(pristine[0], tmp_path)
    data = bytearray(path.read_bytes())
    data[_blob_offset(path, "cred-4")] ^= 0x01
    path.write_bytes(bytes(data))
    before = _sha(path)

    vault = Vault.open(path, key=pristine[1])
    with pytest.raises(
        VaultCorruptError, match=r"is damaged: .*'cred-4'.*restore it from a backup$"
    ):
        vault.get("cred-4", connector="acme")
    with pytest.raises(VaultCorruptError, match="'cred-4'"):
        vault.verify()
    vault.close()
    assert _sha(path) == before
    # The rest of the vault is still usable.
    with Vault.open(path, key=pristine[1]) as vault:
        assert vault.get("cred-5", connector="acme").secret("api_key") == pristine[2]["cred-5"]


def _rows(conn: sqlite3.Connection) -> list[list[tuple[object, ...]]]:
    return [
        conn.execute("SELECT * FROM vault_meta").fetchall(),
        conn.execute("SELECT * FROM credentials ORDER BY name").fetchall(),
        conn.execute("SELECT * FROM audit ORDER BY id").fetchall(),
    ]


def _swap_and_fix_digests(path: Path, update: str, params: tuple[object, ...]) -> None:
    """Edit rows the way someone who knows the (unkeyed) row digest could, so that only
    the authenticated encryption stands between the edit and a leak."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(update, params)
        columns = "name, connector, kind, allowed_connectors, field_names, created_at, updated_at, last_used_at, secret"
        for row in conn.execute(f"SELECT {columns} FROM credentials").fetchall():
            conn.execute("UPDATE credentials SET digest = ? WHERE name = ?", (digest(*row), row[0]))
    finally:
        conn.close()


def test_swapped_ciphertexts_fail_authentication(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    path = _copy(pristine[0], tmp_path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    one, two = (
        conn.execute("SELECT secret FROM credentials WHERE name = ?", (n,)).fetchone()[0]
        for n in ("cred-1", "cred-2")
    )
    conn.close()
    _swap_and_fix_digests(
        path,
        "UPDATE credentials SET secret = CASE name WHEN 'cred-1' THEN ? ELSE ? END WHERE name IN ('cred-1', 'cred-2')",
        (two, one),
    )
    with Vault.open(path, key=pristine[1]) as vault:
        for name in ("cred-1", "cred-2"):
            with pytest.raises(
                VaultCorruptError, match=f"credential '{name}' does not authenticate"
            ):
                vault.get(name, connector="acme")
        assert vault.get("cred-3", connector="acme").secret("api_key") == pristine[2]["cred-3"]


def test_an_edited_access_list_fails_authentication(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    path = _copy(pristine[0], tmp_path)
    _swap_and_fix_digests(
        path,
        "UPDATE credentials SET allowed_connectors = ? WHERE name = 'cred-1'",
        (json.dumps(["acme", "evil"]),),
    )
    with Vault.open(path, key=pristine[1]) as vault:
        with pytest.raises(VaultCorruptError, match="'cred-1' does not authenticate"):
            vault.get("cred-1", connector="evil")
        with pytest.raises(AccessDeniedError):
            vault.get("cred-2", connector="evil")


def test_a_changed_timestamp_or_audit_entry_is_caught(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    from tapyard_credentials._fileformat import SCHEMA

    path = _copy(pristine[0], tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE credentials SET created_at = '2001-01-01T00:00:00+00:00' WHERE name = 'cred-6'"
    )
    # Change an audit entry behind the trigger's back, then put the trigger back as it was.
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET outcome = 'denied' WHERE id = 3")
    conn.execute(next(sql for _, name, sql in SCHEMA if name == "audit_no_update"))
    conn.close()
    with Vault.open(path, key=pristine[1]) as vault:
        with pytest.raises(VaultCorruptError, match="the row of credential 'cred-6' was changed"):
            vault.info("cred-6")
        with pytest.raises(VaultCorruptError, match="the row of credential 'cred-6' was changed"):
            vault.list()
        with pytest.raises(VaultCorruptError, match="audit entry 3 was changed"):
            vault.audit(limit=100)
        with pytest.raises(VaultCorruptError):
            vault.verify()


def test_a_changed_schema_is_caught(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    path = _copy(pristine[0], tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.close()
    before = _sha(path)
    with pytest.raises(VaultCorruptError, match="its tables are not those of a tapyard vault"):
        Vault.open(path, key=pristine[1])
    assert _sha(path) == before


def test_not_a_vault(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(VaultCorruptError, match="not a tapyard vault"):
        Vault.open(other, key=generate_key())
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 100)
    with pytest.raises(VaultCorruptError, match="not an SQLite database"):
        Vault.open(text, key=generate_key())


def test_a_flipped_byte_anywhere_is_caught_or_changes_nothing(
    pristine: tuple[Path, str, dict[str, str]], tmp_path: Path
) -> None:
    """Flip every byte of the SQLite header and 150 random bytes elsewhere, one at a time.

    Each flip either gives one clear VaultError, or it landed in bytes SQLite does not
    use (free space inside a page, counters it ignores) and the vault's content is
    exactly what it was; the file is never written. Bytes that carry data are all
    covered: the header by explicit checks, structure by SQLite's integrity check,
    secrets by AES-GCM, everything else by per-row digests and the schema check.
    """
    source, key, values = pristine
    data = source.read_bytes()
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    expected = _rows(conn)
    conn.close()
    rng = random.Random(20240611)
    positions = list(range(100)) + rng.sample(range(100, len(data)), 150)
    detected = 0
    for position in positions:
        path = tmp_path / f"flip-{position}.db"
        flipped = bytearray(data)
        flipped[position] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(flipped))
        before = _sha(path)
        try:
            with Vault.open(path, key=key, redactor=Redactor()) as vault:
                vault.verify()
                vault.list()
                vault.audit(limit=1000)
        except VaultError as exc:
            detected += 1
            message = str(exc)
            assert "\n" not in message and (
                " is damaged: " in message or "does not open" in message
            ), message
            assert not any(value in message for value in values.values())
        else:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                assert _rows(conn) == expected, f"byte {position} changed data unnoticed"
            finally:
                conn.close()
        assert _sha(path) == before, f"byte {position}: the file was written"
        for leftover in tmp_path.glob(f"flip-{position}.db*"):
            leftover.unlink()
    # Most of a small vault's pages is free space, so many flips are harmless; the
    # header and the live bytes are not.
    assert detected >= 60, detected

"""Key rotation re-encrypts everything without loss, even when the process is killed
at any point; writes survive a kill at any point."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tapyard_credentials import Redactor, Vault, VaultKey, VaultKeyError, generate_key

#: no key from the environment or the real OS keyring leaks into a test (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_ambient_keys")


def _fill(path: Path, key: str, count: int) -> dict[str, dict[str, str]]:
    expected = {
        f"cred-{i:04d}": {"api_key": f"key-{i}-{generate_key()}", "user": f"user-{i}"}
        for i in range(count)
    }
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        for name, fields in expected.items():
            vault.put(name, connector="acme", kind="api_key", fields=fields)
    return expected


def _contents(vault: Vault) -> dict[str, dict[str, str]]:
    return {
        info.name: {
            k: v.get_secret_value()
            for k, v in vault.get(info.name, connector="acme").fields.items()
        }
        for info in vault.list()
    }


def _opens_with(path: Path, key: str) -> dict[str, dict[str, str]] | None:
    try:
        vault = Vault.open(path, key=key, redactor=Redactor())
    except VaultKeyError:
        return None
    with vault:
        vault.verify()
        return _contents(vault)


def test_rotation_re_encrypts_everything(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    old, new = generate_key(), generate_key()
    expected = _fill(path, old, 25)
    with Vault.open(path, key=old, redactor=Redactor()) as vault:
        old_id = vault.key_id
        seen: list[tuple[int, int]] = []
        new_id = vault.rotate_key(new, progress=lambda done, total: seen.append((done, total)))
        assert new_id != old_id and vault.key_id == new_id
        assert seen[0] == (0, 25) and seen[-1] == (25, 25)
        assert vault.audit(limit=1)[0].action == "rotate_key"
        # The open vault keeps working under the new key.
        assert _contents(vault) == expected
    assert _opens_with(path, old) is None
    assert _opens_with(path, new) == expected


def test_rotation_between_keys_and_passphrases(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    key = generate_key()
    expected = _fill(path, key, 5)
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        vault.rotate_key(VaultKey.from_passphrase("a long passphrase"))
    with pytest.raises(VaultKeyError):
        Vault.open(path, key=key)
    back = generate_key()
    with Vault.open(
        path, key=VaultKey.from_passphrase("a long passphrase"), redactor=Redactor()
    ) as vault:
        assert _contents(vault) == expected
        vault.rotate_key(back)
    assert _opens_with(path, back) == expected


def test_a_failing_rotation_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    old = generate_key()
    expected = _fill(path, old, 10)

    def fail_half_way(done: int, total: int) -> None:
        if done == 5:
            raise RuntimeError("interrupted")

    with Vault.open(path, key=old, redactor=Redactor()) as vault:
        with pytest.raises(RuntimeError):
            vault.rotate_key(generate_key(), progress=fail_half_way)
        assert _contents(vault) == expected
    assert _opens_with(path, old) == expected


def test_another_process_rotating_the_key_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    old, new = generate_key(), generate_key()
    _fill(path, old, 3)
    stale = Vault.open(path, key=old, redactor=Redactor())
    with Vault.open(path, key=old, redactor=Redactor()) as rotator:
        rotator.rotate_key(new)
    with pytest.raises(VaultKeyError, match="rotated by another process"):
        stale.get("cred-0000", connector="acme")
    with pytest.raises(VaultKeyError, match="rotated by another process"):
        stale.put("x", connector="acme", kind="api_key", fields={"k": "value-1234"})
    stale.close()
    with Vault.open(path, key=new, redactor=Redactor()) as vault:
        assert "x" not in {i.name for i in vault.list()}
        vault.verify()


_ROTATE = r"""
import os, signal, sys, threading, time
from tapyard_credentials import Redactor, Vault

path, kill_at, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
vault = Vault.open(path, key=os.environ["OLD_KEY"], redactor=Redactor())

def progress(done, total):
    if done == kill_at:
        die()

if delay >= 0:
    timer = threading.Timer(delay, die)
    timer.daemon = True
    timer.start()
started = time.perf_counter()
vault.rotate_key(os.environ["NEW_KEY"], progress=progress)
print(time.perf_counter() - started, flush=True)
if kill_at == -2:
    die()  # committed, WAL not yet checkpointed
vault.close()
if kill_at == -3:
    die()
"""


def test_rotation_killed_at_many_points_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL the rotating process after 0, 2, 4 ... 40 re-encrypted rows, after the
    commit, after the close, and at 12 random moments around a larger rotation
    (timed against an uninterrupted one): each time the vault opens with exactly one
    of the two keys and holds every secret."""
    old, new = generate_key(), generate_key()
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    expected = {small: _fill(small, old, 40), large: _fill(large, old, 400)}
    rng = random.Random(7)
    runs: list[tuple[Path, int, float]] = [(small, n, -1.0) for n in range(0, 41, 2)]
    runs += [(small, -2, -1.0), (small, -3, -1.0), (large, -1, -1.0)]
    env = {**os.environ, "OLD_KEY": old, "NEW_KEY": new}

    def run(index: int) -> tuple[Path, str, int, str]:
        source, kill_at, delay = runs[index]
        workdir = tmp_path / f"run-{index}"
        workdir.mkdir()
        path = workdir / "vault.db"
        shutil.copyfile(source, path)
        done = subprocess.run(
            [sys.executable, "-c", _ROTATE, str(path), str(kill_at), str(delay)],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode in (0, -signal.SIGKILL), done.stderr.decode()
        with_old, with_new = _opens_with(path, old), _opens_with(path, new)
        assert (with_old is None) != (with_new is None), (
            f"run {runs[index]}: opens with both or neither"
        )
        assert (with_old or with_new) == expected[source], f"run {runs[index]}: secrets lost"
        return (
            source,
            "old" if with_old is not None else "new",
            done.returncode,
            done.stdout.decode(),
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(len(runs))))
        # Random kills spread over twice an uninterrupted large rotation (which
        # ran under the same load), starting from the moment rotate_key is called.
        took = float(results[23][3])
        runs += [(large, -1, rng.uniform(0.0, 2.0 * took)) for _ in range(12)]
        results += list(pool.map(run, range(24, len(runs))))
    killed = [r for r in results if r[2] == -signal.SIGKILL]
    assert len(results) == 36 and len(killed) >= 23
    # Killed before the commit: the old key; after it: the new one.
    assert all(outcome == "old" for _, outcome, _, _ in results[:21])
    assert results[21][1] == results[22][1] == results[23][1] == "new"
    assert time.monotonic() - started < 60


_WRITER = r"""
import os, sys
from tapyard_credentials import Redactor, Vault

vault = Vault.open(sys.argv[1], key=os.environ["KEY"], redactor=Redactor())
for i in range(100000):
    vault.put(f"w-{i}", connector="acme", kind="api_key", fields={"k": f"value-{i:06d}"})
    if i % 3 == 0:
        vault.update_fields("w-0", {"k": f"value-{i:06d}"})
    print(i, flush=True)
"""


def test_writer_killed_at_random_moments_leaves_a_sound_vault(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault.db"
    rng = random.Random(11)
    written = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)],
            env={**os.environ, "KEY": key},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        # Let it get going, then kill it at a random moment.
        proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        output = proc.stdout.read().decode().split()
        proc.wait()
        written = max(written, int(output[-1]) + 1 if output else 1)
        with Vault.open(path, key=key, redactor=Redactor()) as vault:
            vault.verify()
            names = {info.name for info in vault.list()}
            # Everything reported written is there (each put's commit precedes its print).
            assert {f"w-{i}" for i in range(written)} <= names
            for name in list(names)[:20]:
                assert vault.get(name, connector="acme").secret("k").startswith("value-")
    assert written > 0

"""Several threads and several processes share one vault safely; Vault.lock()
serializes work on one credential across both."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tapyard_credentials import LockTimeoutError, Redactor, Vault, generate_key

#: no key from the environment or the real OS keyring leaks into a test (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_ambient_keys")


def _spawn(script: str, *args: str, key: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "KEY": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()


def test_threads_share_one_vault_and_separate_vaults(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault.db"
    shared = Vault.open(path, key=key, redactor=Redactor())
    errors: list[BaseException] = []

    def work(worker: int, own: bool) -> None:
        vault = Vault.open(path, key=key, redactor=Redactor()) if own else shared
        try:
            for i in range(25):
                name = f"t{worker}-{i}"
                vault.put(
                    name, connector="acme", kind="api_key", fields={"k": f"value-{worker}-{i}"}
                )
                assert vault.get(name, connector="acme").secret("k") == f"value-{worker}-{i}"
                vault.update_fields(name, {"extra": "x" * 8})
        except BaseException as exc:
            errors.append(exc)
        finally:
            if own:
                vault.close()

    threads = [threading.Thread(target=work, args=(w, w % 2 == 0)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(shared.list()) == 200
    assert len(shared.audit(limit=10_000)) == 600
    shared.verify()
    shared.close()


_WORKER = r"""
import os, sys
from tapyard_credentials import Redactor, Vault

worker = sys.argv[2]
vault = Vault.open(sys.argv[1], key=os.environ["KEY"], redactor=Redactor())
for i in range(40):
    name = f"p{worker}-{i}"
    vault.put(name, connector="acme", kind="api_key", fields={"k": f"value-{worker}-{i}"})
    assert vault.get(name, connector="acme").secret("k") == f"value-{worker}-{i}"
vault.close()
"""


def test_processes_share_one_vault(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault.db"
    # All four race to create the file, too.
    _finish([_spawn(_WORKER, str(path), str(w), key=key) for w in range(4)])
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        assert len(vault.list()) == 160
        assert len(vault.audit(limit=10_000)) == 320
        vault.verify()
    assert not list(tmp_path.glob(".*.tmp"))


_LOCKED_APPEND = r"""
import os, sys, time
from tapyard_credentials import Redactor, Vault

vault = Vault.open(sys.argv[1], key=os.environ["KEY"], redactor=Redactor())
log = sys.argv[2]
for _ in range(6):
    with vault.lock("oauth-cred"):
        with open(log, "a") as out:
            out.write(f"start {os.getpid()}\n")
            out.flush()
            time.sleep(0.02)
            out.write(f"end {os.getpid()}\n")
"""


def test_lock_serializes_across_processes(tmp_path: Path) -> None:
    key = generate_key()
    path, log = tmp_path / "vault.db", tmp_path / "log.txt"
    _finish([_spawn(_LOCKED_APPEND, str(path), str(log), key=key) for _ in range(2)])
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 24
    pids = set()
    for start, end in zip(lines[::2], lines[1::2], strict=True):
        assert start.startswith("start ") and end == "end " + start.removeprefix("start "), lines
        pids.add(start)
    assert len(pids) == 2


_COUNTER = r"""
import os, sys, time
from tapyard_credentials import Redactor, Vault

vault = Vault.open(sys.argv[1], key=os.environ["KEY"], redactor=Redactor())
for _ in range(15):
    with vault.lock("counter"):
        value = int(vault.get("counter", connector="acme").secret("n"))
        time.sleep(0.005)  # the token endpoint's round trip
        vault.update_fields("counter", {"n": str(value + 1)})
"""


def test_read_modify_write_under_the_lock_loses_no_update(tmp_path: Path) -> None:
    """The pattern of an OAuth refresh: read, compute, write back, under the lock."""
    key = generate_key()
    path = tmp_path / "vault.db"
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        vault.put("counter", connector="acme", kind="counter", fields={"n": "0"})
    _finish([_spawn(_COUNTER, str(path), key=key) for _ in range(3)])
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        assert vault.get("counter", connector="acme").secret("n") == "45"


_HOLD = r"""
import os, sys, time
from tapyard_credentials import Redactor, Vault

vault = Vault.open(sys.argv[1], key=os.environ["KEY"], redactor=Redactor())
with vault.lock("busy"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_timeout_and_release_on_death(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "vault.db"
    vault = Vault.open(path, key=key, redactor=Redactor())
    holder = _spawn(_HOLD, str(path), "30", key=key)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    started = time.monotonic()
    with (
        pytest.raises(LockTimeoutError, match="'busy' stayed locked"),
        vault.lock("busy", timeout=0.2),
    ):
        pass
    assert 0.2 <= time.monotonic() - started < 5
    # Other names are not blocked; a killed holder releases its lock.
    with vault.lock("other", timeout=1):
        pass
    holder.kill()
    holder.communicate()
    with vault.lock("busy", timeout=5):
        pass
    vault.close()


def test_lock_is_exclusive_between_threads_and_reentrant_within_one(tmp_path: Path) -> None:
    vault = Vault.open(tmp_path / "vault.db", key=generate_key(), redactor=Redactor())
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        for _ in range(5):
            with vault.lock("x"), vault.lock("x"):
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1
    lock_dir = tmp_path / "vault.db.locks"
    names = [p.name for p in lock_dir.iterdir()]
    assert len(names) == 1 and len(names[0]) == len("0" * 32 + ".lock")
    vault.close()

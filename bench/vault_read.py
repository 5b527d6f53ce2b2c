"""Benchmark: the cost of ``Vault.get`` with 1,000 secrets stored, against a hand-written
baseline (one raw sqlite3 SELECT plus one AES-GCM decryption of one row).

``Vault.get`` does more than the baseline on purpose: it checks the row's digest,
authenticates the ciphertext against the credential's name, connector, kind and
access list, checks the connector may use it, builds a typed ``Credential``,
registers its values for redaction, and commits ``last_used_at`` and an audit entry
in one write transaction. The target is under 1 ms per read.

Run: ``.venv/bin/python bench/vault_read.py`` (writes ``bench/results/vault_read.json``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tapyard_credentials import Redactor, Vault, generate_key

SECRETS = 1_000
READS = 5_000
WARMUP = 500
TARGET_MS = 1.0


def _measure(read: Callable[[str], object], names: list[str]) -> dict[str, float]:
    rng = random.Random(1)
    for _ in range(WARMUP):
        read(rng.choice(names))
    timings = []
    for _ in range(READS):
        name = rng.choice(names)
        started = time.perf_counter()
        read(name)
        timings.append(time.perf_counter() - started)
    timings.sort()
    return {
        "mean_ms": statistics.fmean(timings) * 1000,
        "p50_ms": timings[len(timings) // 2] * 1000,
        "p99_ms": timings[int(len(timings) * 0.99)] * 1000,
        "max_ms": timings[-1] * 1000,
    }


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tapyard-bench-"))
    rng = random.Random(0)
    values = {f"cred-{i:04d}": os.urandom(24).hex() for i in range(SECRETS)}
    names = list(values)

    vault = Vault.open(workdir / "vault.db", key=generate_key(), redactor=Redactor())
    started = time.perf_counter()
    for name, value in values.items():
        vault.put(
            name,
            connector="acme",
            kind="api_key",
            fields={"api_key": value, "user": f"u{rng.random()}"},
        )
    put_ms = (time.perf_counter() - started) * 1000 / SECRETS

    def vault_read(name: str) -> object:
        return vault.get(name, connector="acme").fields["api_key"]

    vault_stats = _measure(vault_read, names)

    # Where the time goes: the same read without access control, redaction and the
    # audit/last_used_at write transaction.
    def backend_read(name: str) -> object:
        credential = vault.backend.get(name)
        assert credential is not None
        return credential.fields["api_key"]

    backend_stats = _measure(backend_read, names)
    assert vault.get("cred-0007", connector="acme").secret("api_key") == values["cred-0007"]

    # The baseline: the same number of rows, each a nonce + AES-256-GCM ciphertext
    # of a JSON document, in a WAL-mode SQLite file; one SELECT and one decrypt.
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    conn = sqlite3.connect(workdir / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE secrets (name TEXT PRIMARY KEY, secret BLOB NOT NULL) WITHOUT ROWID")
    conn.execute("BEGIN")
    for name, value in values.items():
        nonce = os.urandom(12)
        payload = json.dumps({"api_key": value, "user": "u"}).encode()
        conn.execute(
            "INSERT INTO secrets VALUES (?, ?)",
            (name, nonce + aead.encrypt(nonce, payload, name.encode())),
        )
    conn.execute("COMMIT")

    def baseline_read(name: str) -> object:
        (blob,) = conn.execute("SELECT secret FROM secrets WHERE name = ?", (name,)).fetchone()
        return json.loads(aead.decrypt(blob[:12], blob[12:], name.encode()))["api_key"]

    baseline_stats = _measure(baseline_read, names)

    result = {
        "benchmark": "vault_read",
        "secrets": SECRETS,
        "reads": READS,
        "target_ms": TARGET_MS,
        "vault_get": vault_stats,
        "backend_get_without_audit_write": backend_stats,
        "baseline_select_decrypt": baseline_stats,
        "overhead_ratio_mean": vault_stats["mean_ms"] / baseline_stats["mean_ms"],
        "vault_put_mean_ms": put_ms,
        "meets_target": vault_stats["mean_ms"] < TARGET_MS and vault_stats["p99_ms"] < TARGET_MS,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "disk": "tmpfs"
        if str(workdir).startswith("/dev/shm")
        else f"filesystem of {tempfile.gettempdir()}",
    }
    vault.close()
    conn.close()
    shutil.rmtree(workdir, ignore_errors=True)
    out = Path(__file__).resolve().parent / "results" / "vault_read.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The reliability suite, part three: a canary secret in 14 encodings, nowhere.

A canary API key is stored in the vault and used by real ``tapyard`` processes
(not in-process calls: what a shell runs): a sync, a sync whose key the server
refuses, ``--debug -vv`` runs, ``check``, ``discover`` and every ``creds``
command. Then every byte those processes left is searched for the canary in
14 encodings: their standard output and error, every file under the data
directory, the destination's folder, the working folder and a private temporary
folder (``TMPDIR``), the vault included. Not one hit.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

CANARY = "ck-Zq7/Wm+Rt=Xv4&Np9?Ls2#Kd5"


def encodings(value: str) -> dict[str, bytes]:
    """The canary as 14 encodings a leak could take."""
    raw = value.encode()
    return {
        "raw": raw,
        "base64": base64.b64encode(raw),
        "base64, no padding": base64.b64encode(raw).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(raw),
        "urlsafe base64, no padding": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "base32": base64.b32encode(raw).rstrip(b"="),
        "percent-encoded": urllib.parse.quote(value, safe="").encode(),
        "UTF-16BE": value.encode("utf-16-be"),
        "percent-encoded, lower hex": urllib.parse.quote(value, safe="").lower().encode(),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "UTF-16LE": value.encode("utf-16-le"),
        "JSON \\u escapes": "".join(f"\\u{ord(c):04x}" for c in value).encode(),
        "rot13": codecs.encode(value, "rot13").encode(),
    }


def test_fourteen_encodings() -> None:
    forms = encodings(CANARY)
    assert len(forms) == 14 and len(set(forms.values())) == 14


def _tapyard(env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tapyard", *args],
        env=env, cwd=cwd, input=stdin.encode(), capture_output=True, timeout=180,
    )


def test_the_canary_is_nowhere(tmp_path: Path) -> None:
    home, work, temp, dest = (tmp_path / d for d in ("home", "work", "tmp", "dest"))
    for folder in (home, work, temp, dest):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPYARD_")}
    env.update(TAPYARD_HOME=str(home), TMPDIR=str(temp), TAPYARD_VAULT=str(home / "vault.db"))
    key = _tapyard(env, work, "creds", "keygen")
    assert key.returncode == 0, key.stderr
    env["TAPYARD_VAULT_KEY"] = key.stdout.decode().strip()

    runs: list[subprocess.CompletedProcess[bytes]] = []

    def run(*args: str, ok: bool = True, stdin: str = "") -> None:
        done = _tapyard(env, work, *args, stdin=stdin)
        runs.append(done)
        assert (done.returncode == 0) == ok, (args, done.returncode, done.stderr.decode()[-1500:])

    fields = {"api_key": CANARY, "location": "query", "key_name": "api_key"}
    run("creds", "add", "canary", "--connector", "sample", "--kind", "api_key", "--from-json", "-", stdin=json.dumps(fields))
    # The sample's server wants the canary as its key; the config names it, as a
    # server-side setting of this test connector (it is the server's, not the client's).
    good = json.dumps({"records_per_stream": 30, "page_size": 7, "auth": "api_key", "server_api_key": CANARY})
    bad = json.dumps({"records_per_stream": 30, "auth": "api_key", "server_api_key": "not-the-canary"})
    url = f"sqlite:///{dest / 'out.db'}"
    run("sync", "sample", "-c", good, "--creds", "canary", "--to", url)
    run("--debug", "-vv", "sync", "sample", "-c", good, "--creds", "canary", "--to", url, "--full-refresh", "--json")
    run("sync", "sample", "-c", bad, "--creds", "canary", "--to", url, ok=False)
    run("--debug", "-vv", "sync", "sample", "-c", bad, "--creds", "canary", "--to", f"jsonl:///{dest / 'out.jsonl'}", ok=False)
    run("check", "sample", "-c", good, "--creds", "canary")
    run("check", "sample", "-c", bad, "--creds", "canary", ok=False)
    run("discover", "sample", "-c", good, "--creds", "canary", "--json")
    for listing in (("creds", "list"), ("creds", "list", "--json"), ("creds", "show", "canary"),
                    ("creds", "show", "canary", "--json"), ("creds", "audit"), ("creds", "audit", "--json")):
        run(*listing)
    run("creds", "rotate-key")

    blobs: dict[str, bytes] = {}
    for i, done in enumerate(runs):
        blobs[f"run {i}: {' '.join(map(str, done.args[3:5]))} stdout"] = done.stdout
        blobs[f"run {i} stderr"] = done.stderr
    files = [p for folder in (home, work, temp, dest) for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "vault.db" for p in files) and any(p.name == "out.db" for p in files)
    for path in files:
        blobs[str(path.relative_to(tmp_path))] = path.read_bytes()
    # Sanity: the server did check the key (the bad runs failed), and a sync landed rows.
    assert any(b"30" in done.stdout + done.stderr for done in runs)
    assert _hits(blobs) == [], _hits(blobs)[:10]
    # A planted leak of each kind is found: the search can see what it looks for.
    for name, form in encodings(CANARY).items():
        assert f"{name} in planted" in _hits({"planted": b"..." + form + b"..."})


def _hits(blobs: dict[str, bytes]) -> list[str]:
    return [
        f"{name} in {where}"
        for name, form in encodings(CANARY).items()
        for where, blob in blobs.items()
        if form in blob
    ]

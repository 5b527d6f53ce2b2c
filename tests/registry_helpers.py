"""Helpers for the registry tests: a real registry server on a free loopback port,
connector wheels built the way a publisher builds them (and doctored copies
of them), and the signing a compromised registry could do."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the block (module-scoped fixtures cannot use monkeypatch)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def running_registry(data: Path, *, db: str | None = None, kit: bool = False, extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """``tapyard registry serve`` (the real CLI, the real server) until the block ends."""
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = data / "server.log"
    args = [sys.executable, "-m", "tapyard", "registry", "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)]
    if db:
        args += ["--db", db]
    env = dict(os.environ)
    if not kit:
        args.append("--no-kit")
    args += list(extra)
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}/", data, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(server.url + "api/v1/search", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the registry did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


_built: dict[str, Path] = {}


def built_wheel(connector: str, out: Path) -> Path:
    """The wheel of ``connectors/<connector>`` as pip builds it (cached per session)."""
    if connector not in _built or not _built[connector].exists():
        target = out / f"built-{connector}"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(target),
             str(ROOT / "connectors" / connector)],
            check=True, capture_output=True,
        )
        _built[connector] = next(target.glob("*.whl"))
    return _built[connector]


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def doctored_wheel(
    base: Path,
    out: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    publisher: str | None = None,
    extra: dict[str, bytes] | None = None,
    manifest: str | None = None,
    package: str | None = None,
) -> Path:
    """A copy of the wheel ``base`` renamed, re-versioned, re-published or with extra files, its RECORD rewritten to match.

    It stays a well-formed wheel, so only the check a test aims at can refuse it.
    """
    from packaging.utils import parse_wheel_filename

    old_name, old_version, _b, _t = parse_wheel_filename(base.name)
    new_name = name or str(old_name)
    new_version = version or str(old_version)
    old_info = f"{str(old_name).replace('-', '_')}-{old_version}.dist-info"
    new_info = f"{new_name.replace('-', '_')}-{new_version}.dist-info"
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(base) as source:
        for item in source.infolist():
            if item.filename.endswith("/RECORD"):
                continue
            data = source.read(item.filename)
            target = item.filename.replace(old_info, new_info, 1)
            if package is not None and target.startswith("tapyard_sample/"):
                target = f"{package}/" + target.removeprefix("tapyard_sample/")
            if package is not None and target == f"{new_info}/entry_points.txt":
                data = data.replace(b"tapyard_sample", package.encode())
            if target == f"{new_info}/METADATA":
                text = data.decode()
                text = text.replace(f"Name: {source_name(base)}", f"Name: {new_name}", 1)
                text = text.replace(f"Version: {old_version}", f"Version: {new_version}", 1)
                data = text.encode()
            if target.endswith("tapyard-manifest.toml"):
                text = manifest if manifest is not None else data.decode()
                if publisher is not None:
                    text = text.replace('publisher = "tapyard"', f'publisher = "{publisher}"')
                data = text.encode()
            files[target] = data
    files.update(extra or {})
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for member, data in files.items():
        writer.writerow(_record_line(member, data))
    writer.writerow([f"{new_info}/RECORD", "", ""])
    files[f"{new_info}/RECORD"] = record.getvalue().encode()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{new_name.replace('-', '_')}-{new_version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target_zip:
        for member, data in files.items():
            target_zip.writestr(member, data)
    return path


def source_name(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for line in archive.read(meta).decode().splitlines():
            if line.startswith("Name: "):
                return line[6:]
    raise AssertionError("no Name in METADATA")


def copy_tree(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


# -- what an attacker who holds keys could sign ----------------------------------------------


def registry_signer(server_data: Path, role: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(serialization.load_pem_private_key((server_data / "keys" / f"{role}.pem").read_bytes(), None))


def resign_mirror(
    mirror: Path,
    server_data: Path,
    *,
    namespace: str,
    publisher_signer: Any,
    add: dict[str, bytes] | None = None,
    timestamp_expires: datetime | None = None,
) -> None:
    """Re-sign ``mirror``'s index as a registry that skipped its gate would: the publisher's role
    with ``add`` (target path -> file), then snapshot and timestamp with the registry's own keys."""
    from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp
    from tuf.api.serialization.json import JSONSerializer

    tuf = mirror / "tuf"
    timestamp = Metadata[Timestamp].from_bytes((tuf / "timestamp.json").read_bytes())
    snapshot_file = tuf / f"{timestamp.signed.snapshot_meta.version}.snapshot.json"
    snapshot = Metadata[Snapshot].from_bytes(snapshot_file.read_bytes())
    if add:
        role_version = snapshot.signed.meta[f"{namespace}.json"].version
        role = Metadata[Targets].from_bytes((tuf / f"{role_version}.{namespace}.json").read_bytes())
        for path, data in add.items():
            role.signed.targets[path] = TargetFile.from_data(path, data)
            (mirror / "targets" / path).parent.mkdir(parents=True, exist_ok=True)
            (mirror / "targets" / path).write_bytes(data)
        role.signed.version += 1
        role.sign(publisher_signer)
        (tuf / f"{role.signed.version}.{namespace}.json").write_bytes(role.to_bytes(JSONSerializer()))
        snapshot.signed.meta[f"{namespace}.json"] = MetaFile(version=role.signed.version)
    snapshot.signed.version += 1
    snapshot.sign(registry_signer(server_data, "snapshot"))
    (tuf / f"{snapshot.signed.version}.snapshot.json").write_bytes(snapshot.to_bytes(JSONSerializer()))
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
    timestamp.signed.expires = timestamp_expires or datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    timestamp.sign(registry_signer(server_data, "timestamp"))
    (tuf / "timestamp.json").write_bytes(timestamp.to_bytes(JSONSerializer()))


def add_listed_release(mirror: Path, package: str, version: str, path: str) -> None:
    """Make the (unsigned) listing of ``mirror`` offer a release at ``path``."""
    document_file = mirror / "api" / "v1" / "packages" / f"{package}.json"
    document = json.loads(document_file.read_text())
    template = dict(document["releases"][0])
    template.update(version=version, path=path, filename=path.split("/")[-1], yanked=False)
    document["releases"].insert(0, template)
    document_file.write_text(json.dumps(document))

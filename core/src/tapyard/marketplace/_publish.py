"""``tapyard registry register`` and ``tapyard publish``: the third-party path into a registry.

Publishing builds the wheel (given a folder), checks it as the registry will
(its contents, then the conformance kit when this core has it), and signs the
publisher's delegated TUF targets role with the file's length and SHA-256:
the registry's copy of that role, extended by exactly this file, version + 1,
signed with the publisher's Ed25519 key. The registry stores the wheel only
if every gate check passes; the signature is what every install verifies.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tapyard.marketplace._errors import RegistryError
from tapyard.marketplace._keys import ensure_key, load_signer, public_key_pem, read_token
from tapyard.marketplace._source import Source
from tapyard.marketplace._wheel import WheelRefused, inspect_wheel

__all__ = ["build_wheel", "publish", "register"]

#: How long a publisher's signed role stays valid.
ROLE_LIFETIME = timedelta(days=365)


def registry_client(source: Source) -> Any:
    """The HTTP client of a registry server (a static folder or mirror has none)."""
    if not source.is_http:
        raise RegistryError(f"{source.display} is a static folder; publish to a registry server")
    return source._http()


def registry_answer(response: Any, doing: str) -> dict[str, Any]:
    """A registry's JSON answer, or its refusal as one :class:`RegistryError` line naming ``doing``."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        message = body.get("error") if isinstance(body, dict) else None
        raise RegistryError(str(message or f"the registry answered HTTP {response.status_code} to {doing}")[:600])
    return body if isinstance(body, dict) else {"result": body}


def _post(source: Source, path: str, doing: str, **kwargs: Any) -> dict[str, Any]:
    import httpx

    try:
        response = registry_client(source).post(source.url(path), **kwargs)
    except httpx.HTTPError as exc:
        raise RegistryError(f"cannot reach the registry at {source.display}: {type(exc).__name__}") from None
    return registry_answer(response, doing)


def register(source: Source, namespace: str, display_name: str = "") -> dict[str, Any]:
    """Register a publisher owning ``namespace`` with this machine's key (made now if missing)."""
    ensure_key()
    return _post(source, "api/v1/publishers", "the registration",
                 json={"namespace": namespace, "public_key": public_key_pem(), "display_name": display_name})


def build_wheel(folder: Path, out: Path) -> Path:
    """Build the project in ``folder`` into a wheel in ``out`` (pip in a subprocess)."""
    if not (folder / "pyproject.toml").is_file():
        raise RegistryError(f"{folder} has no pyproject.toml; give a project folder or a .whl file")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check", "-w", str(out), str(folder.resolve())]
    import importlib.util

    if importlib.util.find_spec("hatchling") is not None:
        command.insert(4, "--no-build-isolation")  # the backend is here: build offline
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(out.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no wheel was made"]
        raise RegistryError(f"building {folder.name} failed: {last[0][:200]}")
    return wheels[0]


_SKIPPED_DIRS = {".git", ".hg", ".venv", "venv", "__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache",
                 ".ruff_cache", ".tox", ".nox", "node_modules"}


def source_archive(folder: Path, out: Path, distribution: str, version: str) -> Path:
    """The project folder as a source archive (``name-version.tar.gz``) for the registry's conformance run.

    It holds what the kit reads beside the code (``pyproject.toml``, the
    cassettes, the README); version-control folders, virtual environments and
    build output are left out, and so is anything that is not a regular file.
    """
    import io
    import tarfile

    stem = f"{distribution.replace('-', '_')}-{version}"
    path = out / f"{stem}.tar.gz"
    pyproject, carried = _carried_cassettes(folder)
    with tarfile.open(path, "w:gz") as archive:
        for item in sorted(folder.rglob("*")):
            relative = item.relative_to(folder)
            if any(part in _SKIPPED_DIRS or part.endswith(".egg-info") for part in relative.parts):
                continue
            if relative.as_posix() == "pyproject.toml" and carried:
                data = pyproject.encode()
                info = tarfile.TarInfo(f"{stem}/pyproject.toml")
                info.size, info.mtime, info.mode = len(data), int(item.stat().st_mtime), 0o644
                archive.addfile(info, io.BytesIO(data))
            elif item.is_file() and not item.is_symlink():
                archive.add(item, arcname=f"{stem}/{relative.as_posix()}", recursive=False)
        for inside, outside in carried.items():
            archive.add(outside, arcname=f"{stem}/{inside}", recursive=False)
    return path


def _carried_cassettes(folder: Path) -> tuple[str, dict[str, Path]]:
    """The project's pyproject.toml with its conformance cassettes pointed inside the project,
    and the files to carry in: a monorepo may keep cassettes in a shared folder outside the project
    (``../../cassettes/NAME/full.yaml``), which an archive of the project alone would leave out."""
    import tomllib

    text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    try:
        settings = tomllib.loads(text).get("tool", {}).get("tapyard", {}).get("conformance", {})
    except tomllib.TOMLDecodeError:
        return text, {}
    carried: dict[str, Path] = {}
    for table in settings.values() if isinstance(settings, dict) else []:
        value = table.get("cassette") if isinstance(table, dict) else None
        if not isinstance(value, str):
            continue
        resolved = (folder / value).resolve()
        if resolved.is_relative_to(folder.resolve()) or not resolved.is_file():
            continue
        inside = f"cassettes/{resolved.parent.name}/{resolved.name}"
        carried[inside] = resolved
        text = text.replace(f'"{value}"', f'"{inside}"').replace(f"'{value}'", f"'{inside}'")
    return text, carried


def _run_kit(wheel: Path) -> dict[str, Any] | None:
    import importlib.util

    if importlib.util.find_spec("tapyard.marketplace.kit") is None:
        return None
    from tapyard.marketplace.kit import run_kits

    reports = run_kits(wheel)
    failed = [r for r in reports if not r.ok]
    if failed:
        raise RegistryError(f"the conformance kit failed, so the registry would refuse it:\n{failed[0].render()}")
    return {"score": min(r.score for r in reports), "support_level": reports[0].support_level}


def _signed_role(source: Source, namespace: str, path: str, data: bytes) -> bytes:
    """The publisher's role extended by ``path``, signed with this machine's key."""
    from tuf.api.metadata import Metadata, TargetFile, Targets
    from tuf.api.serialization.json import JSONSerializer

    signer = load_signer()
    current = source.read(f"api/v1/namespaces/{namespace}/role")
    if current is None:
        role = Metadata(Targets(version=1))
        role.signed.version = 0  # the first version published is 1
    else:
        role = Metadata[Targets].from_bytes(current)
        ours = signer.public_key
        # A role last signed by another of this publisher's keys (after a key rotation) is
        # built on as it is: the registry checked that key's signature when it stored it.
        if ours.keyid in role.signatures:
            try:
                ours.verify_signature(role.signatures[ours.keyid], role.signed_bytes)
            except Exception:
                raise RegistryError("the registry's copy of your signed metadata does not verify with your key; refusing to sign on top of it") from None
    role.signed.version += 1
    role.signed.expires = datetime.now(UTC).replace(microsecond=0) + ROLE_LIFETIME
    role.signed.targets[path] = TargetFile.from_data(path, data)
    role.sign(signer)
    return role.to_bytes(JSONSerializer(compact=True))


def publish(
    source: Source,
    dist: Path,
    *,
    token: str | None = None,
    run_kit: bool = True,
    sdist: Path | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Publish the wheel at ``dist`` (or the project folder ``dist``, built first).

    The project's source archive (made from the folder, or ``sdist``) goes
    with it: the registry runs the conformance kit on it, against the
    cassettes, after checking that its package files are the wheel's. ``sdist``
    gives the archive to send with a ``.whl``.
    """
    import httpx

    secret = read_token(token)
    client = registry_client(source)
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        me = registry_answer(client.get(source.url("api/v1/whoami"), headers=headers), "the token check")
    except httpx.HTTPError as exc:
        raise RegistryError(f"cannot reach the registry at {source.display}: {type(exc).__name__}") from None
    namespace = str(me.get("namespace"))
    with tempfile.TemporaryDirectory(prefix="tapyard-publish-") as scratch:
        if dist.is_dir():
            say(f"building {dist.name}")
            wheel = build_wheel(dist, Path(scratch))
        elif dist.suffix == ".whl" and dist.is_file():
            wheel = dist
        else:
            raise RegistryError(f"{dist}: give a project folder or a .whl file")
        try:
            info = inspect_wheel(wheel)
        except WheelRefused as exc:
            raise RegistryError(f"not published: {exc}") from None
        if sdist is None and dist.is_dir():
            source_file: Path | None = source_archive(dist, Path(scratch), info.distribution, info.version)
        else:
            source_file = sdist
        if run_kit:
            say("running the conformance kit")
            _run_kit(source_file or wheel)
        data = wheel.read_bytes()
        path = f"{info.distribution}/{info.filename}"
        files: dict[str, Any] = {}
        if source_file is not None:
            files["source"] = (source_file.name, source_file.read_bytes(), "application/gzip")
        for attempt in range(3):
            role = _signed_role(source, namespace, path, data)
            try:
                response = client.post(
                    source.url("api/v1/upload"), headers=headers, timeout=900,
                    files={"wheel": (info.filename, data, "application/octet-stream"),
                           "role": ("role.json", role, "application/json"), **files},
                )
            except httpx.HTTPError as exc:
                raise RegistryError(f"cannot reach the registry at {source.display}: {type(exc).__name__}") from None
            if response.status_code == 409 and "another publish came first" in response.text and attempt < 2:
                continue
            return registry_answer(response, "the upload")
    raise RegistryError("the upload kept racing another publish; try again")

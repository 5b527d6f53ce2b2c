"""What a connector wheel holds, and whether it is safe to list or install.

The registry's publish gate and ``tapyard install`` run the same checks, so a
wheel that slipped past a registry (or a registry that was bypassed) is still
refused on the user's machine. A connector wheel holds exactly its own
package and its ``.dist-info`` folder: no ``.pth`` file (which runs code at
every interpreter start), no ``.data`` folder (which installs scripts and files
anywhere), no second top-level module, no absolute path, no ``..``, no
symlink, and every file is listed in ``RECORD`` with its hash.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import stat
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath
from typing import Any

from tapyard.base import TapyardError

__all__ = ["MAX_WHEEL_BYTES", "WheelInfo", "WheelRefused", "inspect_wheel", "normalize"]

#: The largest wheel a registry accepts and a client installs (compressed and unpacked).
MAX_WHEEL_BYTES = 20 * 1024 * 1024
_MAX_UNPACKED = 100 * 1024 * 1024
_MAX_ENTRIES = 5000


class WheelRefused(TapyardError):
    """A wheel that is malformed or holds more than its own package. Safe: names only paths in the wheel."""


def normalize(name: str) -> str:
    """The PEP 503 normal form of a distribution name."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class WheelInfo:
    """A checked connector wheel: its names, its package and its manifest."""

    filename: str
    distribution: str
    version: str
    package: str
    entry_points: dict[str, str]
    requires_core: str | None
    metadata: dict[str, Any]
    manifest_text: str
    manifest: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    size: int = 0


def _short(path: str) -> str:
    text = path.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 80 else text[:77] + "..."


def _safe_member(name: str) -> PurePosixPath:
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise WheelRefused(f"the wheel holds a path outside its package: {_short(name)!r}; build it with a standard backend")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".", "") for p in parts):
        raise WheelRefused(f"the wheel holds a path that climbs out of its package: {_short(name)!r}")
    return PurePosixPath(name)


def inspect_wheel(path: Path, *, data: bytes | None = None) -> WheelInfo:
    """Check the wheel at ``path`` (or ``data``) and describe it, or raise a one-line :class:`WheelRefused`."""
    import tomllib

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    filename = path.name
    try:
        dist_name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        raise WheelRefused(f"{_short(filename)!r} is not a wheel file name (name-version-python-abi-platform.whl)") from None
    raw = data if data is not None else path.read_bytes()
    if len(raw) > MAX_WHEEL_BYTES:
        raise WheelRefused(f"the wheel is {len(raw)} bytes, more than the {MAX_WHEEL_BYTES} a connector may be")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise WheelRefused(f"{_short(filename)!r} is not a valid zip archive") from None
    if len(members) > _MAX_ENTRIES:
        raise WheelRefused(f"the wheel holds {len(members)} files, more than {_MAX_ENTRIES}")
    if sum(m.file_size for m in members) > _MAX_UNPACKED:
        raise WheelRefused(f"the wheel unpacks to more than {_MAX_UNPACKED} bytes")
    seen: set[str] = set()
    tops: set[str] = set()
    dist_info = None
    for member in members:
        name = member.filename
        entry = _safe_member(name)
        if name in seen:
            raise WheelRefused(f"the wheel holds {_short(name)!r} twice")
        seen.add(name)
        mode = member.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise WheelRefused(f"the wheel holds a symbolic link: {_short(name)!r}")
        if entry.suffix.lower() == ".pth":
            raise WheelRefused(
                f"the wheel holds a .pth file ({_short(name)!r}), which would run code at every Python start; remove it"
            )
        top = entry.parts[0]
        if top.endswith(".dist-info"):
            dist_info = dist_info or top
            if top != dist_info:
                raise WheelRefused("the wheel holds two .dist-info folders")
            continue
        if top.endswith(".data"):
            raise WheelRefused(
                f"the wheel has a .data folder ({_short(top)!r}) that installs files outside its package; remove it"
            )
        if len(entry.parts) == 1 and not name.endswith("/"):
            raise WheelRefused(f"the wheel holds {_short(name)!r} outside its package; a connector ships one package")
        tops.add(top)
    expected_info = f"{dist_name.replace('-', '_')}-{version}.dist-info"
    if dist_info is None:
        raise WheelRefused("the wheel has no .dist-info folder")
    info_name, _, info_version = dist_info.removesuffix(".dist-info").rpartition("-")
    if canonicalize_name(info_name) != dist_name or info_version != str(version):
        raise WheelRefused(f"the wheel's {_short(dist_info)!r} does not match its file name (expected {expected_info})")

    def read(member: str) -> bytes:
        try:
            return archive.read(member)
        except KeyError:
            raise WheelRefused(f"the wheel has no {member}") from None

    _check_record(archive, dist_info, seen)
    headers = HeaderParser().parsestr(read(f"{dist_info}/METADATA").decode("utf-8", "replace"))
    meta_name, meta_version = headers.get("Name"), headers.get("Version")
    if not meta_name or canonicalize_name(meta_name) != dist_name or meta_version != str(version):
        raise WheelRefused("the wheel's METADATA name or version differs from its file name")
    requires_core = None
    for requirement in headers.get_all("Requires-Dist") or []:
        try:
            req = Requirement(requirement)
        except InvalidRequirement:
            raise WheelRefused(f"the wheel's METADATA has an invalid Requires-Dist: {_short(requirement)!r}") from None
        if canonicalize_name(req.name) == "tapyard" and req.marker is None:
            requires_core = str(req.specifier)
    entry_points = _entry_points(archive, dist_info)
    if not entry_points:
        raise WheelRefused("the wheel registers no connector (no entry point in the 'tapyard' group)")
    packages = {target.split(":")[0].split(".")[0] for target in entry_points.values()}
    if len(packages) != 1:
        raise WheelRefused(f"the wheel's entry points name {len(packages)} packages; a connector ships one")
    package = packages.pop()
    if tops - {package}:
        outside = sorted(tops - {package})[0]
        raise WheelRefused(f"the wheel holds {_short(outside)!r} outside its package {package!r}")
    manifest_name = f"{package}/tapyard-manifest.toml"
    manifest_text = read(manifest_name).decode("utf-8", "replace")
    try:
        manifest = tomllib.loads(manifest_text)
    except tomllib.TOMLDecodeError as exc:
        raise WheelRefused(f"{manifest_name} is not valid TOML ({str(exc)[:120]})") from None
    metadata = {
        "name": meta_name,
        "version": meta_version,
        "summary": headers.get("Summary") or "",
        "license": headers.get("License-Expression") or headers.get("License") or "",
        "homepage": _homepage(headers),
        "requires_python": headers.get("Requires-Python") or "",
    }
    return WheelInfo(
        filename=filename,
        distribution=str(dist_name),
        version=str(version),
        package=package,
        entry_points=entry_points,
        requires_core=requires_core,
        metadata=metadata,
        manifest_text=manifest_text,
        manifest=manifest,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
    )


def _homepage(headers: Any) -> str:
    if headers.get("Home-page"):
        return str(headers.get("Home-page"))
    for url in headers.get_all("Project-URL") or []:
        label, _, value = url.partition(",")
        if label.strip().lower() in ("homepage", "home", "source"):
            return str(value).strip()
    return ""


def _entry_points(archive: zipfile.ZipFile, dist_info: str) -> dict[str, str]:
    import configparser

    try:
        text = archive.read(f"{dist_info}/entry_points.txt").decode("utf-8", "replace")
    except KeyError:
        return {}
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error:
        raise WheelRefused("the wheel's entry_points.txt cannot be parsed") from None
    if not parser.has_section("tapyard"):
        return {}
    return {name.strip(): value.strip() for name, value in parser.items("tapyard")}


def _check_record(archive: zipfile.ZipFile, dist_info: str, names: set[str]) -> None:
    record_name = f"{dist_info}/RECORD"
    try:
        text = archive.read(record_name).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        raise WheelRefused("the wheel has no readable RECORD") from None
    listed: set[str] = set()
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        name, digest = row[0], row[1] if len(row) > 1 else ""
        listed.add(name)
        if name == record_name:
            continue
        if name not in names:
            raise WheelRefused(f"the wheel's RECORD lists {_short(name)!r}, which it does not hold")
        algorithm, _, expected = digest.partition("=")
        if algorithm != "sha256":
            raise WheelRefused(f"the wheel's RECORD has no sha256 for {_short(name)!r}")
        actual = base64.urlsafe_b64encode(hashlib.sha256(archive.read(name)).digest()).rstrip(b"=").decode()
        if actual != expected:
            raise WheelRefused(f"{_short(name)!r} in the wheel does not match its RECORD hash")
    unlisted = sorted(n for n in names - listed if not n.endswith("/"))
    if unlisted:
        raise WheelRefused(f"the wheel holds {_short(unlisted[0])!r}, which its RECORD does not list")

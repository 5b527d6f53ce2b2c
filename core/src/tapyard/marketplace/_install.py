"""``tapyard install``, ``upgrade``, ``uninstall`` and ``connectors outdated``.

An install picks the newest release (not yanked, unless pinned) whose core
range fits the installed core and whose wheel fits this Python; verifies the
signed index, the artifact's length and checksum and its publisher's
signature (python-tuf, through :class:`~tapyard.marketplace._trust.Verifier`);
checks the wheel holds only its own package; shows the manifest's
permissions and asks; and only then runs pip, in a subprocess, on the
verified file. Any mismatch before pip is one line, and nothing is installed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from tapyard.marketplace._errors import RegistryError, VerificationError
from tapyard.marketplace._source import Source
from tapyard.marketplace._trust import Verifier
from tapyard.marketplace._wheel import WheelInfo, WheelRefused, inspect_wheel, normalize

__all__ = ["Plan", "choose_release", "describe_permissions", "install", "installed_connectors", "outdated", "uninstall"]


@dataclass
class Plan:
    """What an install will do, once verified."""

    name: str
    version: str
    path: str
    publisher: str
    wheel: Path | None = None
    info: WheelInfo | None = None


def _core_version() -> str:
    return importlib_metadata.version("tapyard")


def _fits(release: dict[str, Any], core: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.tags import sys_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        if release.get("requires_core") and core not in SpecifierSet(release["requires_core"], prereleases=True):
            return False
        tags = parse_wheel_filename(str(release.get("filename", "")))[3]
    except (InvalidSpecifier, InvalidWheelFilename):
        return False
    supported = set(sys_tags())
    return any(tag in supported for tag in tags)


def choose_release(document: dict[str, Any], pinned: str | None, core: str | None = None) -> dict[str, Any]:
    """The release to install from a package document, or a one-line :class:`RegistryError`."""
    from packaging.version import InvalidVersion, Version

    core = core or _core_version()
    name = document.get("name", "?")
    releases = [r for r in document.get("releases", []) if isinstance(r, dict)]
    if pinned is not None:
        matching = [r for r in releases if r.get("version") == pinned]
        if not matching:
            raise RegistryError(f"{name} has no version {pinned}; see `tapyard search {name}`")
        if not _fits(matching[0], core):
            raise RegistryError(
                f"{name} {pinned} needs tapyard{matching[0].get('requires_core') or ''} (or another Python), and this is tapyard {core}"
            )
        return matching[0]

    def version(r: dict[str, Any]) -> Version:
        try:
            return Version(str(r.get("version")))
        except InvalidVersion:
            return Version("0")

    candidates = sorted((r for r in releases if not r.get("yanked")), key=version, reverse=True)
    for release in candidates:
        if _fits(release, core):
            return release
    if candidates:
        raise RegistryError(f"no release of {name} supports tapyard {core} on this Python; upgrade tapyard or pin a version")
    raise RegistryError(f"{name} has no release that is not yanked")


def _find(source: Source, name: str) -> dict[str, Any]:
    document = source.package(name)
    if document is None and not normalize(name).startswith("tapyard-"):
        document = source.package(f"tapyard-{name}")
    if document is None:
        raise RegistryError(f"no package named {name!r} in the registry at {source.display}; try `tapyard search {name}`")
    return document


def describe_permissions(info: WheelInfo) -> list[str]:
    """One line per connector saying what its manifest lets it do."""
    from tapyard.marketplace._listing import connector_summaries

    lines = []
    for connector in connector_summaries(info.manifest):
        permissions = connector.get("permissions")
        if not permissions:
            lines.append(f"{connector['name']}: declares no permissions (it may call any host)")
            continue
        hosts = ", ".join(str(h) for h in permissions.get("hosts") or []) or "none"
        credentials = ", ".join(str(c) for c in permissions.get("credentials") or []) or "none"
        extra = [w for w, flag in (("reads local files", permissions.get("files")), ("reads environment variables", permissions.get("environment"))) if flag]
        lines.append(f"{connector['name']}: hosts {hosts}; credentials {credentials}" + (f"; {', '.join(extra)}" if extra else ""))
    return lines


def verify(source: Source, plan: Plan, scratch: Path, verifier: Verifier | None = None) -> Plan:
    """Download and verify the artifact of ``plan`` into ``scratch``; check the wheel's contents."""
    verifier = verifier or Verifier(source)
    verifier.refresh()
    wheel, _info = verifier.download(plan.path, scratch)
    try:
        info = inspect_wheel(wheel)
    except WheelRefused as exc:
        raise VerificationError(f"refused: {exc}") from None
    if info.distribution != normalize(plan.name) or info.version != plan.version:
        raise VerificationError(
            f"refused: the signed file {plan.path} holds {info.distribution} {info.version}, not {plan.name} {plan.version}"
        )
    if not plan.path.startswith(f"{info.distribution}/"):
        raise VerificationError(f"refused: {plan.path} is not under the package's own path")
    _check_collision(info)
    plan.wheel, plan.info = wheel, info
    return plan


def _check_collision(info: WheelInfo) -> None:
    """Refuse a wheel whose package another installed distribution already provides (it would overwrite it)."""
    import importlib.util

    if _installed_version(info.distribution) is not None:
        return  # an upgrade of the same distribution replaces its own files
    try:
        found = importlib.util.find_spec(info.package)
    except (ImportError, ValueError):
        found = None
    if found is not None:
        raise VerificationError(
            f"refused: {info.distribution} ships the package {info.package!r}, which another installed distribution "
            "already provides; installing it would overwrite that one"
        )


def _pip(args: list[str], python: str) -> None:
    done = subprocess.run([python, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise RegistryError(f"pip failed ({last[0][:200]}); nothing else was changed")


def install(
    source: Source,
    requirement: str,
    *,
    confirm: Callable[[Plan, list[str]], bool],
    python: str | None = None,
    upgrade_only: bool = False,
    say: Callable[[str], None] = lambda _line: None,
) -> Plan | None:
    """Install ``requirement`` (``NAME`` or ``NAME==VERSION``); None when it is already installed.

    ``confirm`` sees the plan and its permission lines and says whether to go on.
    """
    name, _, pinned = requirement.partition("==")
    name = name.strip()
    if not name or any(c in name for c in "<>=!~;[ @"):
        raise RegistryError(f"{requirement!r}: give a package name, optionally with ==VERSION")
    document = _find(source, name)
    release = choose_release(document, pinned.strip() or None)
    plan = Plan(str(document["name"]), str(release["version"]), str(release["path"]), str(document.get("publisher", "?")))
    installed = _installed_version(plan.name)
    if installed == plan.version and not pinned:
        return None
    if upgrade_only and installed is None:
        raise RegistryError(f"{plan.name} is not installed; install it with `tapyard install {plan.name}`")
    with tempfile.TemporaryDirectory(prefix="tapyard-install-") as scratch:
        verifier = Verifier(source)
        verify(source, plan, Path(scratch), verifier)
        if verifier.first_contact:
            say(f"first contact with {source.display}: trusting its root keys {verifier.remember_root()}")
        assert plan.info is not None
        if not confirm(plan, describe_permissions(plan.info)):
            raise RegistryError("not installed: you declined")
        _pip(["install", "--quiet", str(plan.wheel)], python or sys.executable)
    return plan


def _installed_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def installed_connectors() -> dict[str, str]:
    """Installed distributions that register connectors (``tapyard`` entry points): name -> version."""
    found = {}
    for dist in importlib_metadata.distributions():
        if any(ep.group == "tapyard" for ep in dist.entry_points):
            found[normalize(dist.metadata["Name"])] = dist.version
    return found


def uninstall(name: str, python: str | None = None) -> str:
    """Remove an installed connector package; refuses a package that is not a connector."""
    wanted = normalize(name)
    connectors = installed_connectors()
    if wanted not in connectors and f"tapyard-{wanted}" in connectors:
        wanted = f"tapyard-{wanted}"
    if wanted not in connectors:
        raise RegistryError(f"no installed connector package named {name!r}; see `tapyard connectors list`")
    _pip(["uninstall", "--yes", "--quiet", wanted], python or sys.executable)
    return wanted


def outdated(source: Source) -> list[dict[str, Any]]:
    """Installed connector packages with a newer release this core supports."""
    from packaging.version import InvalidVersion, Version

    rows = []
    for name, version in sorted(installed_connectors().items()):
        document = source.package(name)
        if document is None:
            continue
        try:
            newest = choose_release(document, None)
        except RegistryError:
            continue
        try:
            newer = Version(str(newest["version"])) > Version(version)
        except InvalidVersion:
            newer = newest["version"] != version
        if newer:
            rows.append({"name": name, "installed": version, "latest": newest["version"], "publisher": document.get("publisher")})
    return rows

"""The conformance kit: the checks the registry runs before it lists a connector.

Authors run it with ``tapyard connectors test PATH|NAME`` or, in their
connector's repository, ``pytest --tapyard-conformance``; the registry's
publish gate calls :func:`run_kit`. Every check runs the connector through the
real sync engine against its own cassettes (``[tool.tapyard.conformance.NAME]``
in its ``pyproject.toml``), replayed offline:

- the manifest is valid, agrees with the package metadata and with the code
  (streams, stream modes, auth kinds, credential kinds);
- every stream is discoverable with a JSON Schema (primary key and cursor in it);
- the cassettes hold no secret and call only hosts the manifest declares;
- a full read validates every record and its pagination ends;
- two full reads agree; an incremental read from the state of a full read
  fetches nothing new (and does not re-read everything); a read stopped after
  its first page and resumed ends with the same rows;
- a 429 and a 503 injected into the replay are retried;
- wrong credentials (a 401 injected) give one clear line;
- invalid configuration is refused with one line;
- the package has a README.

A :class:`KitReport` says, for each failure, what to change; :meth:`KitReport.to_json`
is what machines read. The score (0-100) and the support level come from what
was measured (docs/authoring.md explains both).
"""

from __future__ import annotations

from pathlib import Path

from tapyard.base import ConfigError
from tapyard.marketplace._report import (
    CHECKS,
    FAILED,
    PASSED,
    SKIPPED,
    WEIGHTS,
    CheckResult,
    KitReport,
    one_line,
)
from tapyard.marketplace._target import Target, resolve_target

__all__ = ["CHECKS", "FAILED", "PASSED", "SKIPPED", "WEIGHTS", "CheckResult", "KitReport", "one_line", "run_kit", "run_kits"]

def _connectors_of(target: Target) -> list[tuple[str, Path | None]]:
    """Every connector the target's manifests name, with its manifest (or the conformance
    tables' names, without one)."""
    import tomllib

    found: list[tuple[str, Path | None]] = []
    for path in target.manifest_files():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            data = {}
        tables = data.get("connector")
        names = [
            str(t["name"]) for t in (tables if isinstance(tables, list) else [])
            if isinstance(t, dict) and isinstance(t.get("name"), str)
        ]
        if not names:
            # an unreadable manifest: the kit reports it, for the conformance tables' connectors
            names = list(target.conformance) or list(target.entry_points)
        found += [(n, path) for n in names]
    if not found:
        found = [(n, None) for n in (list(target.conformance) or list(target.entry_points))]
    return found


def run_kits(target: str | Path, connector: str | None = None) -> list[KitReport]:
    """Run the kit on every connector of ``target`` (or only ``connector``); one report each.

    ``target`` is a project directory, an sdist, a wheel or an installed
    connector's name. Raises :class:`~tapyard.ConfigError` (one line) when the
    target cannot be read or names no such connector.
    """
    from tapyard.marketplace._checks import Kit
    from tapyard.marketplace._replay import isolated

    resolved = resolve_target(target)
    try:
        found = _connectors_of(resolved)
        if connector is not None:
            found = [(n, p) for n, p in found if n == connector]
            if not found:
                raise ConfigError(f"{resolved.given} has no connector named {connector!r}")
        elif resolved.root is None and not str(target).endswith((".whl",)) and not Path(str(target)).exists():
            # an installed connector's name: that connector only
            found = [(n, p) for n, p in found if n == str(target)] or found
        reports = []
        for name, manifest in found:
            with isolated(resolved) as scratch:
                reports.append(Kit(resolved, name, manifest, scratch).run())
        return reports
    finally:
        resolved.cleanup()


def run_kit(target: str | Path, connector: str | None = None) -> KitReport:
    """Run the kit on one connector of ``target`` (the first, unless ``connector`` names one)."""
    return run_kits(target, connector)[0]

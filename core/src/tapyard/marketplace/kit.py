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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tapyard.base import ConfigError
from tapyard.marketplace._target import Target, resolve_target

__all__ = ["CheckResult", "KitReport", "run_kit", "run_kits"]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"

#: The checks, in the order they run: id -> (title, safety). The safety checks
#: are what the ``community`` support level needs.
CHECKS: dict[str, tuple[str, bool]] = {
    "manifest.valid": ("the manifest is valid and agrees with the package metadata", True),
    "manifest.permissions": ("the manifest declares its permissions", True),
    "manifest.matches_code": ("the manifest says what the code registers", False),
    "config.invalid_rejected": ("invalid configuration is refused in one line", False),
    "cassettes.present": ("the connector has cassettes to replay", False),
    "cassettes.secrets": ("no secret in any cassette", True),
    "hosts.declared": ("every request goes to a host the manifest declares", True),
    "streams.schemas": ("every stream is discoverable with a JSON Schema", False),
    "read.records_validate": ("a full read's records validate against their schemas", False),
    "read.pagination_ends": ("pagination ends", False),
    "read.two_full_reads": ("two full reads agree", False),
    "read.incremental": ("an incremental read after a full read fetches nothing new", False),
    "read.resume": ("a read resumed after its first page ends with the same rows", False),
    "read.retries": ("a 429 and a 503 are retried", False),
    "auth.wrong_credentials": ("wrong credentials give one clear line", False),
    "docs.readme": ("the package has a README", False),
    "support.claimed": ("the support level the manifest claims is earned", False),
}

#: Weights of the score's parts (they add up to 100).
WEIGHTS = {"checks": 50, "coverage": 15, "modes": 10, "typed": 15, "docs": 10}


@dataclass
class CheckResult:
    """One check's outcome: ``status`` is passed, failed or skipped; ``fix`` says what to change."""

    id: str
    title: str
    status: str
    message: str = ""
    fix: str = ""
    safety: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
            "safety": self.safety,
        }


@dataclass
class KitReport:
    """What the kit measured for one connector."""

    connector: str
    target: str
    distribution: str | None = None
    version: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    score: int = 0
    score_parts: dict[str, float] = field(default_factory=dict)
    support_level: str = "none"
    claimed_level: str | None = None

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAILED]

    @property
    def ok(self) -> bool:
        """True when no check failed: the connector passes the kit."""
        return not self.failures

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "connector": self.connector,
            "distribution": self.distribution,
            "version": self.version,
            "target": self.target,
            "score": self.score,
            "score_parts": self.score_parts,
            "support_level": self.support_level,
            "claimed_level": self.claimed_level,
            "checks": [c.to_json() for c in self.checks],
        }

    def render(self) -> str:
        """The report as a person reads it: one line per check, a fix under each failure."""
        version = f" {self.version}" if self.version else ""
        dist = f" ({self.distribution})" if self.distribution else ""
        lines = [f"conformance kit: {self.connector}{version}{dist} from {self.target}"]
        marks = {PASSED: "PASS", FAILED: "FAIL", SKIPPED: "SKIP"}
        for c in self.checks:
            lines.append(f"  {marks[c.status]} {c.id:<24} {c.message or c.title}")
            if c.status == FAILED and c.fix:
                lines.append(f"       fix: {c.fix}")
        failed = len(self.failures)
        skipped = sum(c.status == SKIPPED for c in self.checks)
        claimed = f" (the manifest claims {self.claimed_level})" if self.claimed_level else ""
        verdict = "passed" if self.ok else f"FAILED ({failed} check{'s' * (failed != 1)})"
        lines.append(
            f"{verdict}; score {self.score}/100; support level {self.support_level}{claimed}"
            + (f"; {skipped} skipped" if skipped else "")
        )
        return "\n".join(lines)


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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

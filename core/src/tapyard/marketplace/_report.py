"""The conformance kit's results: the checks it runs, a check's result, the report
and its score (what :mod:`tapyard.marketplace.kit` and its checks share)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHECKS", "FAILED", "PASSED", "SKIPPED", "WEIGHTS", "CheckResult", "KitReport", "one_line"]

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

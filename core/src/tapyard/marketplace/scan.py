"""The cassette secret scan: credential-shaped values in recorded HTTP traffic.

The same patterns ``.ci/run`` applies to the repository's cassettes, shipped
with the core so that the conformance kit (and a connector's own CI) run the
same scan: cloud keys, signatures, session tokens, Stripe keys, bearer tokens,
JWTs, private keys, Salesforce sessions, Google tokens. Run as a program
(``python -m tapyard.marketplace.scan [PATH...]``, default: ``cassettes`` and
every ``connectors/**/cassettes`` folder under the current directory), it
prints one line per finding and exits 1 when there is any.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PATTERNS", "Finding", "cassette_files", "main", "scan_files", "scan_text"]

#: What a credential looks like, by name. Placeholders a scrubber writes
#: (REDACTED, ***, <...>, fake/test/dummy values) are not findings.
PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "AWS access key id": r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])",
        "AWS SigV4 signature": r"Signature=[0-9a-f]{64}",
        "AWS session token header": r"X-Amz-Security-Token['\"]?\s*[:=]\s*['\"]?\[?['\"]?[A-Za-z0-9/+=]{40,}",
        "Azure SharedKey signature": r"SharedKey\s+[A-Za-z0-9]+:[A-Za-z0-9/+=]{40,}",
        "Azure SAS signature": r"[?&]sig=[A-Za-z0-9%/+=]{30,}",
        "Stripe secret key": r"\b(sk|rk)_(live|test)_[0-9a-zA-Z]{8,}",
        "bearer token": r"Bearer\s+(?!REDACTED|\*+|<|\[|x{3,}|XXX|redacted|dummy|test|fake)[A-Za-z0-9._~+/=-]{20,}",
        "JWT": r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        "private key": r"-----BEGIN ([A-Z ]+ )?PRIVATE KEY-----",
        "Salesforce session id": r"00D[0-9A-Za-z]{12,15}![A-Za-z0-9._]{20,}",
        "Google OAuth token": r"ya29\.[0-9A-Za-z_-]{20,}",
    }.items()
}

@dataclass(frozen=True)
class Finding:
    """One credential-shaped value: where, what kind, and its first characters only."""

    path: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind} ({self.excerpt}...)"


def scan_text(text: str, path: str = "") -> list[Finding]:
    """Every kind of credential found in ``text`` (one finding per kind)."""
    found = []
    for kind, pattern in PATTERNS.items():
        match = pattern.search(text)
        if match:
            found.append(Finding(path, kind, match.group(0)[:12]))
    return found


def cassette_files(roots: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every file under ``roots`` (files given directly are included as they are)."""
    for root in roots:
        base = Path(root)
        if base.is_file():
            yield base
        elif base.is_dir():
            # every file, as .ci/run always scanned: a README beside the cassettes can leak a key too
            yield from sorted(p for p in base.rglob("*") if p.is_file())


def scan_files(paths: Iterable[Path]) -> tuple[int, list[Finding]]:
    """How many files were read, and the findings in them."""
    files, findings = 0, []
    for path in paths:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        files += 1
        findings += scan_text(text, str(path))
    return files, findings


def _default_roots() -> list[Path]:
    roots = [Path("cassettes")] if Path("cassettes").is_dir() else []
    connectors = Path("connectors")
    if connectors.is_dir():
        roots += sorted(p for p in connectors.rglob("cassettes") if p.is_dir())
    return roots


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files, findings = scan_files(cassette_files([Path(a) for a in args] or _default_roots()))
    for finding in findings[:20]:
        print(finding)
    print(f"{len(findings)} credential-shaped values in {files} cassette files")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())

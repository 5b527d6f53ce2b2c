"""Every connector of the repository passes the conformance kit, run through the same
entry point a third party uses (``tapyard connectors test PATH --json``), and
docs/connectors.md says what the kit measured."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONNECTORS = sorted(p.name for p in (ROOT / "connectors").iterdir() if (p / "pyproject.toml").is_file())

def _table() -> dict[str, tuple[int, str]]:
    rows = {}
    for line in (ROOT / "docs" / "connectors.md").read_text().splitlines():
        match = re.match(r"\| (\w+) \| (\d+) \| (\w+) \|", line)
        if match:
            rows[match.group(1)] = (int(match.group(2)), match.group(3))
    return rows


def test_every_connector_has_conformance_settings_and_a_row() -> None:
    assert set(CONNECTORS) == {"aws", "azure", "erp", "gcp", "salesforce", "sample", "stripe"}
    assert set(_table()) == set(CONNECTORS)
    for name in CONNECTORS:
        assert f"[tool.tapyard.conformance.{name}]" in (ROOT / "connectors" / name / "pyproject.toml").read_text()


@pytest.mark.parametrize("name", CONNECTORS)
def test_connector_passes_the_kit(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapyard", "connectors", "test", f"connectors/{name}", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    (report,) = json.loads(done.stdout)
    failed = {c["id"]: c["message"] for c in report["checks"] if c["status"] == "failed"}
    assert done.returncode == 0 and report["ok"], failed
    assert report["support_level"] in ("community", "certified")
    assert _table()[name] == (report["score"], report["support_level"]), (
        f"docs/connectors.md says {_table()[name]}, the kit measured {report['score']} {report['support_level']}"
    )

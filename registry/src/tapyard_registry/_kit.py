"""The publish gate's conformance run: the author kit, in a separate process, against the uploaded wheel.

The kit imports the connector's code, so it never runs inside the registry's
own process: a child Python with a scratch home directory, no inherited
secrets, a time limit, and the wheel (not an installed copy) as its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tapyard_registry._service import KitResult

__all__ = ["kit_available", "run_kit_isolated"]



def kit_available() -> bool:
    """Whether this core ships the conformance kit."""
    import importlib.util

    return importlib.util.find_spec("tapyard.marketplace.kit") is not None


def check_source(archive: Path, wheel: bytes, package: str) -> str | None:
    """What is wrong with ``archive`` as the source of ``wheel`` (None when nothing is).

    The kit imports the code from the source archive, so the archive's copy of
    the package must be byte for byte the wheel's: else a benign source could
    pass the kit for a wheel that does something else.
    """
    import io
    import tarfile
    import zipfile

    try:
        with tarfile.open(archive) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            tops = {name.split("/")[0] for name in members}
            if len(tops) != 1:
                return "the source archive must hold one top-level folder"
            top = tops.pop()
            prefix = next((p for p in (f"{top}/src/{package}/", f"{top}/{package}/") if any(n.startswith(p) for n in members)), None)
            if prefix is None:
                return f"the source archive holds no {package}/ package (under src/ or at its root)"
            source_files = {n[len(prefix):]: n for n in members if n.startswith(prefix) and "/__pycache__/" not in n and not n.endswith(".pyc")}
            with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
                wheel_files = {n[len(package) + 1:]: n for n in whl.namelist() if n.startswith(f"{package}/") and not n.endswith("/")}
                for relative, name in sorted(wheel_files.items()):
                    extracted = tar.extractfile(members[source_files[relative]]) if relative in source_files else None
                    if extracted is None or extracted.read() != whl.read(name):
                        return f"the source archive's {package}/{relative} is not the wheel's; build both from the same tree"
                extra = sorted(r for r in source_files if r.endswith(".py") and r not in wheel_files)
                if extra:
                    return f"the source archive's {package}/{extra[0]} is not in the wheel; build both from the same tree"
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError):
        return "the source archive is not a readable .tar.gz"
    return None


def run_kit_isolated(target: Path, timeout: float = 600) -> KitResult:
    """Run the kit on ``target`` (a source archive) in a child process; a crash or a timeout is a failed run."""
    with tempfile.TemporaryDirectory(prefix="tapyard-kit-home-") as home:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        env.update(TAPYARD_HOME=home, HOME=home, PYTHONDONTWRITEBYTECODE="1")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tapyard", "connectors", "test", str(target), "--json"],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=home,
            )
        except subprocess.TimeoutExpired:
            return KitResult(False, None, None, f"the conformance kit did not finish within {timeout:.0f} s")
    try:
        reports = json.loads(done.stdout)
        if not isinstance(reports, list) or not reports:
            raise ValueError
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return KitResult(False, None, None, f"the conformance kit could not run: {last}")
    failed = [r for r in reports if not r.get("ok")]
    score = min((float(r.get("score", 0)) for r in reports), default=0.0)
    levels = ("none", "community", "certified")
    level = min((r.get("support_level", "none") for r in reports), key=lambda v: levels.index(v) if v in levels else 0, default="none")
    if failed:
        first = failed[0]
        broken = [c for c in first.get("checks", []) if c.get("status") == "failed"]
        what = "; ".join(f"{c.get('id')}: {str(c.get('message') or c.get('title') or '')[:150]}" for c in broken[:3])
        return KitResult(False, score, level, f"{first.get('connector')}: {what or 'failed'}", details=reports)
    summary = "; ".join(f"{r.get('connector')}: score {r.get('score')}, {r.get('support_level')}" for r in reports)
    return KitResult(True, score, level, summary, details=reports)

"""The documentation's examples run as written.

Every fenced ``sh``, ``bash`` or ``console`` block of README.md, docs/*.md and
connectors/*/README.md runs, block after block in the order of its page, in
one bash with ``set -euo pipefail``, from a fresh copy of the repository's
tracked files (the README says "start from the repository root") with its own
``TAPYARD_HOME``. ``tapyard`` and ``python3`` are this test run's. docs/authoring.md
is followed in an empty directory instead, outside the repository: its blocks
fenced with ``file=PATH`` are written there first, and ``TAPYARD_SRC`` names
the checkout, as the page asks. README.md's Python blocks run too.

A block is left out only when it is on :data:`SKIP`, with its reason: it needs
a cloud or SaaS account, or it is a run of the whole suite or of the
benchmarks. Every entry of SKIP must match a block, and every block must
either run or be on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "connectors").glob("*/README.md")],
    key=lambda p: str(p.relative_to(ROOT)),
)
SHELLS = ("sh", "bash", "console")
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)

#: (page, a piece of the block) -> why it does not run here.
SKIP = {
    ("README.md", "--group dev && .venv/bin/python -m pytest"):
        "installs everything and runs the whole test suite, this test included (CI runs it: .ci/run)",
    ("docs/performance.md", "bench/run.py --repeat 3"):
        "benchmark runs of 1.5 to 30 minutes whose figures are timing-sensitive (CI runs --smoke: .ci/run)",
    ("connectors/aws/README.md", "tapyard sync aws --creds prod"):
        "needs an AWS account (credentials in AWS_* and a bucket named data)",
    ("connectors/azure/README.md", "tapyard sync azure --creds store"):
        "needs an Azure storage account (a connection string and a container named data)",
    ("connectors/gcp/README.md", "tapyard sync gcp --creds sa"):
        "needs a Google Cloud service account key (key.json) and a bucket named data",
    ("connectors/erp/README.md", "tapyard creds add bc --connector erp"):
        "needs a Microsoft Dynamics 365 Business Central tenant and its app registration (bc.json)",
    ("connectors/salesforce/README.md", "--kind jwt_bearer --from-json creds.json"):
        "needs a Salesforce org with a connected app and its certificate's private key (creds.json)",
    ("connectors/stripe/README.md", "tapyard creds add stripe-ro"):
        "needs a Stripe account's API key (asked for at a terminal)",
}

#: Pages followed in an empty directory, outside the repository.
OUTSIDE = {"docs/authoring.md"}


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    info: str
    text: str
    line: int

    @property
    def file(self) -> str | None:
        match = re.search(r"\bfile=(\S+)", self.info)
        return match.group(1) if match else None

    @property
    def script(self) -> str:
        if self.lang != "console":
            return self.text
        # a console block: the commands are the lines after "$ "
        return "\n".join(line[2:] for line in self.text.splitlines() if line.startswith("$ "))

    def skipped(self) -> str | None:
        return next((why for (page, piece), why in SKIP.items() if page == self.page and piece in self.text), None)


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    name = str(page.relative_to(ROOT))
    return [
        Block(name, m.group(1), m.group(2).strip(), m.group(3), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def _shell_pages() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in PAGES if any(b.lang in SHELLS for b in blocks(p))]


def _copy_of_the_repository(target: Path) -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TAPYARD_HOME"] = str(home)
    env["TAPYARD_SRC"] = str(ROOT)
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "TAPYARD_RECORD", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    return env


def _run(block: Block, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, (
        f"{block.page}:{block.line}: exit {done.returncode}\n--- block\n{block.script}\n"
        f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
    )


@pytest.mark.timeout(1800)  # docs/authoring.md and the README make virtual environments and install into them
@pytest.mark.parametrize("page", _shell_pages())
def test_shell_examples_run_as_written(page: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if page not in OUTSIDE:
        _copy_of_the_repository(work)
    env = _environment(tmp_path / "home")
    ran = 0
    for block in blocks(ROOT / page):
        if block.file:
            (work / block.file).parent.mkdir(parents=True, exist_ok=True)
            (work / block.file).write_text(block.text, encoding="utf-8")
        if block.lang not in SHELLS or block.skipped():
            continue
        _run(block, work, env)
        ran += 1
    assert ran or all(b.skipped() for b in blocks(ROOT / page) if b.lang in SHELLS)


@pytest.mark.timeout(600)
def test_readme_python_examples_run(tmp_path: Path) -> None:
    env = _environment(tmp_path / "home")
    python = [b for b in blocks(ROOT / "README.md") if b.lang == "python"]
    assert python
    for block in python:
        done = subprocess.run(
            [sys.executable, "-c", block.text], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"README.md:{block.line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Warning" not in done.stderr, done.stderr


def test_the_skip_list_is_small_current_and_reasoned() -> None:
    every = [b for p in PAGES for b in blocks(p) if b.lang in SHELLS]
    for (page, piece), why in SKIP.items():
        matching = [b for b in every if b.page == page and piece in b.text]
        assert len(matching) == 1, f"SKIP entry {(page, piece)} matches {len(matching)} blocks"
        assert len(why) > 20
    assert len(SKIP) <= 10


def test_docs_cite_only_what_the_repository_holds() -> None:
    # paths in backquotes or links that look like repository files must exist
    cited = re.compile(r"(?:`|\()((?:core|credentials|registry|connectors|tests|docs|bench|cassettes)/[\w./-]+)")
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in cited.finditer(text):
            path = match.group(1).rstrip(".")
            if "<" in path or "*" in path:
                continue
            # from the root, or from the page's own folder (a connector's README names its tests/)
            assert (ROOT / path).exists() or (page.parent / path).exists(), f"{page.relative_to(ROOT)} cites {path}"
        for name in re.findall(r"[`(\[]([\w./-]*[A-Za-z]\.md)\b", text):
            if name == "latest.md":  # bench/run.py writes it under bench/results/
                continue
            places = (ROOT / name, page.parent / name, ROOT / "docs" / name)
            assert any(p.exists() for p in places), f"{page.relative_to(ROOT)} cites {name}"
        assert not re.search(r"\bissue[s]? #?\d+", text, re.I), f"{page.relative_to(ROOT)} cites an issue number"

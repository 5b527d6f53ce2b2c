"""``pytest --tapyard-conformance``: the conformance kit as pytest items.

Shipped with the core and loaded by pytest through the ``pytest11`` entry
point, so that in a connector's repository ``pytest --tapyard-conformance``
runs the same checks as ``tapyard connectors test .`` (and the registry): one
item per check and connector, failing with what to change, skipped when the
kit could not measure it. ``--tapyard-conformance=PATH`` points it at another
project directory, sdist or wheel. Without the option this plugin does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["ConformanceItem"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tapyard")
    group.addoption(
        "--tapyard-conformance",
        action="store",
        nargs="?",
        const=".",
        default=None,
        metavar="PATH",
        help="run tapyard's conformance kit on the connector project at PATH (default: the rootdir)",
    )


class ConformanceFailed(Exception):
    """A check of the kit failed: its message and the fix."""


class ConformanceItem(pytest.Item):
    """One check of the kit for one connector."""

    def __init__(self, *, check: Any, connector: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.connector = connector

    def runtest(self) -> None:
        if self.check.status == "skipped":
            pytest.skip(self.check.message)
        if self.check.status == "failed":
            raise ConformanceFailed(f"{self.check.message}\nfix: {self.check.fix}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ConformanceFailed):
            return f"{self.check.id}: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"tapyard conformance: {self.connector} {self.check.id}"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    given = config.getoption("tapyard_conformance", default=None)
    if given is None:
        return
    from tapyard.marketplace.kit import run_kits

    target = Path(given)
    if not target.is_absolute():
        target = config.rootpath / target
    reports = run_kits(target)
    for report in reports:
        for check in report.checks:
            items.append(
                ConformanceItem.from_parent(
                    session,
                    name=f"tapyard-conformance[{report.connector}:{check.id}]",
                    check=check,
                    connector=report.connector,
                )
            )
        config.stash.setdefault(_REPORTS, []).append(report)


_REPORTS = pytest.StashKey[list[Any]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    for report in config.stash.get(_REPORTS, []):
        terminalreporter.write_line(
            f"tapyard conformance: {report.connector}: score {report.score}/100, "
            f"support level {report.support_level}{'' if report.ok else ', FAILED'}"
        )

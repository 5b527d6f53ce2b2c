"""Fixtures of the Stripe connector's tests: localstripe, started on 127.0.0.1
by ``localstripe_launcher.py`` (which also adds what localstripe lacks).
Without localstripe the live tests skip, or fail when ``TAPYARD_REQUIRE_EMULATORS=1``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).parent / "localstripe_launcher.py"


class LocalStripe:
    """localstripe on 127.0.0.1; ``url`` is its API base."""

    def __init__(self, port: int = 0) -> None:
        if importlib.util.find_spec("localstripe") is None:
            reason = "localstripe is not installed"
            if os.environ.get("TAPYARD_REQUIRE_EMULATORS") == "1":
                pytest.fail(f"{reason} (TAPYARD_REQUIRE_EMULATORS=1; run .ci/emulators-saas.sh)")
            pytest.skip(f"{reason}; run .ci/emulators-saas.sh to install it")
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: list[str] = []
        found = threading.Event()
        self.url = ""

        def watch() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.append(line)
                if line.startswith("listening on "):
                    self.url = line.split()[-1]
                    found.set()

        threading.Thread(target=watch, daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise RuntimeError("localstripe did not start:\n" + "".join(lines[-20:]))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def start_localstripe() -> Iterator[type[LocalStripe]]:
    yield LocalStripe

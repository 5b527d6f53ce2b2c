"""Fixtures of the Stripe connector's tests: localstripe, started on 127.0.0.1
by ``localstripe_launcher.py`` (which also adds what localstripe lacks).
Without localstripe the live tests skip, or fail when ``TAPYARD_REQUIRE_EMULATORS=1``."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapyard.testing import Emulator, service_missing

LAUNCHER = Path(__file__).parent / "localstripe_launcher.py"


class LocalStripe(Emulator):
    """localstripe on 127.0.0.1; ``url`` is its API base."""

    def __init__(self, port: int = 0) -> None:
        if importlib.util.find_spec("localstripe") is None:
            service_missing("localstripe is not installed; run .ci/emulators-saas.sh to install it")
        super().__init__([sys.executable, str(LAUNCHER), str(port)], name="localstripe")


@pytest.fixture
def start_localstripe() -> Iterator[type[LocalStripe]]:
    yield LocalStripe

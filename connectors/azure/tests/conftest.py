"""Fixtures of the Azure connector's tests: Azurite, started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def azurite_endpoint() -> Iterator[str]:
    """Azurite's blob service on a free loopback port; skipped when it is not installed,
    failed instead when TAPYARD_REQUIRE_EMULATORS=1 (as CI sets it)."""
    from tapyard_azure.testing import azurite, azurite_binary
    if azurite_binary() is None:
        reason = "azurite is not installed (npm install azurite; .ci/emulators-cloud.sh does)"
        if os.environ.get("TAPYARD_REQUIRE_EMULATORS") == "1":
            pytest.fail(reason + " and TAPYARD_REQUIRE_EMULATORS=1")
        pytest.skip(reason)
    with azurite() as endpoint:
        yield endpoint

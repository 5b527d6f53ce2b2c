"""The shared fixtures come from the ``tapyard.testing`` pytest plugin (loaded
by ``-p tapyard.testing`` in the root pytest configuration), so that the
connectors' own tests get the same network guard, fake credentials and
isolation as these."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No vault key from the environment or the real OS keyring leaks into a test:
    the vault's tests ask for it with ``pytest.mark.usefixtures("no_ambient_keys")``."""
    import keyring
    from keyring.backends import fail

    monkeypatch.delenv("TAPYARD_VAULT_KEY", raising=False)
    monkeypatch.delenv("TAPYARD_VAULT_PASSPHRASE", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    yield
    keyring.set_keyring(previous)


#: the reliability suite's sizes: (variable, default size in .ci/run, --nightly size)
RELIABILITY_SIZES = {
    "TAPYARD_KILL_ROUNDS": ("6", "30"),
    "TAPYARD_FUZZ_EXAMPLES": ("25", "200"),
    "TAPYARD_FUZZ_RANDOM": ("0", "1"),
    "TAPYARD_CHAOS_SECONDS": ("40", "180"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--nightly",
        action="store_true",
        help="run the reliability suite (-m reliability) at its nightly size: more kill rounds, "
        "more fuzzing examples (random seeds), a longer chaos run (docs/reliability.md)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Read by the suite's modules when they are imported, after this runs; a
    # variable already set wins.
    if config.getoption("--nightly"):
        import os

        for name, (_, nightly) in RELIABILITY_SIZES.items():
            os.environ.setdefault(name, nightly)

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

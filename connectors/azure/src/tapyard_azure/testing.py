"""Test helpers: Azurite's blob service on a free loopback port (``tapyard.testing``'s).

::

    from tapyard_azure.testing import azurite, connection_string

    with azurite() as endpoint:              # "http://127.0.0.1:PORT/devstoreaccount1"
        text = connection_string(endpoint)   # Azurite's documented development account

Azurite is an npm package: ``.ci/emulators-cloud.sh`` installs it under
``${TAPYARD_EMULATORS:-~/.cache/tapyard-emulators}``; :func:`azurite_binary`
finds it there or on PATH. Tests get one per session from the
``azurite_endpoint`` fixture of ``tapyard.testing``.
"""

from __future__ import annotations

from tapyard.testing import AZURITE_ACCOUNT as ACCOUNT
from tapyard.testing import EmulatorNotInstalled, azurite, azurite_binary
from tapyard.testing import azurite_connection_string as connection_string

__all__ = ["ACCOUNT", "EmulatorNotInstalled", "azurite", "azurite_binary", "connection_string"]

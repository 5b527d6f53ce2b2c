"""Testing helpers for connector authors: VCR cassettes scrubbed of secrets.

::

    from tapyard.testing import cassette

    def test_customers_replay(tmp_path):
        with cassette("cassettes/stripe/customers.yaml"):
            result = tapyard.sync("stripe", config, credentials=fake_credentials(), to=...)

Replay is the default (record mode ``none``): a request that is not in the
cassette fails, so a test can never reach a real account. Set
``TAPYARD_RECORD=all`` (re-record everything) or ``TAPYARD_RECORD=new_episodes``
to record against an emulator or, with real credentials, the vendor.

Before anything is written, every request and response goes through the
scrubbers: credential headers are dropped, credential query and form
parameters are replaced, JSON fields that hold tokens are replaced, and any
text that looks like a credential (cloud keys, signatures, Stripe keys, bearer
tokens, JWTs, private keys, Salesforce sessions, Google tokens), or any value
registered with ``tapyard_credentials.redactor``, becomes ``REDACTED``.

Loaded as a pytest plugin (``-p tapyard.testing``, as the project's own
pytest configuration does), this module also gives every test: a network
guard that refuses any address but loopback, fake cloud and vendor
credentials in the environment (so nothing can reach a real account), an
isolated ``TAPYARD_HOME``, a fresh plugin manager, and the ``register_plugin``
fixture that registers throwaway plugins for one test.

Needs the ``testing`` extra (``pip install tapyard[testing]``), which brings vcrpy.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SECRET_PATTERNS", "cassette", "scrub_text", "vcr_config"]

REDACTED = "REDACTED"

#: Header names whose values are credentials (compared case-insensitively).
SECRET_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-sfdc-session",
    "stripe-account",
)

#: Query and form parameters whose values are credentials.
SECRET_PARAMS = (
    "api_key",
    "apikey",
    "key",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "code",
    "code_verifier",
    "password",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "sessionid",
    "token",
)

#: JSON fields in bodies whose values are credentials.
SECRET_FIELDS = frozenset(SECRET_PARAMS) | {
    "secret",
    "secretstring",
    "secret_access_key",
    "secretaccesskey",
    "sessiontoken",
    "session_token",
    "private_key",
    "private_key_id",
    "accountkey",
    "signature",
}

#: Text patterns of credentials, replaced wherever they appear.
SECRET_PATTERNS = [
    re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    re.compile(r"(?<=Signature=)[0-9a-f]{64}"),
    re.compile(r"(?<=SharedKey )[A-Za-z0-9]+:[A-Za-z0-9/+=]{20,}"),
    re.compile(r"(?<=[?&]sig=)[A-Za-z0-9%/+=]+"),
    re.compile(r"\b(sk|rk|pk)_(live|test)_[0-9a-zA-Z]{8,}"),
    re.compile(r"(?<=Bearer )(?!REDACTED)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"-----BEGIN ([A-Z ]+ )?PRIVATE KEY-----[\s\S]*?-----END ([A-Z ]+ )?PRIVATE KEY-----"),
    re.compile(r"00D[0-9A-Za-z]{12,15}![A-Za-z0-9._]{20,}"),
    re.compile(r"ya29\.[0-9A-Za-z_-]{20,}"),
]


def scrub_text(text: str) -> str:
    """``text`` with every credential-shaped value and every registered secret replaced."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    try:
        from tapyard_credentials import redact
    except ImportError:  # pragma: no cover - the core always has it
        return text
    return redact(text).replace("***", REDACTED)


def _scrub_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (REDACTED if k.lower() in SECRET_FIELDS and isinstance(v, str) else _scrub_json(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub_json(v) for v in value]
    return value


def _scrub_body(body: Any) -> Any:
    if body is None:
        return None
    raw = body if isinstance(body, bytes) else str(body).encode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return body
    with contextlib.suppress(ValueError):
        text = json.dumps(_scrub_json(json.loads(text)))
    text = scrub_text(text)
    return text.encode() if isinstance(body, bytes) else text


def _before_record_request(request: Any) -> Any:
    request.body = _scrub_body(request.body)
    request.uri = scrub_text(request.uri)
    return request


def _before_record_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers") or {}
    for name in list(headers):
        if name.lower() in SECRET_HEADERS:
            headers[name] = [REDACTED]
        else:
            headers[name] = [scrub_text(str(v)) for v in headers[name]]
    body = response.get("body") or {}
    if "string" in body:
        body["string"] = _scrub_body(body["string"])
    return response


def vcr_config(record_mode: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``vcr.VCR`` (also usable as pytest-recording's ``vcr_config``)."""
    mode = record_mode or os.environ.get("TAPYARD_RECORD") or "none"
    return {
        "record_mode": mode,
        "filter_headers": [(h, REDACTED) for h in SECRET_HEADERS],
        "filter_query_parameters": [(p, REDACTED) for p in SECRET_PARAMS],
        "filter_post_data_parameters": [(p, REDACTED) for p in SECRET_PARAMS],
        "before_record_request": _before_record_request,
        "before_record_response": _before_record_response,
        "decode_compressed_response": True,
        "match_on": ["method", "scheme", "host", "port", "path", "query"],
    }


@contextmanager
def cassette(path: str | os.PathLike[str], *, record_mode: str | None = None, **options: Any) -> Iterator[Any]:
    """Replay (or, with ``TAPYARD_RECORD``, record) the HTTP traffic of the block.

    Extra ``options`` go to ``vcr.VCR`` (for example ``match_on``).
    """
    import vcr

    config = {**vcr_config(record_mode), **options}
    target = Path(path)
    if config["record_mode"] == "none" and not target.exists():
        raise FileNotFoundError(
            f"cassette {target} does not exist; record it with TAPYARD_RECORD=all against an emulator"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with vcr.VCR(**config).use_cassette(str(target)) as recorded:
        yield recorded


# -- the pytest plugin ---------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "record: records cassettes against an emulator or the vendor; collected only "
        "when TAPYARD_RECORD is set (otherwise deselected, not skipped)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Recording tests are not tests of the code: leave them out unless recording."""
    if os.environ.get("TAPYARD_RECORD"):
        return
    recording = [item for item in items if item.get_closest_marker("record")]
    if recording:
        config.hook.pytest_deselected(items=recording)
        items[:] = [item for item in items if not item.get_closest_marker("record")]

#: Environment variables that point SDKs at fake accounts during tests.
FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "STRIPE_API_KEY": "sk_test_fake",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_CLIENT_SECRET": "fake",
    "GOOGLE_CLOUD_PROJECT": "test-project",
}
CLEARED_ENVIRONMENT = ("GOOGLE_APPLICATION_CREDENTIALS", "TAPYARD_VAULT_KEY", "TAPYARD_VAULT_PASSPHRASE")

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"tests may only connect to loopback, not {host!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _tapyard_network_guard() -> Iterator[None]:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _tapyard_isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from tapyard._plugins import reset_plugin_manager

    for name, value in FAKE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in CLEARED_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAPYARD_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("TAPYARD_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("TAPYARD_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("TAPYARD_QUIET", "1")
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def register_plugin() -> Iterator[Any]:
    """Register throwaway plugins for one test (datasette style); all are unregistered after."""
    from tapyard._plugins import register_plugin as _register
    from tapyard._plugins import unregister_plugin

    registered: list[str] = []

    def register(plugin: object, name: str) -> None:
        _register(plugin, name=name)
        registered.append(name)

    yield register
    for name in registered:
        with contextlib.suppress(ValueError):
            unregister_plugin(name=name)

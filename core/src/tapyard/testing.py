"""Testing helpers for connector authors: VCR cassettes scrubbed of secrets,
fake credentials, and the CLI run from a test.

::

    import tapyard
    from tapyard.testing import cassette, fake_credentials, run_cli

    def test_customers_replay(tmp_path):
        with cassette("cassettes/acme/customers.yaml"):
            result = tapyard.sync("acme", {}, credentials=fake_credentials("acme"),
                                  to=f"sqlite:///{tmp_path / 'out.db'}")
        assert result.ok

    def test_the_cli_lists_acme():
        result = run_cli("connectors", "list", "--json")
        assert result.exit_code == 0 and '"acme"' in result.stdout

``schema_drift(connector, config)`` reads each stream from the start against
an emulator (or a cassette) and reports every field the stream's schema would
drop, reject or change, so a test can fail on it.

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

Needs the ``testing`` extra (``pip install 'tapyard[testing]'``), which brings
vcrpy and pytest.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import ipaddress
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from tapyard._emulators import (
    AZURITE_ACCOUNT,
    Emulator,
    EmulatorNotInstalled,
    ThrottlingProxy,
    azurite,
    azurite_binary,
    azurite_connection_string,
    emulator_cache,
    fake_gcs_binary,
    fake_gcs_server,
    free_port,
    moto_server,
    moto_server_binary,
    stop_process,
    wait_until_ready,
)
from tapyard._scenario import (
    CHANGED_OBJECTS,
    check_changed,
    check_seeded,
    parquet_bytes,
    seeded_objects,
    sqlite_rows,
)
from tapyard.engine import (
    AWKWARD_ROW_SCHEMA,
    AWKWARD_ROWS,
    UNICODE,
    Drift,
    awkward_jsonl,
    schema_drift,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import Connector

__all__ = [
    "AWKWARD_ROWS",
    "AWKWARD_ROW_SCHEMA",
    "AZURITE_ACCOUNT",
    "CHANGED_OBJECTS",
    "SECRET_PATTERNS",
    "UNICODE",
    "CliResult",
    "Drift",
    "Emulator",
    "EmulatorNotInstalled",
    "ObjectStoreScenario",
    "PostgresServer",
    "RedisServer",
    "ServiceUnavailable",
    "ThrottlingProxy",
    "assert_same_value",
    "awkward_jsonl",
    "azurite",
    "azurite_binary",
    "azurite_connection_string",
    "cassette",
    "cassettes",
    "check_changed",
    "check_seeded",
    "emulator_cache",
    "fake_credentials",
    "fake_gcs_binary",
    "fake_gcs_server",
    "faulty",
    "first_interaction",
    "free_port",
    "landed_rows",
    "loopback_only",
    "moto_server",
    "moto_server_binary",
    "parquet_bytes",
    "postgres_bin_dir",
    "postgres_server",
    "redis_server",
    "run_cli",
    "schema_drift",
    "scrub_text",
    "seeded_objects",
    "service_missing",
    "sqlite_rows",
    "stop_process",
    "vcr_config",
    "wait_until_ready",
]

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
        parsed = json.loads(text)
        scrubbed = _scrub_json(parsed)
        if scrubbed != parsed:
            # Re-encoded only when a field was scrubbed: json turns 98765432109876.54
            # into a float and back, and a cassette must hold the vendor's digits.
            text = json.dumps(scrubbed)
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


def cassettes(
    folder: str | os.PathLike[str], *, mode: str = "replay", **options: Any
) -> Callable[[str | os.PathLike[str]], contextlib.AbstractContextManager[Any]]:
    """The cassettes of one folder: ``use(name)`` is a :func:`cassette` of ``folder/name``
    (a path stays as given) that replays it (``mode="replay"``), records it anew
    (``"record"``), or, ``"live"``, none at all (the test talks to its emulator)."""

    def use(name: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Any]:
        if mode == "live":
            return contextlib.nullcontext()
        path = Path(name) if Path(name).is_absolute() else Path(folder) / name
        return cassette(path, record_mode="all" if mode == "record" else "none", **options)

    return use


def fake_credentials(connector: str | Connector, kind: str | None = None, **fields: Any) -> BaseModel:
    """Credentials of ``kind`` for ``connector`` with a fake value in every required field.

    ``kind`` may be left out when the connector takes one kind of credential.
    Each required field the caller does not give gets ``"fake-<field>"``;
    optional fields keep their defaults; ``fields`` override either (give the
    field yourself where the model checks its shape, such as a key prefix).
    The result is what ``tapyard.sync(..., credentials=...)`` takes, and what a
    cassette replays against: no real account is ever reached with it.
    Raises ``ValueError`` when the kind is ambiguous or the values do not fit.
    """
    from pydantic import ValidationError

    from tapyard.base import describe_validation_error
    from tapyard.plugins import get_connector

    conn = get_connector(connector) if isinstance(connector, str) else connector
    takes = [k for k in conn.auth_kinds if k != "none"]
    if kind is None:
        if len(takes) != 1:
            raise ValueError(
                f"connector {conn.name!r} takes {', '.join(takes) or 'no'} credentials: pass kind="
            )
        kind = takes[0]
    model = conn.credential_model(kind)
    values: dict[str, Any] = {"kind": kind} if "kind" in model.model_fields else {}
    for name, info in model.model_fields.items():
        if name not in fields and name != "kind" and info.is_required():
            values[name] = f"fake-{name}"
    try:
        return model.model_validate({**values, **fields})
    except ValidationError as exc:
        raise ValueError(
            f"fake {kind} credentials for {conn.name!r} do not fit: "
            f"{describe_validation_error(exc, model=model)}; pass those fields to fake_credentials"
        ) from None


@dataclass(frozen=True)
class CliResult:
    """What :func:`run_cli` saw: the exit code and everything written to each stream."""

    exit_code: int
    stdout: str
    stderr: str


def _cli_entry_module() -> str:
    """The module of the ``tapyard`` console script (``tapyard.cli``)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="console_scripts", name="tapyard"):
        return ep.value.split(":", 1)[0]
    return "tapyard.cli"


def run_cli(*args: str, input: str = "") -> CliResult:
    """Run ``tapyard ARGS...`` in this process, as a shell would, and capture what it writes.

    It goes through the CLI's own entry point: plugin commands are added, an
    error is its one ``Error:`` line on stderr with exit code 1 (2 for a usage
    error), and ``--debug`` re-raises. ``input`` is standard input (for
    ``--from-json -``). Standard output and error are not terminals, so there
    are no prompts and no progress display.
    """
    # the console script's target, as a shell finds it: the CLI sits above this
    # module (it runs the conformance kit, which uses these helpers)
    main = importlib.import_module(_cli_entry_module()).main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(input)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as exc:  # a command that exits by itself
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = saved_stdin
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


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


def loopback_only(self: socket.socket, address: Any) -> Any:
    """``socket.connect`` refusing any address but loopback: the network guard of
    connector tests and of the conformance kit's replays."""
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
    socket.socket.connect = loopback_only  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _tapyard_isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from tapyard.plugins import reset_plugin_manager

    for name, value in FAKE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in CLEARED_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAPYARD_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("TAPYARD_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("TAPYARD_STRICT_PLUGINS", raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()
    # Secrets a test's vault registered with the process-wide redactor would
    # otherwise scrub later tests' cassette requests (scrub_text uses it) and
    # make them match nothing.
    from tapyard_credentials import redactor

    redactor.clear()


@pytest.fixture
def register_plugin() -> Iterator[Any]:
    """Register throwaway plugins for one test (datasette style); all are unregistered after."""
    from tapyard.plugins import register_plugin as _register
    from tapyard.plugins import unregister_plugin

    registered: list[str] = []

    def register(plugin: object, name: str) -> None:
        _register(plugin, name=name)
        registered.append(name)

    yield register
    for name in registered:
        with contextlib.suppress(ValueError):
            unregister_plugin(name=name)


# -- comparing what landed with what the source held ------------------------------


def landed_rows(url: str, stream: str, key: str = "id") -> dict[Any, dict[str, Any]]:
    """The rows of ``stream`` in the destination at ``url`` (``sqlite:///...``,
    ``postgresql://...``, ``duckdb:///...`` or ``jsonl:///...``), by their ``key``
    column, as stored: compare them with the source through
    :func:`assert_same_value`. JSON Lines numbers are read exactly (integers of
    any size, decimals as :class:`decimal.Decimal`); of a record written twice,
    the last line wins, as an upsert would. PostgreSQL's ``JSONB`` is read as its
    text (so that its numbers are read exactly too)."""
    import decimal
    import sqlite3

    from tapyard.destinations import url_path

    scheme = url.split(":", 1)[0]
    table = '"' + stream.replace('"', '""') + '"'
    if scheme in ("postgresql", "postgres"):
        import psycopg
        from psycopg.types.string import TextLoader

        with psycopg.connect(url) as pg:
            pg.adapters.register_loader("jsonb", TextLoader)
            cur = pg.execute(f"SELECT * FROM {table}")
            names = [d.name for d in cur.description or ()]
            return _exact({row[names.index(key)]: dict(zip(names, row, strict=True)) for row in cur.fetchall()})
    path = url_path(url, scheme)
    if scheme == "duckdb":
        import duckdb

        with duckdb.connect(path) as db:
            result = db.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in result.description or ()]
            return _exact({row[names.index(key)]: dict(zip(names, row, strict=True)) for row in result.fetchall()})
    if scheme == "sqlite":
        con = sqlite3.connect(path)
        con.row_factory = sqlite3.Row
        try:
            return {row[key]: dict(row) for row in con.execute(f"SELECT * FROM {table}")}
        finally:
            con.close()
    if scheme == "jsonl":
        out: dict[Any, dict[str, Any]] = {}
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            data = json.loads(line, parse_float=decimal.Decimal)
            if data.get("stream") == stream and "record" in data:
                out[data["record"][key]] = data["record"]
        return out
    raise ValueError(f"landed_rows reads sqlite, postgresql, duckdb and jsonl destinations, not {scheme!r}")


def _exact(rows: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Rows of a PostgreSQL or DuckDB table with each timestamp read as a whole: the
    text its ``<name>__exact`` column keeps (an offset, digits 7-9, no zone) in place
    of the ``TIMESTAMPTZ`` instant, and the ``__exact`` columns themselves left out."""
    for row in rows.values():
        for name in [n for n in row if n.endswith("__exact") and n[: -len("__exact")] in row]:
            text = row.pop(name)
            if text is not None:
                row[name[: -len("__exact")]] = text
    return rows


def assert_same_value(source: Any, landed: Any, where: str = "value") -> None:
    """Assert that ``landed`` (read back from a destination) is ``source``, value for value.

    What a destination may change is the representation, never the value
    (docs/types.md): an integer past 64 bits or a decimal may land as its exact
    text, a timestamp as tapyard's ISO text (its instant in UTC, its nine
    digits and its offset, all of which must match), bytes as a BLOB or base64 text, NaN and
    the infinities as ``"NaN"``/``"Infinity"``/``"-Infinity"``, a nested object or
    array as JSON text (parsed here with exact numbers), a set as a list. Anything
    else must be equal: ``10.10`` is not ``10.1``, ``""`` is not ``None``, a
    combining mark or a NUL must survive. Raises :class:`AssertionError` naming
    the path of the first difference (``where``).
    """
    import base64
    import datetime as dt
    import decimal
    import math

    from tapyard.base import nanoseconds_of, parse_timestamp

    def fail() -> None:
        raise AssertionError(f"{where}: source {source!r} landed as {landed!r}")

    if isinstance(source, dict | list | tuple | set | frozenset) and isinstance(landed, str | bytes):
        try:
            landed = json.loads(landed, parse_float=decimal.Decimal)
        except ValueError:
            fail()
    if source is None or isinstance(source, bool):
        if landed is not source and not (isinstance(source, bool) and landed in (0, 1) and bool(landed) is source):
            fail()
    elif isinstance(source, int):
        text = str(int(source))
        if not (
            (isinstance(landed, int) and not isinstance(landed, bool) and landed == source)
            or (isinstance(landed, str) and landed == text)
            or (isinstance(landed, decimal.Decimal) and landed == source and landed.as_tuple().exponent == 0)
        ):
            fail()
    elif isinstance(source, decimal.Decimal):
        if source.is_finite():
            if not (isinstance(landed, str | decimal.Decimal | int) and str(landed) == str(source)):
                fail()
        elif landed != ("NaN" if source.is_nan() else "-Infinity" if source.is_signed() else "Infinity"):
            fail()
    elif isinstance(source, float):
        if math.isnan(source):
            if not (landed == "NaN" or (isinstance(landed, float) and math.isnan(landed))):
                fail()
        elif math.isinf(source):
            if landed not in (source, "Infinity" if source > 0 else "-Infinity"):
                fail()
        elif not (isinstance(landed, float | int | decimal.Decimal) and float(landed) == source):
            fail()
    elif isinstance(source, str):
        if not (isinstance(landed, str) and landed == source):
            fail()
    elif isinstance(source, bytes):
        if isinstance(landed, str):
            try:
                landed = base64.b64decode(landed, validate=True)
            except ValueError:
                fail()
        if landed != source:
            fail()
    elif isinstance(source, dt.datetime):
        when = landed
        if isinstance(landed, str):
            try:
                when = parse_timestamp(landed)
            except ValueError:
                fail()
        if (
            not isinstance(when, dt.datetime)
            or (when.tzinfo is None) != (source.tzinfo is None)
            or when != source
            or when.utcoffset() != source.utcoffset()
            or nanoseconds_of(when) != nanoseconds_of(source)
        ):
            fail()
    elif isinstance(source, dt.date | dt.time):
        if landed != source and landed != source.isoformat():
            fail()
    elif isinstance(source, dict):
        if not isinstance(landed, dict) or set(map(str, source)) != set(landed):
            fail()
        for key, value in source.items():
            assert_same_value(value, landed[str(key)], f"{where}.{key}")
    elif isinstance(source, list | tuple):
        if not isinstance(landed, list) or len(landed) != len(source):
            fail()
        for i, (a, b) in enumerate(zip(source, landed, strict=True)):
            assert_same_value(a, b, f"{where}[{i}]")
    elif isinstance(source, set | frozenset):
        if not isinstance(landed, list) or len(landed) != len(source):
            fail()
        left = list(landed)
        for value in source:
            for i, candidate in enumerate(left):
                try:
                    assert_same_value(value, candidate, where)
                except AssertionError:
                    continue
                del left[i]
                break
            else:
                fail()
    elif landed != source:
        fail()


# -- a real PostgreSQL for tests ---------------------------------------------------


class ServiceUnavailable(RuntimeError):
    """A service a test needs (its server binary) is not installed on this machine."""


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server started by :func:`postgres_server`: trust authentication
    for ``user`` on ``host:port`` (loopback only), one database made for the caller."""

    host: str
    port: int
    user: str
    database: str
    data_dir: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        """``postgresql://user@host:port/database``: what ``--to`` and psycopg take."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of another database of this server."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create the database ``name`` (an identifier: letters, digits, underscores) and return its URL."""
        self._admin(f'CREATE DATABASE "{_identifier(name)}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop the database ``name``, closing any session still connected to it."""
        self._admin(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import subprocess

        subprocess.run(
            [str(self.bin_dir / "psql") if (self.bin_dir / "psql").exists() else "psql",
             "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", "postgres", "-c", sql],
            check=True, capture_output=True, timeout=60,
        )


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return name


def postgres_bin_dir() -> Path | None:
    """The folder of the newest PostgreSQL server binaries on this machine
    (``/usr/lib/postgresql/<version>/bin``, as Debian installs them, or
    ``initdb`` and ``postgres`` on the PATH), or None when there are none."""
    import shutil

    found = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            with contextlib.suppress(ValueError):
                found.append((float(candidate.parent.name), candidate))
    if found:
        return max(found)[1]
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres_server(
    database: str = "tapyard", *, settings: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server, yield it, and stop it (its files removed).

    ``initdb`` makes a cluster in a new temporary folder; ``postgres`` serves it on
    a free port of 127.0.0.1 only (and a Unix socket in that folder), with trust
    authentication for the user ``postgres``, and ``database`` created. Run as root
    (as CI is), the server runs as the ``postgres`` user (or ``nobody``), since
    PostgreSQL refuses to run as root. ``settings`` are passed as ``-c name=value``;
    by default the server does not fsync (a test's data need not survive a power cut;
    a killed client still loses nothing committed). Raises :class:`ServiceUnavailable`
    when no PostgreSQL binaries are installed (see :func:`postgres_bin_dir`).
    """
    import pwd
    import shutil
    import signal
    import subprocess
    import tempfile
    import time

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise ServiceUnavailable(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); "
            "apt-get install postgresql, as .ci/emulators-postgresql.sh does"
        )
    user: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                user = name
                break
    root = Path(tempfile.mkdtemp(prefix="tapyard-pg-"))
    data = root / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    as_user: dict[str, Any] = {"user": user} if user else {}
    log = root / "server.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, timeout=timeout, cwd=root, **as_user,
        )
        options = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", **(settings or {})}
        for attempt in range(5):
            port = _free_port()
            args = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
                    "-c", "listen_addresses=127.0.0.1"]
            for name, value in options.items():
                args += ["-c", f"{name}={value}"]
            with open(log, "ab") as out:
                process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=root, **as_user)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                ready = subprocess.run(
                    [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
                    capture_output=True, check=False,
                )
                if ready.returncode == 0:
                    break
                time.sleep(0.1)
            if process.poll() is None and time.monotonic() < deadline:
                break
            if process.poll() is None:
                process.kill()
                process.wait()
            if attempt == 4 or "could not bind" not in log.read_text(errors="replace"):
                raise ServiceUnavailable(f"PostgreSQL did not start: {log.read_text(errors='replace')[-500:]}")
        server = PostgresServer("127.0.0.1", port, "postgres", database, data, bin_dir)
        if database != "postgres":
            server.create_database(database)
        yield server
    finally:
        _stop_server(process, signal.SIGINT, 30.0)  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(root, ignore_errors=True)


def _stop_server(process: Any, sig: int, timeout: float) -> None:
    """Stop a test server's process with ``sig``, killing it after ``timeout`` seconds."""
    import subprocess

    if process is not None and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_missing(reason: str) -> None:
    """Skip the calling test because a service it needs is missing, or fail it when
    the machine is meant to have every service (``CI=true`` or
    ``TAPYARD_REQUIRE_EMULATORS=1``)."""
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("TAPYARD_REQUIRE_EMULATORS") == "1":
        pytest.fail(f"{reason} (and CI requires it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (see :func:`postgres_server`);
    the test skips when PostgreSQL is not installed, or fails under CI."""
    try:
        with postgres_server() as server:
            yield server
    except ServiceUnavailable as exc:
        service_missing(str(exc))


@dataclass(frozen=True)
class RedisServer:
    """A redis-server started by :func:`redis_server`, on ``host:port`` (loopback only)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return f"redis://{self.host}:{self.port}/0"


@contextlib.contextmanager
def redis_server(timeout: float = 30.0) -> Iterator[RedisServer]:
    """Start a throwaway redis-server (no persistence) on a free loopback port, yield
    it, and stop it. Raises :class:`ServiceUnavailable` when ``redis-server`` is not
    installed (``apt-get install redis-server``, as ``.ci/emulators-redis.sh`` does)."""
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable(
            "redis-server is not installed; apt-get install redis-server, as .ci/emulators-redis.sh does"
        )
    root = Path(tempfile.mkdtemp(prefix="tapyard-redis-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(5):
            port = _free_port()
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(root), "--protected-mode", "yes"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
                time.sleep(0.05)
            else:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if attempt == 4:
                    raise ServiceUnavailable("redis-server did not start")
                continue
            break
        yield RedisServer("127.0.0.1", port)
    finally:
        _stop_server(process, signal.SIGTERM, 10.0)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A redis-server for the whole test session (see :func:`redis_server`); the test
    skips when Redis is not installed, or fails under CI."""
    try:
        with redis_server() as server:
            yield server
    except ServiceUnavailable as exc:
        service_missing(str(exc))


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server, dropped after the test."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


def _emulator_fixture(name: str, run: Callable[[], contextlib.AbstractContextManager[str]]) -> Any:
    """A session fixture yielding the endpoint of the emulator ``run`` starts; the test
    skips when the emulator is not installed, or fails under CI."""

    @pytest.fixture(scope="session", name=name)
    def fixture() -> Iterator[str]:
        try:
            with run() as endpoint:
                yield endpoint
        except EmulatorNotInstalled as exc:
            service_missing(f"{exc} (.ci/run installs it)")

    fixture.__doc__ = f"The endpoint of {name.removesuffix('_endpoint')}'s emulator, for the whole session."
    return fixture


#: moto's server (AWS), Azurite's blob service and fake-gcs-server, one each per session
moto_endpoint = _emulator_fixture("moto_endpoint", moto_server)
azurite_endpoint = _emulator_fixture("azurite_endpoint", azurite)
gcs_endpoint = _emulator_fixture("gcs_endpoint", fake_gcs_server)


# -- the object-store scenario, as the aws, azure and gcp tests run it ---------------


class ObjectStoreScenario:
    """One object-store connector's run of the shared scenario (:func:`seeded_objects`,
    then :data:`CHANGED_OBJECTS`): live against its emulator, recorded into its
    cassettes, or replayed from them with faults injected.

    A connector's test module subclasses it with a few class attributes and the
    store's own :meth:`config`, :meth:`seed` and :meth:`put`, and its test functions
    call the methods, so that each connector's tests stay beside it, under their own
    names, against their own emulator and cassettes::

        class Scenario(ObjectStoreScenario):
            connector, location = "gcp", "bucket"
            objects, key, records = "blobs", "name", "blob_records"
            full_counts = {"buckets": (2, 0), "blobs": (5, 0), "blob_records": (6, 4)}
            incremental_objects = 3
            cassette_dir, replay_endpoint = Path("cassettes/gcp"), "http://127.0.0.1:50855"
            ...

        def test_replay_full_then_incremental(tmp_path):
            Scenario().replay_full_then_incremental(tmp_path)

    Runs under a cassette read one stream at a time (vcrpy is not thread-safe:
    interactions recorded from parallel workers get lost or mixed); live runs read
    them concurrently.
    """

    #: the connector's name
    connector: ClassVar[str]
    #: what the store calls a bucket (``"bucket"``, ``"container"``): the config field
    #: naming it, and the word of the error when it does not exist
    location: ClassVar[str] = "bucket"
    #: the stream of the objects (keyed by column ``key``) and the stream of their rows
    objects: ClassVar[str]
    key: ClassVar[str]
    records: ClassVar[str]
    #: (records, dead letters) of each stream after the full sync
    full_counts: ClassVar[Mapping[str, tuple[int, int]]]
    #: objects the incremental sync reads: the changed, the new, and those stamped at the cursor
    incremental_objects: ClassVar[int]
    #: the folder of the connector's cassettes, vcr's options for them, and the
    #: address they were recorded at
    cassette_dir: ClassVar[Path]
    vcr_options: ClassVar[Mapping[str, Any]] = {}
    replay_endpoint: ClassVar[str]
    #: seconds between seeding and the first sync: a pass commits no cursor later than
    #: the store's clock when it began, less ``tapyard.files.CLOCK_MARGIN_S`` and the
    #: Date header's truncation, so the first sync starts late enough for its cursor
    #: to reach the last seeded object (with a first request slow by up to a second)
    settle_s: ClassVar[float] = 4.1

    # -- the store's own part ----------------------------------------------------------

    def config(self, endpoint: str, **extra: Any) -> dict[str, Any]:
        """The connector's configuration for the store at ``endpoint``, with ``extra``."""
        raise NotImplementedError

    def credentials(self, endpoint: str) -> Any:
        """The credentials a sync of the store at ``endpoint`` takes (default none)."""
        return None

    def seed(self, endpoint: str) -> None:
        """Create the store's buckets and :meth:`put` :func:`seeded_objects` into one."""
        raise NotImplementedError

    def put(self, endpoint: str, objects: Iterable[tuple[str, bytes]]) -> None:
        """Write ``objects`` (``(key, body)``, in order) into the scenario's bucket."""
        raise NotImplementedError

    def change(self, endpoint: str) -> None:
        """Rewrite one object and add one (:data:`CHANGED_OBJECTS`), in a later
        second than the seed: listings give whole seconds."""
        time.sleep(1.1)
        self.put(endpoint, CHANGED_OBJECTS.items())

    def check_full(self, result: Any, db: Path) -> None:
        """What the full sync read and wrote (extend it for the store's other streams)."""
        assert result.ok, [(s.name, s.error) for s in result.streams]
        assert {s.name: (s.records, s.dead_letters) for s in result.streams} == dict(self.full_counts)
        check_seeded(db, self.objects, self.key, self.records)

    def check_incremental(self, result: Any, db: Path) -> None:
        """What the incremental sync after :meth:`change` read and wrote."""
        assert result.ok, [(s.name, s.error) for s in result.streams]
        counts = {s.name: s.records for s in result.streams}
        assert counts == {self.objects: self.incremental_objects, self.records: 4}
        check_changed(db, self.objects, self.records)

    # -- runs ------------------------------------------------------------------------

    def sync(self, endpoint: str, db: Path, *, serial: bool = False,
             streams: Sequence[str] | None = None, credentials: Any = None, **extra: Any) -> Any:
        """A sync of the store at ``endpoint`` into the SQLite file ``db``; ``extra`` goes
        to the configuration, ``credentials`` replace :meth:`credentials`'."""
        import tapyard

        return tapyard.sync(
            self.connector, self.config(endpoint, **extra), to=f"sqlite:///{db}", streams=streams,
            credentials=credentials if credentials is not None else self.credentials(endpoint),
            concurrency=1 if serial else 4,
        )

    def missing_location(self) -> dict[str, str]:
        """The configuration of a bucket that does not exist."""
        return {self.location: f"no-such-{self.location}"}

    def missing_error(self) -> str:
        return f"{self.location} 'no-such-{self.location}' does not exist"

    def run(self, endpoint: str, db: Path, *, record: bool = False) -> None:
        """Seed the emulator at ``endpoint``, sync, change, sync again, then a missing
        bucket; with ``record``, into the cassettes (old ones are replaced)."""
        recorded = cassettes(self.cassette_dir, mode="record" if record else "live", **self.vcr_options)
        self.seed(endpoint)
        time.sleep(self.settle_s)
        with recorded("full.yaml"):
            full = self.sync(endpoint, db, serial=record)
        self.check_full(full, db)
        self.change(endpoint)
        with recorded("incremental.yaml"):
            incremental = self.sync(endpoint, db, serial=record, streams=[self.objects, self.records])
        self.check_incremental(incremental, db)
        with recorded(f"missing_{self.location}.yaml"):
            missing = self.sync(
                endpoint, Path(f"{db}.missing"), serial=record, streams=[self.objects], **self.missing_location()
            )
        assert missing.streams[0].error == self.missing_error()

    def replay(self, name: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Any]:
        """Replay the cassette ``name`` (of :attr:`cassette_dir`, or a path)."""
        return cassettes(self.cassette_dir, **self.vcr_options)(name)

    def replay_full_then_incremental(self, tmp_path: Path) -> None:
        """The recorded full and incremental syncs, replayed, land what the live ones did."""
        db = tmp_path / "replay.db"
        with self.replay("full.yaml"):
            self.check_full(self.sync(self.replay_endpoint, db, serial=True), db)
        with self.replay("incremental.yaml"):
            result = self.sync(self.replay_endpoint, db, serial=True, streams=[self.objects, self.records])
        self.check_incremental(result, db)

    def replay_missing_location_on_the_cli(self, tmp_path: Path, *args: str) -> None:
        """``tapyard sync`` of a missing bucket (with ``args``, such as ``--creds``) fails
        with one line saying so, no traceback, and an empty table."""
        db = tmp_path / "m.db"
        config = self.config(self.replay_endpoint, **self.missing_location())
        with self.replay(f"missing_{self.location}.yaml"):
            result = run_cli(
                "sync", self.connector, *args, "--streams", self.objects, "--to", f"sqlite:///{db}",
                "-c", json.dumps(config),
            )
        assert result.exit_code == 1, result
        assert self.missing_error() in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert sqlite_rows(db, f"SELECT count(*) FROM {self.objects}") == [(0,)]

    def edited(self, tmp_path: Path, name: str, edit: Callable[[list[dict[str, Any]]], None]) -> Path:
        """A copy of ``full.yaml`` in ``tmp_path`` (as ``name``) whose interactions ``edit`` changed."""
        import yaml

        data = yaml.safe_load((self.cassette_dir / "full.yaml").read_text())
        edit(data["interactions"])
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    def replay_with_faults(self, tmp_path: Path, faults: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        """The full sync, replayed with each fault reply (``(needle, reply)``, see
        :func:`faulty`) answered once before the first request that mentions ``needle``:
        it must still land everything. Returns its result, for its HTTP figures."""

        def insert(interactions: list[dict[str, Any]]) -> None:
            for needle, reply in faults:
                index = first_interaction(interactions, needle)
                interactions.insert(index, {**copy.deepcopy(interactions[index]), "response": reply})

        db = tmp_path / "faults.db"
        with self.replay(self.edited(tmp_path, "faults.yaml", insert)):
            result = self.sync(self.replay_endpoint, db, serial=True)
        self.check_full(result, db)
        return result

    def replay_refused(self, tmp_path: Path, needle: str, reply: dict[str, Any], error: str) -> None:
        """The objects stream, replayed with the first request that mentions ``needle``
        answered ``reply`` (a refusal of the credentials), fails with ``error`` and
        writes nothing."""

        def refuse(interactions: list[dict[str, Any]]) -> None:
            index = first_interaction(interactions, needle)
            interactions[index] = {**copy.deepcopy(interactions[index]), "response": reply}

        db = tmp_path / "denied.db"
        with self.replay(self.edited(tmp_path, "denied.yaml", refuse)):
            result = self.sync(self.replay_endpoint, db, serial=True, streams=[self.objects])
        assert result.streams[0].status == "failed"
        assert result.streams[0].error == error
        assert sqlite_rows(db, f"SELECT count(*) FROM {self.objects}") == [(0,)]

    def assert_listing_imports_no(self, *packages: str) -> None:
        """Listing the connectors (in a fresh interpreter) imports none of ``packages``:
        the vendor's SDK is loaded when a sync needs it, not before."""
        import subprocess

        code = (
            f"import sys, tapyard; tapyard.collect_connectors(); packages = {sorted(packages)!r}; "
            "print(sorted(m for m in sys.modules for p in packages if m == p or m.startswith(p + '.')))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]", out


def faulty(status: int, body: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """A cassette reply of ``status`` with ``body`` and ``headers`` (Content-Length added),
    for :meth:`ObjectStoreScenario.replay_with_faults` and ``replay_refused``."""
    return {
        "status": {"code": status, "message": "fault"},
        "headers": {**{k: [v] for k, v in headers.items()}, "Content-Length": [str(len(body))]},
        "body": {"string": body},
    }


def first_interaction(interactions: Sequence[Mapping[str, Any]], needle: str) -> int:
    """The index of the first cassette interaction whose request's URI or body mentions ``needle``."""
    for index, interaction in enumerate(interactions):
        request = interaction["request"]
        if needle in request["uri"] or needle in str(request.get("body") or ""):
            return index
    raise AssertionError(f"no interaction with {needle!r}")

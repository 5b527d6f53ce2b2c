"""The files ``tapyard connectors new`` writes (``string.Template``: ``$name``, ``$$`` for a dollar)."""

from __future__ import annotations

_MODELS = '''\
class ${cls}Config(BaseModel):
    """What `tapyard sync $name -c ...` takes."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field("https://api.$name.example", description="The API's address.")
    page_size: int = Field(100, ge=1, le=500, description="Widgets per request.")


class Widget(BaseModel):
    """One widget, as the API sends it."""

    id: int
    name: str
    price: float | None = None
    updated_at: datetime


'''

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "$dist"
version = "0.1.0"
description = "$title for tapyard"
readme = "README.md"
license = "MIT"
requires-python = ">=3.11"
# the core versions this connector supports: the core warns when they do not match
dependencies = ["tapyard$core"]

[project.optional-dependencies]
test = ["tapyard[testing]$core"]

# tapyard finds the connector through this entry point, named after it
[project.entry-points.tapyard]
$name = "$package"

[tool.hatch.build.targets.wheel]
packages = ["src/$package"]

[tool.pytest.ini_options]
# tapyard.testing: a network guard (loopback only), fake credentials, a private TAPYARD_HOME
addopts = "-p tapyard.testing"
pythonpath = ["tests"]
testpaths = ["tests"]

# What the conformance kit (tapyard connectors test, pytest --tapyard-conformance) replays:
# the cassette, the configuration it was recorded with, and how requests are matched.
[tool.tapyard.conformance.$name]
cassette = "tests/cassettes/$name.yaml"
config = { base_url = "http://127.0.0.1:$port", page_size = 2 }
match_on = ["method", "path", "query"]
"""

MANIFEST = """\
# The contract users and the registry read without importing this package
# (tapyard connectors manifest-schema prints its JSON Schema). The version and the
# licence come from pyproject.toml. tapyard enforces the permissions at run time:
# a request to a host not listed here is refused before it leaves the machine.
plugin_api = 1
publisher = "$publisher"

[[connector]]
name = "$name"
display_name = "$title"
description = "$title widgets"
vendor = "$title"
categories = ["example"]
auth_kinds = $auth_kinds
support_level = "certified"
streams = [
    { name = "widgets", incremental = "cursor", deletes = "none" },
]

[connector.permissions]
# {config.base_url}: the host of the configured base URL (the API, or a stand-in)
hosts = ["{config.base_url}"]
files = false
environment = false
credentials = $credential_kinds
"""

REST_INIT = '''\
"""$dist: the $title API, as a declarative REST connector."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

import tapyard


''' + _MODELS + '''connector = tapyard.RestConnector(
    name="$name",
    description="$title widgets",
    base_url="{config.base_url}",
    config_model=${cls}Config,
    auth_kinds=$auth_kinds,
    paginator=$paginator,
    streams=[
        tapyard.RestStream(
            name="widgets",
            path="/v1/widgets",
            params={"limit": "{config.page_size}"},
            schema_model=Widget,
            cursor_field="updated_at",
            # the query parameter that asks for records changed after the saved cursor
            cursor_param="updated_after",
        ),
    ],
)


@tapyard.hookimpl
def tapyard_register_connectors(register):  # type: ignore[no-untyped-def]
    register(connector)
'''

SDK_INIT = '''\
"""$dist: the $title API, read through a client library (an SDK stream).

Replace ``Client`` with the vendor's SDK; keep every call inside ``_call`` so
that errors become one-line tapyard errors. Requests go through the HTTP
engine here, so the host permissions, retries and rate limits apply.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import tapyard


''' + _MODELS + '''class ${cls}Source(tapyard.Source):
    """One run: reads widgets page by page, resumable after any page."""

    def __init__(self, config: ${cls}Config, engine: tapyard.HttpEngine, streams: list[tapyard.Stream]) -> None:
        self.config = config
        self.engine = engine
        self._streams = streams

    def streams(self) -> list[tapyard.Stream]:
        return list(self._streams)

    @property
    def http_stats(self) -> Mapping[str, int]:
        return self.engine.stats.as_dict()

    def check(self) -> None:
        self.engine.get_json("/v1/widgets", params={"limit": 1})

    def read(
        self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Mapping[str, Any]
    ) -> Iterator[tapyard.Page]:
        params: dict[str, Any] = {"limit": self.config.page_size}
        since = stream.since(state)
        if since is not None:
            params["updated_after"] = since.isoformat() if isinstance(since, datetime) else since
        request = state.resume or tapyard.PageRequest("/v1/widgets", params)
        while True:
            body, _ = self.engine.get_json(request.url, params=request.params)
            records = list(body.get("data") or [])
            following = None
            if body.get("has_more") and records:
                following = tapyard.PageRequest(request.url, {**request.params, "starting_after": records[-1]["id"]})
            yield tapyard.Page(records=records, resume=following)
            if following is None:
                return
            request = following


class ${cls}Connector(tapyard.Connector):
    name = "$name"
    description = "$title widgets"
    config_model = ${cls}Config
    auth_kinds = $auth_kinds

    def streams(self, config: BaseModel) -> list[tapyard.Stream]:
        return [tapyard.Stream(name="widgets", schema_model=Widget, cursor_field="updated_at")]

    @contextlib.contextmanager
    def open(self, config: BaseModel, context: tapyard.RunContext) -> Iterator[tapyard.Source]:
        assert isinstance(config, ${cls}Config)
        if context.credentials is None and "none" not in self.auth_kinds:
            raise tapyard.ConfigError(
                "connector '$name' needs credentials: store them with tapyard creds add NAME "
                "--connector $name, then pass --creds NAME"
            )
        auth = context.pm.hook.tapyard_auth_strategy(connector=self, config=config, credentials=context.credentials)
        with tapyard.HttpEngine(config.base_url, auth=auth, hosts=context.hosts, policy=tapyard.HttpPolicy(**context.http)) as engine:
            yield ${cls}Source(config, engine, self.streams(config))


connector = ${cls}Connector()


@tapyard.hookimpl
def tapyard_register_connectors(register):  # type: ignore[no-untyped-def]
    register(connector)
'''

STAND_IN = '''\
"""A stand-in for the $title API on 127.0.0.1, to record cassettes and test without an account.

It speaks what the connector expects: $credential_help on every request,
`limit` and `updated_after`, and $paginator_kind pagination.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

#: the port cassettes are recorded on; [tool.tapyard.conformance] replays with the same base_url
RECORD_PORT = $port
#: match requests without their host: a cassette replays whatever address recorded it
MATCH = ["method", "path", "query"]

WIDGETS = [
    {"id": 1, "name": "sprocket", "price": 9.5, "updated_at": "2024-01-01T00:00:00Z"},
    {"id": 2, "name": "flange", "price": None, "updated_at": "2024-01-02T00:00:00Z"},
    {"id": 3, "name": "gasket", "price": 0.25, "updated_at": "2024-01-03T00:00:00Z"},
]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if not ($auth_check):
            return self._send(401, {"error": {"message": "missing or wrong credentials"}})
        if url.path != "/v1/widgets":
            return self._send(404, {"error": {"message": "no such endpoint"}})
        rows = list(WIDGETS)
        if "updated_after" in query:
            rows = [w for w in rows if _when(w["updated_at"]) > _when(query["updated_after"])]
        size = int(query.get("limit") or query.get("per_page") or 100)
        if "starting_after" in query:
            rows = [w for w in rows if w["id"] > int(query["starting_after"])]
        start = int(query.get("offset", 0)) + (int(query.get("page", 1)) - 1) * size
        page = rows[start : start + size]
        body: dict[str, Any] = {"data": page, "has_more": len(rows) > start + size}
        if body["has_more"]:
            after = {**query, "offset": str(start + size)}
            body["next"] = f"http://{self.headers['Host']}{url.path}?{urlencode(after)}"
        self._send(200, body)

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class StandIn:
    """``with StandIn() as url:`` serves the API at ``url`` for the block (a free port by default)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port

    def __enter__(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def record(path: Path, tmp: Path | None = None) -> Path:
    """Record ``path``: a full read, then an incremental read from its state, against the stand-in."""
    import tempfile

    import tapyard
    from tapyard.testing import cassette, fake_credentials

    path.unlink(missing_ok=True)  # vcr would add to an old cassette
    conn = tapyard.get_connector("$name")
    credentials = fake_credentials(conn) if "none" not in conn.auth_kinds else None
    with tempfile.TemporaryDirectory() as scratch, StandIn(RECORD_PORT) as url:
        db = f"sqlite:///{Path(tmp or scratch) / 'record.db'}"
        config = {"base_url": url, "page_size": 2}
        with cassette(path, record_mode="all", match_on=MATCH):
            full = tapyard.sync("$name", config, credentials=credentials, to=db)
            incremental = tapyard.sync("$name", config, credentials=credentials, to=db)
    assert full.ok and full.records == len(WIDGETS), full
    assert incremental.ok and incremental.records == 0, incremental
    return path
'''

TESTS = '''\
"""$dist: replayed from its cassette, live against the stand-in, and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stand_in import MATCH, WIDGETS, StandIn, record

import tapyard
from tapyard.testing import cassette, fake_credentials, run_cli

CASSETTE = Path(__file__).parent / "cassettes" / "$name.yaml"
REPLAY = {"base_url": "http://127.0.0.1:$port", "page_size": 2}


def credentials():  # type: ignore[no-untyped-def]
    conn = tapyard.get_connector("$name")
    return fake_credentials(conn) if "none" not in conn.auth_kinds else None


@pytest.mark.record  # runs only with TAPYARD_RECORD set: TAPYARD_RECORD=all python -m pytest -m record
def test_record_the_cassette(tmp_path: Path) -> None:
    record(CASSETTE, tmp_path)


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'replay.db'}"
    with cassette(CASSETTE, match_on=MATCH):
        full = tapyard.sync("$name", REPLAY, credentials=credentials(), to=db)
        again = tapyard.sync("$name", REPLAY, credentials=credentials(), to=db)
    assert full.ok, [s.error for s in full.streams]
    assert full.records == len(WIDGETS) and full.http["requests"] == 2
    assert again.ok and again.records == 0  # nothing changed since the cursor


def test_live_against_the_stand_in(tmp_path: Path) -> None:
    with StandIn() as url:
        result = tapyard.sync("$name", {"base_url": url, "page_size": 2}, credentials=credentials(),
                              to=f"sqlite:///{tmp_path / 'live.db'}")
    assert result.ok and result.records == len(WIDGETS)


def test_listed_as_its_manifest_says() -> None:
    result = run_cli("connectors", "list", "--check", "--json")
    assert result.exit_code == 0, result.stderr
    listed = next(c for c in json.loads(result.stdout) if c["name"] == "$name")
    assert listed["streams"] == ["widgets"] and listed["auth_kinds"] == $auth_kinds
'''

README = """\
# $dist

A [tapyard](https://github.com/tapyard/tapyard) connector for the $title API.

## Streams

| stream | primary key | incremental | deletes |
|---|---|---|---|
| `widgets` | `id` | on `updated_at` (`?updated_after=`) | not reported |

## Configuration

| field | default | meaning |
|---|---|---|
| `base_url` | `https://api.$name.example` | the API's address |
| `page_size` | `100` | widgets per request |

## Credentials

$credential_help. Store them once and name them at run time:

```sh
tapyard creds add $name-prod --connector $name
tapyard sync $name --creds $name-prod --to sqlite:///$name.db
```

## Permissions

The manifest (`src/$package/tapyard-manifest.toml`) lets the connector call the
host of `base_url` and nothing else; tapyard refuses any other request before
it leaves the machine.

## Development

```sh
python -m venv .venv && .venv/bin/pip install -e '.[test]'
.venv/bin/python -m pytest                          # replays tests/cassettes, offline
TAPYARD_RECORD=all .venv/bin/python -m pytest -m record   # re-record against the stand-in
.venv/bin/tapyard connectors test .                 # the conformance kit the registry runs
```

To record against the real API instead of `tests/stand_in.py`, point `record()`
at it with a real credential: the cassette is scrubbed of credentials before it
is written.
"""

CASSETTES_README = """\
# Cassettes

`$name.yaml` was recorded by `tests/stand_in.py`'s `record()` against the stand-in
on 127.0.0.1:$port: a full read of every stream, then an incremental read from its
state. Re-record with `TAPYARD_RECORD=all python -m pytest -m record`. Every
credential is scrubbed before a cassette is written.
"""

GITIGNORE = """\
.venv/
__pycache__/
*.db
dist/
"""

CI = """\
name: ci
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: pip install -e '.[test]'
      - run: python -m pytest
      - run: tapyard connectors test .
"""

"""Error messages: no record data from a response body, and the cause of an open circuit.

A vendor that answers 200 with a truncated (or otherwise unparseable) JSON body
holds customer data in that body. The error quotes the status, the URL without
secrets, and nothing of the body; error bodies (4xx/5xx) are quoted only as a
bounded, redacted excerpt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

import tapyard
from tapyard.cli import main

from .scripted_server import Reply, ScriptedServer

CANARY = "CANARY-4f1c-jane.doe@example.com"


def _truncated_page(prefix: str = '{"object": "list", "has_more": false, "data": [') -> bytes:
    record = {"id": "cus_1", "object": "customer", "email": CANARY, "name": CANARY, "description": CANARY * 20}
    body = prefix + ", ".join(json.dumps(record) for _ in range(50))
    return body[: len(body) // 2].encode()  # cut mid-record: not JSON


class Widget(BaseModel):
    id: str


def _rest_connector(base_url: str) -> tapyard.RestConnector:
    return tapyard.RestConnector(
        name="privacy",
        base_url=base_url,
        paginator=tapyard.SinglePage(),
        streams=[tapyard.RestStream(name="widgets", path="/v1/widgets", schema_model=Widget)],
    )


def _no_canary(text: str) -> None:
    assert CANARY not in text
    assert "jane.doe" not in text
    assert "cus_1" not in text


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=200, headers=[("content-type", "application/json")], body=_truncated_page()),
        Reply(status=200, headers=[("content-type", "text/plain")], body=CANARY * 10),
    ],
    ids=["truncated-json", "text"],
)
def test_a_2xx_body_that_fails_to_parse_is_not_quoted(
    register_plugin: object, tmp_path: Path, reply: Reply
) -> None:
    with ScriptedServer() as server:
        server.always("/v1/widgets", reply)
        connector = _rest_connector(server.url)
        result = tapyard.sync(
            connector, {}, to=f"sqlite:///{tmp_path / 'p.db'}", http={"max_attempts": 2, "backoff_base": 0.01}
        )
    assert not result.ok
    error = result.streams[0].error or ""
    assert "200" in error and "/v1/widgets" in error, error
    _no_canary(error)
    _no_canary(json.dumps(result.to_json()))


def test_an_error_body_is_a_bounded_redacted_excerpt(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        body = json.dumps({"error": {"message": "No such customer"}, "customer": {"email": CANARY}})
        server.always("/v1/widgets", Reply(status=404, headers=[("content-type", "application/json")], body=body))
        result = tapyard.sync(_rest_connector(server.url), {}, to=f"sqlite:///{tmp_path / 'p.db'}")
        error = result.streams[0].error or ""
        assert "404" in error and "No such customer" in error
        _no_canary(error)
        server.always("/v1/widgets", Reply(status=500, headers=[("content-type", "text/plain")], body=CANARY * 500))
        result = tapyard.sync(
            _rest_connector(server.url), {}, to=f"sqlite:///{tmp_path / 'p.db'}",
            http={"max_attempts": 1},
        )
        error = result.streams[0].error or ""
        assert "500" in error and len(error) < 600, error


def test_stripe_truncated_200_in_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPYARD_VAULT_KEY", "k" * 43 + "=")
    monkeypatch.setenv("PRIV_API_KEY", "sk_test_" + "a" * 24)
    assert main(["creds", "add", "st", "--connector", "stripe", "--from-env", "PRIV_"]) == 0, capsys.readouterr()
    capsys.readouterr()
    with ScriptedServer() as server:
        server.always(
            "/v1/customers", Reply(status=200, headers=[("content-type", "application/json")], body=_truncated_page())
        )
        config = json.dumps({"api_base": server.url, "max_network_retries": 2})
        code = main(["sync", "stripe", "--creds", "st", "-c", config, "--streams", "customers", "--to", f"sqlite:///{tmp_path / 's.db'}"])
        out, err = capsys.readouterr()
        code_json = main(
            ["sync", "stripe", "--creds", "st", "-c", config, "--streams", "customers", "--to", f"sqlite:///{tmp_path / 's.db'}", "--json"]
        )
        out_json, err_json = capsys.readouterr()
    assert code == 1 and code_json == 1
    assert "/v1/customers" in err and "200" in err, err
    for text in (out, err, out_json, err_json):
        _no_canary(text)


def test_the_open_circuit_names_its_cause(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = tapyard.RestConnector(
        name="down",
        base_url=f"http://127.0.0.1:{port}",
        paginator=tapyard.SinglePage(),
        streams=[tapyard.RestStream(name=f"w{i}", path=f"/v1/w{i}", schema_model=Widget) for i in range(3)],
    )
    result = tapyard.sync(
        connector, {}, to=f"sqlite:///{tmp_path / 'c.db'}", concurrency=1,
        http={"backoff_base": 0.001, "backoff_max": 0.01},
    )
    errors = [s.error or "" for s in result.streams]
    opened = [e for e in errors if "circuit breaker is open" in e]
    assert opened, errors
    for error in opened:
        assert f"connection refused to 127.0.0.1:{port}" in error.split("the last:")[1], error

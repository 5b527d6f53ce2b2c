"""Cassettes: recorded through a real HTTP server, scrubbed of secrets, replayed offline."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tapyard.testing import cassette, scrub_text
from tests.scripted_server import Reply, ScriptedServer

SECRETS = {
    "stripe": "sk_live_" + "a1B2c3D4e5F6g7H8",
    "aws": "AKIA" + "ABCDEFGHIJKLMNOP",
    "jwt": "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0." + "c2lnbmF0dXJlc2lnbmF0dXJl",
    "token": "tok-" + "ZXhhbXBsZXRva2VudmFsdWU",
}


def test_recording_scrubs_and_replay_needs_no_server(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    body = {"access_token": SECRETS["token"], "data": [{"id": 1, "note": f"key {SECRETS['stripe']}"}]}
    with ScriptedServer() as server:
        server.always("/v1/things", Reply.json(body, headers={"Set-Cookie": "session=abc"}))
        with cassette(path, record_mode="all"):
            response = httpx.get(
                f"{server.url}/v1/things",
                params={"api_key": SECRETS["aws"], "limit": "2"},
                headers={"Authorization": f"Bearer {SECRETS['jwt']}"},
            )
        assert response.json() == body
        url = server.url
    text = path.read_text()
    for secret in SECRETS.values():
        assert secret not in text
    assert "REDACTED" in text and "limit=2" in text

    with cassette(path):  # replay: the server is gone
        again = httpx.get(f"{url}/v1/things", params={"api_key": "REDACTED", "limit": "2"})
    assert again.json()["data"][0]["id"] == 1
    assert again.json()["access_token"] == "REDACTED"


def test_replay_refuses_unrecorded_requests(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="TAPYARD_RECORD"), cassette(tmp_path / "missing.yaml"):
        pass


def test_scrub_text_patterns() -> None:
    text = json.dumps(SECRETS) + " Signature=" + "ab" * 32
    scrubbed = scrub_text(text)
    for secret in (SECRETS["stripe"], SECRETS["aws"], SECRETS["jwt"]):
        assert secret not in scrubbed
    assert "ab" * 32 not in scrubbed


def test_engine_sync_replays_from_a_cassette(tmp_path: Path) -> None:
    """The HTTP engine (streamed reads, own redirects) records and replays through vcrpy."""
    from tapyard import HttpEngine

    path = tmp_path / "engine.yaml"
    with ScriptedServer() as server:
        server.always("/a", Reply.json({"data": [1, 2]}))
        with cassette(path, record_mode="all"), HttpEngine(server.url) as http:
            body, _ = http.get_json("/a", params={"x": "1"})
        url = server.url
    assert body == {"data": [1, 2]}
    with cassette(path), HttpEngine(url) as http:
        replayed, response = http.get_json("/a", params={"x": "1"})
    assert replayed == body and response.status_code == 200

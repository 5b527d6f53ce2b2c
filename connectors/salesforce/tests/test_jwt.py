"""tapyard-salesforce with the OAuth 2.0 JWT bearer flow (the ``jwt_bearer``
auth kind): replays of a login recorded against the local fake
(cassettes/salesforce/jwt*.yaml), live runs against the fake, which checks the
RS256 signature against the connected app's certificate and the claims, the
vault and CLI path, and leak checks on cassettes and output.

Re-record: ``TAPYARD_RECORD=all .venv/bin/pytest connectors/salesforce/tests -m record``
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.cli import main
from tapyard.testing import cassette
from tapyard_salesforce.testing import FakeSalesforce, connected_app_key, jwt_credentials, recording

CASSETTES = Path(__file__).parents[3] / "cassettes" / "salesforce"
RECORD_PORT = 8421
CONFIG: dict[str, Any] = {
    "login_url": f"https://127.0.0.1:{RECORD_PORT}", "sobjects": ["Contact"], "batch_size": 200, "retry_backoff_s": 0.01,
}
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@pytest.fixture(scope="module")
def key() -> str:
    """A private key for replays: the recorded replies do not depend on it, the signing does."""
    return connected_app_key()[0]


def _key_lines(private_key: str) -> list[str]:
    """The base64 lines of a PEM key: none may appear anywhere."""
    return [line for line in private_key.splitlines() if line and not line.startswith("-----")]


def _assert_clean(text: str, private_key: str, assertions: Sequence[str] = ()) -> None:
    assert "PRIVATE KEY" not in text and JWT.search(text) is None
    for line in _key_lines(private_key):
        assert line not in text
    for assertion in assertions:
        assert assertion not in text and assertion.split(".")[2] not in text


@pytest.mark.record
def test_record_jwt_logins_against_the_fake(tmp_path: Path) -> None:
    with recording(CASSETTES, ("jwt.yaml", "jwt_refused.yaml"), RECORD_PORT, accounts=5, contacts=30) as org:
        assert org.jwt_private_key is not None
        config = {**CONFIG, "ca_bundle": org.ca_bundle}
        with cassette(CASSETTES / "jwt.yaml", record_mode="all"):
            result = tapyard.sync("salesforce", config, credentials=jwt_credentials(org.jwt_private_key),
                                  to=f"sqlite:///{tmp_path}/jwt.db", concurrency=1)
        assert result.ok and result.streams[0].records == 30, [s.error for s in result.streams]
        untrusted = connected_app_key()[0]  # a key whose certificate the connected app does not hold
        with cassette(CASSETTES / "jwt_refused.yaml", record_mode="all"), pytest.raises(tapyard.AuthenticationError):
            tapyard.sync("salesforce", config, credentials=jwt_credentials(untrusted), to=f"sqlite:///{tmp_path}/x.db")
        assert len(org.assertions) == 2
        for name in ("jwt.yaml", "jwt_refused.yaml"):
            _assert_clean((CASSETTES / name).read_text(), org.jwt_private_key + untrusted, org.assertions)


def test_replayed_jwt_login_then_sync(tmp_path: Path, key: str) -> None:
    with cassette(CASSETTES / "jwt.yaml"):
        result = tapyard.sync("salesforce", CONFIG, credentials=jwt_credentials(key),
                              to=f"sqlite:///{tmp_path}/jwt.db", concurrency=1)
    assert result.ok, [s.error for s in result.streams]
    assert [(s.name, s.records) for s in result.streams] == [("Contact", 30)]
    recorded = (CASSETTES / "jwt.yaml").read_text()
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=REDACTED" in recorded
    _assert_clean(recorded, key)


def test_replayed_bad_signature_is_one_line(tmp_path: Path, key: str) -> None:
    with cassette(CASSETTES / "jwt_refused.yaml"), pytest.raises(tapyard.AuthenticationError) as caught:
        tapyard.sync("salesforce", CONFIG, credentials=jwt_credentials(key), to=f"sqlite:///{tmp_path}/x.db")
    message = str(caught.value)
    assert message.startswith("POST https://127.0.0.1:8421/services/oauth2/token was refused: 400; check the credential")
    assert message.endswith("(Salesforce said: invalid_grant: invalid assertion)")
    assert "certificate uploaded to the connected app must match private_key" in message
    assert "\n" not in message
    _assert_clean(message, key)


def test_live_jwt_claims_are_checked_and_a_new_assertion_signs_each_login(tmp_path: Path) -> None:
    org = FakeSalesforce(0, accounts=3, contacts=4)
    try:
        assert org.jwt_private_key is not None
        config = {"login_url": org.url, "ca_bundle": org.ca_bundle, "sobjects": ["Contact"], "retry_backoff_s": 0.01}
        db = f"sqlite:///{tmp_path}/live.db"
        first = tapyard.sync("salesforce", config, credentials=jwt_credentials(org.jwt_private_key), to=db)
        assert first.ok and first.streams[0].records == 4
        org.revoke_sessions()  # INVALID_SESSION_ID: log in again with a freshly signed assertion
        again = tapyard.sync("salesforce", config, credentials=jwt_credentials(org.jwt_private_key), to=db,
                             full_refresh=True)
        assert again.ok and again.streams[0].records == 4
        assert len(set(org.assertions)) == len(org.assertions) == 2
        claims = json.loads(base64.urlsafe_b64decode(org.assertions[0].split(".")[1] + "=="))
        assert claims["iss"] == FakeSalesforce.CLIENT_ID and claims["sub"] == FakeSalesforce.USERNAME
        assert claims["aud"] == org.url and 0 < claims["exp"] - claims["iat"] <= 180

        refusals = {
            "invalid_grant: invalid assertion": jwt_credentials(connected_app_key()[0]),
            "invalid_grant: audience is invalid": jwt_credentials(org.jwt_private_key, audience="https://login.salesforce.com"),
            "invalid_grant: user hasn't approved this consumer": jwt_credentials(org.jwt_private_key, username="x@example.test"),
            "invalid_client_id: client identifier invalid": jwt_credentials(org.jwt_private_key, client_id="3MVG9other"),
        }
        for said, creds in refusals.items():
            with pytest.raises(tapyard.AuthenticationError) as caught:
                tapyard.sync("salesforce", config, credentials=creds, to=db)
            assert str(caught.value).endswith(f"(Salesforce said: {said})")
            _assert_clean(str(caught.value), org.jwt_private_key, org.assertions)
        with pytest.raises(tapyard.ConfigError) as caught:
            tapyard.sync("salesforce", config, credentials=jwt_credentials("-----BEGIN PRIVATE KEY-----\nnope\n"), to=db)
        assert str(caught.value) == "the private_key of credential '(unnamed)' cannot sign a RS256 assertion (ValueError)"
    finally:
        org.stop()


def test_the_default_audience_follows_salesforce_rules() -> None:
    from tapyard_salesforce._connector import audience

    assert audience("https://login.salesforce.com/") == "https://login.salesforce.com"
    assert audience("https://test.salesforce.com") == "https://test.salesforce.com"
    assert audience("https://acme.my.salesforce.com") == "https://login.salesforce.com"
    assert audience("https://acme--uat.sandbox.my.salesforce.com") == "https://test.salesforce.com"
    assert audience("https://acme.my.site.com/customers") == "https://acme.my.site.com/customers"


def test_cli_with_a_vault_jwt_credential_leaks_nothing(
    tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tapyard_credentials import generate_key

    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    fields = {"client_id": FakeSalesforce.CLIENT_ID, "username": FakeSalesforce.USERNAME, "private_key": key}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(fields)))
    assert main(["creds", "add", "sf-jwt", "--connector", "salesforce", "--kind", "jwt_bearer", "--from-json", "-"]) == 0
    assert main(["creds", "show", "sf-jwt", "--json"]) == 0
    shown = capsys.readouterr()
    args = ["sync", "salesforce", "--creds", "sf-jwt", "-c", json.dumps(CONFIG), "--json"]
    with cassette(CASSETTES / "jwt.yaml"):
        assert main([*args, "--to", f"sqlite:///{tmp_path}/ok.db"]) == 0
    ok = capsys.readouterr()
    assert [(s["name"], s["records"]) for s in json.loads(ok.out)["streams"]] == [("Contact", 30)]
    with cassette(CASSETTES / "jwt_refused.yaml"):
        assert main([*args, "--to", f"sqlite:///{tmp_path}/refused.db"]) == 1
    refused = capsys.readouterr()
    assert refused.err.strip().endswith("(Salesforce said: invalid_grant: invalid assertion)")
    assert len(refused.err.strip().splitlines()) == 1 and "Traceback" not in refused.err
    for text in (shown.out, shown.err, ok.out, ok.err, refused.out, refused.err):
        _assert_clean(text, key)

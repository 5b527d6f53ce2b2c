"""Token refresh across a fleet (issue 18 item 5): 8 workers on "different machines"
refresh one rotating OAuth credential at once, with not one ``invalid_grant``.

Each worker is a process with a vault of its own over one shared backend (AWS
Secrets Manager, moto's server) and its own state folder, so the file locks that
bind one machine's processes do not bind them: they stand for 8 machines. The
authorization server revokes a refresh token on its first use. With the vault's
fleet locks in a real redis-server (or PostgreSQL), the 8 workers take turns and
every refresh adopts or spends the newest token; the control run without them
shows the race is real (a refresh token spent twice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapyard import OAuth2AuthorizationCodeAuth
from tapyard.testing import PostgresServer, RedisServer
from tapyard_credentials import (
    AwsSecretsManagerBackend,
    LockTimeoutError,
    RedisLocks,
    Vault,
    VaultTokenStore,
)
from tapyard_sample import LocalAuthorizationServer, OAuthClient

NAME = "acme-user"
WORKERS = 8
ROUNDS = 4

WORKER = r"""
import json, os, sys, time
from pathlib import Path
from tapyard import AuthenticationError, OAuth2AuthorizationCodeAuth
from tapyard_credentials import AwsSecretsManagerBackend, Redactor, Vault, VaultTokenStore, locks_from_url

endpoint, state, go, rounds = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
backend = AwsSecretsManagerBackend(region="us-east-1", endpoint_url=endpoint, state_dir=state)
vault = Vault(backend, redactor=Redactor(), locks=locks_from_url(os.environ.get("LOCK_URL")))
store = VaultTokenStore(vault, "acme-user", connector="acme")
known = OAuth2AuthorizationCodeAuth.Options.model_fields
options = OAuth2AuthorizationCodeAuth.Options.model_validate(
    {k: v for k, v in store.load().items() if k in known} | {"name": "acme-user"})
strategy = OAuth2AuthorizationCodeAuth(options, store)
(state / "ready").touch()
while not go.exists():
    time.sleep(0.005)
errors = []
for _ in range(rounds):
    try:
        strategy.refresh()
    except AuthenticationError as exc:
        errors.append(str(exc)[:200])
print(json.dumps({"errors": errors, "grants": strategy.stats["grants"], "adopted": strategy.stats["adopted"]}))
"""


@pytest.fixture
def auth_server() -> Iterator[LocalAuthorizationServer]:
    client = OAuthClient("public", None, redirect_uris=("http://127.0.0.1/callback",))
    with LocalAuthorizationServer([client], access_token_ttl=1) as running:
        yield running


@pytest.fixture
def secrets_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from tapyard.testing import service_missing
    from tapyard_aws.testing import moto_server, moto_server_binary

    if not moto_server_binary():
        service_missing("moto_server is not installed (pip install 'moto[server]')")
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    with moto_server() as endpoint:
        yield endpoint


def _browser(url: str) -> None:
    threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()


def _seed(endpoint: str, state: Path, server: LocalAuthorizationServer) -> None:
    backend = AwsSecretsManagerBackend(region="us-east-1", endpoint_url=endpoint, state_dir=state)
    with Vault(backend) as vault:
        vault.put(
            NAME,
            connector="acme",
            kind="oauth2_authorization_code",
            fields={"authorize_url": server.authorize_url, "token_url": server.token_url, "client_id": "public"},
        )
        store = VaultTokenStore(vault, NAME, connector="acme")
        options = OAuth2AuthorizationCodeAuth.Options(
            authorize_url=server.authorize_url, token_url=server.token_url, client_id="public", name=NAME
        )
        OAuth2AuthorizationCodeAuth(options, store).login(open_browser=_browser, timeout=10)


def _fleet(endpoint: str, tmp_path: Path, lock_url: str | None) -> list[dict[str, Any]]:
    go = tmp_path / "go"
    procs, states = [], []
    env = {**os.environ}
    env.pop("LOCK_URL", None)
    if lock_url:
        env["LOCK_URL"] = lock_url
    for i in range(WORKERS):
        state = tmp_path / f"machine-{i}"  # a state folder, so a file lock, of its own
        state.mkdir()
        states.append(state)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, endpoint, str(state), str(go), str(ROUNDS)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))
    deadline = time.monotonic() + 60
    while not all((s / "ready").exists() for s in states):
        failed = [p.stderr.read().decode()[-800:] for p in procs if p.poll() is not None and p.stderr]
        assert not failed and time.monotonic() < deadline, failed
        time.sleep(0.02)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out))
    return results


def test_eight_machines_refresh_one_rotating_credential_without_invalid_grant(
    auth_server: LocalAuthorizationServer, secrets_endpoint: str, redis: RedisServer, tmp_path: Path
) -> None:
    _seed(secrets_endpoint, tmp_path / "seed", auth_server)
    time.sleep(1.1)  # the access token from the login has expired: every worker must refresh
    (tmp_path / "fleet").mkdir()
    results = _fleet(secrets_endpoint, tmp_path / "fleet", redis.url)
    errors = [e for r in results for e in r["errors"]]
    grants = sum(r["grants"] for r in results)
    assert errors == [], errors[:3]
    assert auth_server.stats["invalid_grant"] == 0, auth_server.stats
    assert auth_server.stats["refresh_token:ok"] == grants >= 1
    # the shared backend holds the newest refresh token: one more refresh works
    backend = AwsSecretsManagerBackend(region="us-east-1", endpoint_url=secrets_endpoint, state_dir=tmp_path / "after")
    with Vault(backend) as vault:
        store = VaultTokenStore(vault, NAME, connector="acme")
        known = OAuth2AuthorizationCodeAuth.Options.model_fields
        options = OAuth2AuthorizationCodeAuth.Options.model_validate(
            {k: v for k, v in store.load().items() if k in known} | {"name": NAME}
        )
        time.sleep(1.1)
        assert OAuth2AuthorizationCodeAuth(options, store).refresh() is True
    assert auth_server.stats["invalid_grant"] == 0


def test_control_without_fleet_locks_the_machines_spend_a_token_twice(
    auth_server: LocalAuthorizationServer, secrets_endpoint: str, tmp_path: Path
) -> None:
    _seed(secrets_endpoint, tmp_path / "seed", auth_server)
    time.sleep(1.1)
    (tmp_path / "fleet").mkdir()
    results = _fleet(secrets_endpoint, tmp_path / "fleet", None)
    errors = [e for r in results for e in r["errors"]]
    assert auth_server.stats["invalid_grant"] >= 1 or errors, (
        "8 machines with no shared lock never raced: the test cannot see the race it guards against"
    )


def test_redis_locks_are_exclusive_reentrant_and_time_out(redis: RedisServer) -> None:
    one, two = RedisLocks(redis.url, lease=2.0), RedisLocks(redis.url, lease=2.0)
    with one.lock("a"), one.lock("a"):  # re-entrant in one thread
        with pytest.raises(LockTimeoutError), two.lock("a", timeout=0.2):
            pass
        with two.lock("b", timeout=1):  # another name is free
            pass
        time.sleep(2.5)  # longer than the lease: renewal keeps it
        with pytest.raises(LockTimeoutError), two.lock("a", timeout=0.2):
            pass
    with two.lock("a", timeout=1):
        pass
    first = one.fencing["a"]
    with one.lock("a", timeout=1):
        assert one.fencing["a"] > first  # a new fencing token per acquisition
    one.close()
    two.close()


def test_a_dead_holders_redis_lock_frees_after_its_lease(redis: RedisServer) -> None:
    code = (
        "import sys, time; from tapyard_credentials import RedisLocks\n"
        "l = RedisLocks(sys.argv[1], lease=1.0)\n"
        "cm = l.lock('x'); cm.__enter__(); print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, redis.url], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with RedisLocks(redis.url, lease=1.0).lock("x", timeout=10):
        waited = time.monotonic() - started
    assert waited < 3.0, waited


def test_postgres_advisory_locks_bind_two_clients(postgres: PostgresServer) -> None:
    from tapyard_credentials import PostgresLocks

    one, two = PostgresLocks(postgres.url), PostgresLocks(postgres.url)
    with one.lock("a"), one.lock("a"):  # re-entrant in one thread
        with pytest.raises(LockTimeoutError), two.lock("a", timeout=0.2):
            pass
        with two.lock("b", timeout=1):  # another name is free
            pass
    with two.lock("a", timeout=1):
        pass


def test_a_lock_url_of_an_unknown_kind_is_one_clear_line() -> None:
    from tapyard_credentials import VaultStorageError, locks_from_url

    with pytest.raises(VaultStorageError, match="TAPYARD_LOCK_URL takes redis://"):
        locks_from_url("memcached://127.0.0.1:11211")
    assert locks_from_url(None) is None and locks_from_url("") is None

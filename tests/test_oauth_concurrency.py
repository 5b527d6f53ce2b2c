"""Concurrent refreshes of one credential, by 8 threads and 2 processes sharing one
vault file, against a server that revokes each refresh token on use: not one
``invalid_grant``. Without the credential's lock the same race spends a refresh
token twice (the control at the end shows the test can see it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapyard import AuthenticationError, MemoryTokenStore, OAuth2AuthorizationCodeAuth
from tapyard_credentials import Redactor, Vault, VaultTokenStore, generate_key
from tapyard_sample import LocalAuthorizationServer, OAuthClient

NAME = "acme-user"
THREADS = 8
PROCESSES = 2
THREADS_PER_PROCESS = 2
ROUNDS = 5


@pytest.fixture
def server() -> Iterator[LocalAuthorizationServer]:
    client = OAuthClient("public", None, redirect_uris=("http://127.0.0.1/callback",))
    with LocalAuthorizationServer([client], access_token_ttl=1) as running:
        yield running


def _browser(url: str) -> None:
    threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()


def _strategy(vault: Vault) -> OAuth2AuthorizationCodeAuth:
    fields = VaultTokenStore(vault, NAME, connector="acme").load()
    known = OAuth2AuthorizationCodeAuth.Options.model_fields
    options = OAuth2AuthorizationCodeAuth.Options.model_validate(
        {k: v for k, v in fields.items() if k in known} | {"name": NAME}
    )
    return OAuth2AuthorizationCodeAuth(options, VaultTokenStore(vault, NAME, connector="acme"))


WORKER = r"""
import json, os, sys, threading, time
from pathlib import Path
from tapyard import AuthenticationError, OAuth2AuthorizationCodeAuth
from tapyard_credentials import Redactor, Vault, VaultTokenStore

path, ready, go, threads, rounds = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
results = {"grants": 0, "adopted": 0, "refreshes": 0, "errors": []}
lock = threading.Lock()

def work(strategy):
    for _ in range(rounds):
        try:
            strategy.refresh()
            request = __import__("httpx").Request("GET", "http://127.0.0.1:9/x")
            strategy.apply(request)
        except AuthenticationError as exc:
            with lock:
                results["errors"].append(str(exc))
        with lock:
            results["refreshes"] += 1

strategies = []
for _ in range(threads):
    vault = Vault.open(path, key=os.environ["KEY"], redactor=Redactor())
    store = VaultTokenStore(vault, "acme-user", connector="acme")
    known = OAuth2AuthorizationCodeAuth.Options.model_fields
    options = OAuth2AuthorizationCodeAuth.Options.model_validate(
        {k: v for k, v in store.load().items() if k in known} | {"name": "acme-user"})
    strategies.append(OAuth2AuthorizationCodeAuth(options, store))
ready.touch()
while not go.exists():
    time.sleep(0.005)
workers = [threading.Thread(target=work, args=(s,)) for s in strategies]
for w in workers: w.start()
for w in workers: w.join()
for s in strategies:
    results["grants"] += s.stats["grants"]
    results["adopted"] += s.stats["adopted"]
print(json.dumps(results))
"""


def test_threads_and_processes_never_spend_a_refresh_token_twice(
    server: LocalAuthorizationServer, tmp_path: Path
) -> None:
    key = generate_key()
    path = tmp_path / "vault.db"
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        vault.put(
            NAME,
            connector="acme",
            kind="oauth2_authorization_code",
            fields={"authorize_url": server.authorize_url, "token_url": server.token_url, "client_id": "public"},
        )
        _strategy(vault).login(open_browser=_browser, timeout=10)
    assert server.stats["authorization_code:ok"] == 1

    go = tmp_path / "go"
    procs, ready_files = [], []
    for i in range(PROCESSES):
        ready = tmp_path / f"ready-{i}"
        ready_files.append(ready)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(path), str(ready), str(go), str(THREADS_PER_PROCESS), str(ROUNDS)],
                env={**os.environ, "KEY": key},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )

    vaults = [Vault.open(path, key=key, redactor=Redactor()) for _ in range(THREADS)]
    strategies = [_strategy(v) for v in vaults]
    errors: list[str] = []
    barrier = threading.Barrier(THREADS)

    def work(strategy: OAuth2AuthorizationCodeAuth) -> None:
        barrier.wait()
        for _ in range(ROUNDS):
            try:
                strategy.refresh()
                request = httpx.Request("GET", "http://127.0.0.1:9/x")
                strategy.apply(request)
            except AuthenticationError as exc:
                errors.append(str(exc))

    deadline = time.monotonic() + 30
    while not all(r.exists() for r in ready_files):
        assert time.monotonic() < deadline, [p.stderr.read() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    threads = [threading.Thread(target=work, args=(s,)) for s in strategies]
    go.touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    children = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        children.append(json.loads(out))
    for v in vaults:
        v.close()

    refreshes = THREADS * ROUNDS + PROCESSES * THREADS_PER_PROCESS * ROUNDS
    grants = sum(s.stats["grants"] for s in strategies) + sum(c["grants"] for c in children)
    adopted = sum(s.stats["adopted"] for s in strategies) + sum(c["adopted"] for c in children)
    assert errors == [] and all(c["errors"] == [] for c in children)
    assert sum(c["refreshes"] for c in children) == PROCESSES * THREADS_PER_PROCESS * ROUNDS
    assert server.stats["invalid_grant"] == 0, server.stats
    # Every grant the server made was one a worker asked for and recorded.
    assert server.stats["refresh_token:ok"] == grants >= ROUNDS
    assert grants + adopted >= refreshes
    # The vault holds the latest refresh token: one more refresh works.
    with Vault.open(path, key=key, redactor=Redactor()) as vault:
        assert _strategy(vault).refresh() is True
    assert server.stats["invalid_grant"] == 0
    print(f"{refreshes} concurrent refreshes: {grants} grants, {adopted} adopted, 0 invalid_grant")


class _Unlocked(MemoryTokenStore):
    """A store without a lock whose reads wait for each other: both racers read the
    same refresh token before either spends it."""

    def __init__(self, fields: Mapping[str, str], racers: int) -> None:
        super().__init__(fields)
        self.barrier = threading.Barrier(racers)
        self.armed = False

    def load(self) -> dict[str, str]:
        fields = super().load()
        if self.armed:
            self.barrier.wait(10)
        return fields

    def lock(self) -> AbstractContextManager[Any]:
        return nullcontext()


def test_control_without_the_lock_a_refresh_token_is_spent_twice(server: LocalAuthorizationServer) -> None:
    seed = MemoryTokenStore()
    options = OAuth2AuthorizationCodeAuth.Options(
        authorize_url=server.authorize_url, token_url=server.token_url, client_id="public", name=NAME
    )
    OAuth2AuthorizationCodeAuth(options, seed).login(open_browser=_browser, timeout=10)
    store = _Unlocked(seed.load(), racers=2)
    racers = [OAuth2AuthorizationCodeAuth(options, store) for _ in range(2)]
    for racer in racers:
        racer.current()  # loaded before the race
    store.armed = True
    errors: list[str] = []

    def race(strategy: OAuth2AuthorizationCodeAuth) -> None:
        try:
            strategy.refresh()
        except AuthenticationError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=race, args=(r,)) for r in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert server.stats["invalid_grant"] == 1 and len(errors) == 1
    assert "invalid_grant" in errors[0]

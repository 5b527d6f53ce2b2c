"""Installs refuse what does not verify, and change nothing (issue: the marketplace, acceptance 2 and 4).

One registry serves a publisher's package in two versions; static mirrors of
it before and after the second version are the copies each case doctors, as
an attacker on the path (or a compromised mirror, or a registry that skipped
its gate) would. Every case goes through ``tapyard install`` and must end in
one ``Error: refused...`` line with no package installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tapyard.testing import run_cli
from tests.registry_helpers import (
    add_listed_release,
    built_wheel,
    copy_tree,
    doctored_wheel,
    environment,
    resign_mirror,
    running_registry,
)

PACKAGE = "tapyard-acme"


# a module's registry is seeded once, by kit runs and builds that take minutes on a loaded machine
pytestmark = pytest.mark.timeout(1200)


@dataclass
class World:
    url: str
    server_data: Path
    before: Path  # a mirror holding 0.1.0
    after: Path  # a mirror holding 0.1.0 and 0.2.0
    wheels: Path
    publisher_key: Path
    evil_key: Path
    evil_wheel: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tapyard.marketplace._mirror import mirror
    from tapyard.marketplace._publish import publish, register
    from tapyard.marketplace._source import Source

    base = tmp_path_factory.mktemp("registry-verify")
    sample = built_wheel("sample", base)
    with running_registry(base / "server") as server:
        source = Source(server.url)
        with environment(TAPYARD_HOME=str(base / "publisher"), TAPYARD_PUBLISHER_KEY=str(base / "publisher.pem")):
            token = register(source, "tapyard")["token"]
            publish(source, doctored_wheel(sample, base / "w1", name=PACKAGE, version="0.1.0", package="tapyard_acme"), token=token, run_kit=False)
            mirror(source, base / "before")
            publish(source, doctored_wheel(sample, base / "w2", name=PACKAGE, version="0.2.0", package="tapyard_acme"), token=token, run_kit=False)
            mirror(source, base / "after")
        with environment(TAPYARD_HOME=str(base / "evil"), TAPYARD_PUBLISHER_KEY=str(base / "evil.pem")):
            evil_token = register(source, "evil")["token"]
            evil_wheel = doctored_wheel(sample, base / "we", name="tapyard-evilcorp", version="1.0.0", publisher="evil")
            publish(source, evil_wheel, token=evil_token, run_kit=False)
            mirror(source, base / "after")
        source.close()
        yield World(server.url, server.data, base / "before", base / "after", base, base / "publisher.pem",
                    base / "evil.pem", evil_wheel)


def _installed() -> set[str]:
    importlib.invalidate_caches()
    return {d.metadata["Name"] for d in importlib.metadata.distributions()}


def _trust(world: World) -> None:
    """This machine has installed from the registry before: it trusts its newest index."""
    from tapyard.marketplace._source import Source
    from tapyard.marketplace._trust import Verifier

    Verifier(Source(str(world.after))).refresh()


def _refused(location: Path | str, requirement: str = PACKAGE) -> str:
    before = _installed()
    result = run_cli("install", requirement, "--yes", "--registry", str(location))
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: refused"), result.stderr
    assert "Traceback" not in result.stderr
    after = _installed()
    if after != before:  # never leave a test's package in the shared environment
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", *(after - before)], check=False)
    assert after == before
    assert PACKAGE not in {n.lower() for n in _installed()}
    return lines[0]


def test_the_untampered_mirror_verifies(world: World, tmp_path: Path) -> None:
    from tapyard.marketplace._source import Source
    from tapyard.marketplace._trust import Verifier
    from tapyard.marketplace._wheel import inspect_wheel

    verifier = Verifier(Source(str(world.after)))
    verifier.refresh()
    wheel, _info = verifier.download(f"{PACKAGE}/tapyard_acme-0.2.0-py3-none-any.whl", tmp_path)
    assert inspect_wheel(wheel).version == "0.2.0"


def test_altered_artifact(world: World, tmp_path: Path) -> None:
    _trust(world)
    copy = copy_tree(world.after, tmp_path / "m")
    artifact = copy / "targets" / PACKAGE / "tapyard_acme-0.2.0-py3-none-any.whl"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    assert "checksum" in _refused(copy)


def test_altered_checksum(world: World, tmp_path: Path) -> None:
    _trust(world)
    copy = copy_tree(world.after, tmp_path / "m")
    role_file = max((copy / "tuf").glob("*.tapyard.json"), key=lambda p: int(p.name.split(".")[0]))
    role = json.loads(role_file.read_text())
    target = role["signed"]["targets"][f"{PACKAGE}/tapyard_acme-0.2.0-py3-none-any.whl"]
    target["hashes"]["sha256"] = "0" * 64
    role_file.write_text(json.dumps(role))
    assert "not signed by the keys" in _refused(copy)


def test_wrong_publisher_key(world: World, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata

    _trust(world)
    copy = copy_tree(world.after, tmp_path / "m")
    role_file = max((copy / "tuf").glob("*.tapyard.json"), key=lambda p: int(p.name.split(".")[0]))
    role = Metadata.from_bytes(role_file.read_bytes())
    role.sign(CryptoSigner(Ed25519PrivateKey.generate()))
    role_file.write_bytes(role.to_bytes())
    assert "not signed by the keys" in _refused(copy)


def test_artifact_from_another_namespace(world: World, tmp_path: Path) -> None:
    _trust(world)
    # the listing points tapyard-acme at a file the evil publisher legitimately signed
    copy = copy_tree(world.after, tmp_path / "m")
    add_listed_release(copy, PACKAGE, "0.3.0", f"tapyard-evilcorp/{world.evil_wheel.name}")
    assert "tapyard-evilcorp" in _refused(copy, f"{PACKAGE}==0.3.0")
    # and a wheel of tapyard-acme signed by the evil publisher's own key is outside its delegation
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import CryptoSigner

    evil = CryptoSigner(serialization.load_pem_private_key(world.evil_key.read_bytes(), None))
    forged = doctored_wheel(built_wheel("sample", world.wheels), tmp_path / "w", name=PACKAGE, version="0.3.0", package="tapyard_acme")
    copy2 = copy_tree(world.after, tmp_path / "m2")
    path = f"{PACKAGE}/{forged.name}"
    resign_mirror(copy2, world.server_data, namespace="evil", publisher_signer=evil, add={path: forged.read_bytes()})
    add_listed_release(copy2, PACKAGE, "0.3.0", path)
    assert "not in the registry's signed index" in _refused(copy2, f"{PACKAGE}==0.3.0")


def test_rollback_to_an_older_index(world: World) -> None:
    _trust(world)
    assert "older than the one this machine already trusts" in _refused(world.before)


def test_freeze_an_expired_index(world: World, tmp_path: Path) -> None:
    _trust(world)
    copy = copy_tree(world.after, tmp_path / "m")
    resign_mirror(copy, world.server_data, namespace="tapyard", publisher_signer=None,
                  timestamp_expires=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    assert "expired" in _refused(copy)


def test_mix_and_match(world: World, tmp_path: Path) -> None:
    _trust(world)
    # an artifact the listing offers but no signed snapshot covers
    copy = copy_tree(world.after, tmp_path / "m")
    extra = doctored_wheel(built_wheel("sample", world.wheels), tmp_path / "w", name=PACKAGE, version="0.3.0", package="tapyard_acme")
    (copy / "targets" / PACKAGE / extra.name).write_bytes(extra.read_bytes())
    add_listed_release(copy, PACKAGE, "0.3.0", f"{PACKAGE}/{extra.name}")
    assert "not in the registry's signed index" in _refused(copy, f"{PACKAGE}==0.3.0")


def test_mix_and_match_roles(world: World, tmp_path: Path) -> None:
    # a publisher's role from another snapshot, served in place of the one the snapshot names
    # (first contact: no trusted copy of that role is cached on this machine yet)
    copy2 = copy_tree(world.after, tmp_path / "m2")
    roles = sorted((copy2 / "tuf").glob("*.tapyard.json"), key=lambda p: int(p.name.split(".")[0]))
    shutil.copy(world.before / "tuf" / "1.tapyard.json", roles[-1])
    assert "not the version its signed snapshot names" in _refused(copy2)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"tapyard_acme/../../evil.py": b"print('x')\n"}, "climbs out"),
        ({"zz_hook.pth": b"import os\n"}, ".pth"),
        ({"tapyard_acme/nested/hook.pth": b"import os\n"}, ".pth"),
        ({"other_package/__init__.py": b""}, "outside its package"),
        ({"tapyard_acme-0.4.0.data/scripts/run": b"#!/bin/sh\n"}, ".data"),
    ],
)
def test_wheels_holding_more_than_their_package(world: World, tmp_path: Path, extra: dict[str, bytes], said: str) -> None:
    """Signed by the publisher and listed by a registry that skipped its gate: still refused by the client."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import CryptoSigner

    _trust(world)
    publisher = CryptoSigner(serialization.load_pem_private_key(world.publisher_key.read_bytes(), None))
    bad = doctored_wheel(built_wheel("sample", world.wheels), tmp_path / "w", name=PACKAGE, version="0.4.0", extra=extra,
                         package="tapyard_acme")
    copy = copy_tree(world.after, tmp_path / "m")
    path = f"{PACKAGE}/{bad.name}"
    resign_mirror(copy, world.server_data, namespace="tapyard", publisher_signer=publisher, add={path: bad.read_bytes()})
    add_listed_release(copy, PACKAGE, "0.4.0", path)
    assert said in _refused(copy, f"{PACKAGE}==0.4.0")


def test_refusals_name_no_secret_and_the_trust_state_survives(world: World) -> None:
    from tapyard.marketplace._source import Source
    from tapyard.marketplace._trust import trust_dir

    _trust(world)
    _refused(world.before)
    trusted: dict[str, Any] = json.loads((trust_dir(Source(str(world.after))) / "timestamp.json").read_text())
    # the refused older index did not replace what is trusted
    assert trusted["signed"]["version"] >= 3


def test_install_shows_the_permissions_and_asks(world: World) -> None:
    """In a terminal, without --yes: the verified package's permissions, then a question; "n" installs nothing."""
    import os

    from tests.terminal import TAPYARD, plain, spawn

    before = _installed()
    env = {**os.environ, "TAPYARD_HOME": os.environ["TAPYARD_HOME"]}
    term = spawn([TAPYARD, "install", PACKAGE, "--registry", str(world.after)], env=env)
    term.expect(r"Install it\? \[y/N\]")
    screen = plain(term.screen)
    assert "tapyard-acme 0.2.0 by tapyard: verified" in screen
    assert "permission: sample: hosts 127.0.0.1:*" in screen
    term.send("n\r")
    assert term.wait() == 1
    assert "not installed: you declined" in plain(term.screen)
    assert _installed() == before


def test_install_without_a_terminal_needs_yes(world: World) -> None:
    result = run_cli("install", PACKAGE, "--registry", str(world.after))
    assert result.exit_code == 1
    assert "confirm in a terminal, or pass --yes" in result.stderr
    assert PACKAGE not in {n.lower() for n in _installed()}


def test_a_mirror_served_by_a_plain_file_server(world: World) -> None:
    """``python -m http.server`` over a mirror is a registry: search works from its listing, installs verify."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(world.after)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    try:
        found = run_cli("search", "acme", "--registry", url, "--json")
        assert found.exit_code == 0 and json.loads(found.stdout)["results"][0]["name"] == PACKAGE
        _trust(world)
        # served over HTTP, the older mirror is still a rollback for this machine
        from tapyard.marketplace._source import Source
        from tapyard.marketplace._trust import Verifier

        verifier = Verifier(Source(url))
        verifier.refresh()
        assert verifier.first_contact is False  # the same registry, reached at another address
    finally:
        server.shutdown()
        server.server_close()


def test_a_pinned_root_refuses_another_registry(world: World, tmp_path: Path) -> None:
    """`tapyard registry trust ROOT` instead of trust on first contact: another registry's index is refused."""
    from tapyard.marketplace._source import Source
    from tapyard.marketplace._trust import Verifier

    other = tmp_path / "other-root.json"
    from tests.registry_helpers import running_registry

    with running_registry(tmp_path / "other") as server:
        import httpx

        other.write_bytes(httpx.get(server.url + "tuf/1.root.json").content)
    pinned = run_cli("registry", "trust", str(other), "--registry", str(world.after))
    assert pinned.exit_code == 0, pinned.stderr
    message = _refused(world.after)
    assert "not signed by the keys" in message
    # the right root, pinned: no first contact, and it verifies
    good = run_cli("registry", "trust", str(world.after / "tuf" / "1.root.json"), "--registry", str(world.after))
    assert good.exit_code == 0
    verifier = Verifier(Source(str(world.after)))
    verifier.refresh()
    assert verifier.first_contact is False
    junk = tmp_path / "junk.json"
    junk.write_text('{"signed": {}}')
    bad = run_cli("registry", "trust", str(junk), "--registry", str(world.after))
    assert bad.exit_code == 1 and "not a root metadata file" in bad.stderr

"""The registry server itself: PostgreSQL as its index, yanking, write rate limits, the catalog's escaping."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.registry_helpers import built_wheel, doctored_wheel, environment, running_registry

pytestmark = [pytest.mark.timeout(900), pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]


def test_postgresql_index_publish_yank_install_and_restart(postgres_url: str, tmp_path: Path) -> None:
    from tapyard.marketplace._install import choose_release
    from tapyard.marketplace._publish import publish, register
    from tapyard.marketplace._source import Source
    from tapyard.marketplace._trust import Verifier

    sample = built_wheel("sample", tmp_path)
    with environment(TAPYARD_PUBLISHER_KEY=str(tmp_path / "key.pem")):
        with running_registry(tmp_path / "server", db=postgres_url) as server:
            source = Source(server.url)
            token = register(source, "tapyard")["token"]
            for version in ("0.1.0", "0.2.0"):
                publish(source, doctored_wheel(sample, tmp_path / version, name="tapyard-pgtest", version=version),
                        token=token, run_kit=False)
            headers = {"Authorization": f"Bearer {token}"}
            yanked = httpx.post(server.url + "api/v1/packages/tapyard-pgtest/0.2.0/yank", headers=headers, json={"reason": "broken"})
            assert yanked.status_code == 200
            document = source.package("tapyard-pgtest")
            assert document is not None
            assert choose_release(document, None)["version"] == "0.1.0"  # a yanked release is skipped...
            assert choose_release(document, "0.2.0")["version"] == "0.2.0"  # ...unless pinned
            Verifier(source).refresh()
            source.close()
        # a second registry process on the same database and data: nothing is lost or re-made
        with running_registry(tmp_path / "server", db=postgres_url) as again:
            source = Source(again.url)
            verifier = Verifier(source)
            verifier.refresh()  # the index continues the versions this machine trusts (no rollback)
            wheel, _info = verifier.download("tapyard-pgtest/tapyard_pgtest-0.2.0-py3-none-any.whl", tmp_path)
            assert wheel.stat().st_size > 0
            assert httpx.post(again.url + "api/v1/packages/tapyard-pgtest/0.2.0/unyank",
                              headers={"Authorization": f"Bearer {token}"}).status_code == 200
            after = source.package("tapyard-pgtest")
            assert after is not None and choose_release(after, None)["version"] == "0.2.0"
            source.close()


def _registry(tmp_path: Path, **options: Any) -> Any:
    from tapyard_registry import build

    return build(None, tmp_path / "data", kit=None, **options)


def test_writes_are_rate_limited_per_caller(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from tapyard_registry import create_app

    registry = _registry(tmp_path, writes_per_minute=2)
    client = TestClient(create_app(registry))
    pem = _public_pem()
    answers = [client.post("/api/v1/publishers", json={"namespace": f"ns{i}", "public_key": pem(i)}) for i in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1 and "too many writes" in answers[2].json()["error"]
    # reads are never limited
    assert all(client.get("/api/v1/search").status_code == 200 for _ in range(10))


def _public_pem() -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def make(_: int) -> str:
        key = Ed25519PrivateKey.generate().public_key()
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    return make


def test_registration_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from tapyard_registry import create_app

    client = TestClient(create_app(_registry(tmp_path)))
    pem = _public_pem()
    cases = [
        ({"namespace": "Bad Name", "public_key": pem(0)}, 400, "namespace"),
        ({"namespace": "targets", "public_key": pem(0)}, 400, "reserved"),
        ({"namespace": "fine", "public_key": "not a key"}, 400, "Ed25519"),
    ]
    for body, status, said in cases:
        answer = client.post("/api/v1/publishers", json=body)
        assert answer.status_code == status and said in answer.json()["error"] and "\n" not in answer.json()["error"]
    assert client.post("/api/v1/publishers", content=b"[1, 2").status_code == 400
    assert client.post("/api/v1/publishers", json={"namespace": "fine", "public_key": pem(1)}).status_code == 201
    assert client.post("/api/v1/publishers", json={"namespace": "fine", "public_key": pem(2)}).status_code == 409
    assert client.post("/api/v1/upload").status_code == 401  # every write needs a token


def test_the_catalog_escapes_what_publishers_wrote(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from tapyard_registry import create_app
    from tapyard_registry._db import packages, publishers, releases

    registry = _registry(tmp_path)
    now = datetime.now(UTC)
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with registry.engine.begin() as connection:
        publisher = connection.execute(
            publishers.insert().values(namespace="acme", display_name="Acme", verified=False, created_at=now)
        ).inserted_primary_key[0]
        connection.execute(packages.insert().values(name="tapyard-acme", display_name="tapyard-acme", publisher_id=publisher, created_at=now))
        connection.execute(releases.insert().values(
            package="tapyard-acme", version="1.0.0", filename="tapyard_acme-1.0.0-py3-none-any.whl", sha256="0" * 64, size=1,
            requires_core=">=0.1", summary=hostile, metadata={}, kit_score=None, support_level=None, kit_passed_at=None,
            kit_report="", yanked=False, yank_reason="", created_at=now,
            manifest={"connector": [{"name": "acme", "description": hostile, "vendor": hostile, "streams": [hostile]}]},
        ))
    client = TestClient(create_app(registry))
    for page in (client.get("/", params={"q": "acme"}), client.get("/c/tapyard-acme")):
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;" in page.text
    assert client.get("/c/no-such-package").status_code == 404


def test_outdated_and_upgrade_see_a_newer_release(tmp_path: Path) -> None:
    """The installed sample connector (0.1.0) against a registry holding 0.2.0 of it."""
    import json
    from importlib.metadata import version

    from tapyard.marketplace._publish import publish, register
    from tapyard.marketplace._source import Source
    from tapyard.testing import run_cli

    installed = version("tapyard-sample")
    newer = f"{int(installed.split('.')[0]) + 1}.0.0"
    sample = built_wheel("sample", tmp_path)
    with environment(TAPYARD_PUBLISHER_KEY=str(tmp_path / "key.pem")), running_registry(tmp_path / "server") as server:
        source = Source(server.url)
        token = register(source, "tapyard")["token"]
        publish(source, doctored_wheel(sample, tmp_path / "w", version=newer), token=token, run_kit=False)
        source.close()
        listed = run_cli("connectors", "outdated", "--registry", server.url, "--json")
        assert listed.exit_code == 0, listed.stderr
        assert json.loads(listed.stdout) == [{"name": "tapyard-sample", "installed": installed, "latest": newer, "publisher": "tapyard"}]
        # upgrade resolves and verifies the newer release, then asks (and without a terminal, refuses)
        upgrade = run_cli("upgrade", "tapyard-sample", "--registry", server.url)
        assert upgrade.exit_code == 1
        assert f"tapyard-sample {newer} by tapyard: verified" in upgrade.stderr
        assert "pass --yes" in upgrade.stderr
        assert version("tapyard-sample") == installed
        missing = run_cli("upgrade", "tapyard-nothing", "--registry", server.url)
        assert missing.exit_code == 1 and "no package named" in missing.stderr


def test_an_operator_verifies_a_publisher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from starlette.testclient import TestClient

    from tapyard_registry import create_app
    from tapyard_registry.__main__ import main

    registry = _registry(tmp_path)
    client = TestClient(create_app(registry))
    assert client.post("/api/v1/publishers", json={"namespace": "acme", "public_key": _public_pem()(0)}).status_code == 201
    assert main(["verify-publisher", "acme", "--data", str(tmp_path / "data")]) == 0
    assert main(["verify-publisher", "nobody", "--data", str(tmp_path / "data")]) == 1
    assert "no publisher owns" in capsys.readouterr().err
    from sqlalchemy import select

    from tapyard_registry._db import publishers

    with registry.engine.connect() as connection:
        assert connection.execute(select(publishers.c.verified).where(publishers.c.namespace == "acme")).scalar() is True
    # a change made outside this process reaches the listing once it is older than its lifetime
    registry.listing()
    registry._listing = (registry._listing[0], registry._listing[1] - 3600)
    assert registry.listing_stale()
    client.get("/")  # the catalog reads it again
    assert not registry.listing_stale()

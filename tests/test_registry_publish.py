"""The publish gate refuses what it must, with one line, and stores nothing (acceptance 3).

One registry, with the conformance kit on, and two publishers: ``acme``, who
publishes a scaffolded connector, and ``evil``, who tries everything a
publisher must not get away with. Uploads go through ``tapyard publish``'s
own code (build, sign, upload), with the local kit run off so that the
registry's gate is what decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapyard.marketplace._errors import RegistryError
from tests.registry_helpers import doctored_wheel, environment, running_registry

# a module's registry is seeded once, by kit runs and builds that take minutes on a loaded machine
pytestmark = pytest.mark.timeout(1200)


@dataclass
class Gate:
    url: str
    base: Path
    tokens: dict[str, str]
    keys: dict[str, Path]
    acme: Path  # the scaffolded project acme published
    first: dict[str, Any]

    def publish(self, who: str, dist: Path, *, token: str | None = None, **options: Any) -> dict[str, Any]:
        from tapyard.marketplace._publish import publish
        from tapyard.marketplace._source import Source

        source = Source(self.url)
        try:
            with environment(TAPYARD_PUBLISHER_KEY=str(self.keys[who])):
                return publish(source, dist, token=self.tokens[who] if token is None else token, run_kit=False, **options)
        finally:
            source.close()

    def refused(self, who: str, dist: Path, **options: Any) -> str:
        before = httpx.get(self.url + "api/v1/index.json").json()
        with pytest.raises(RegistryError) as caught:
            self.publish(who, dist, **options)
        message = str(caught.value)
        assert "\n" not in message and len(message) < 700 and "tyr_" not in message
        assert httpx.get(self.url + "api/v1/index.json").json() == before  # nothing was listed
        return message


def _project(base: Path, name: str, publisher: str) -> Path:
    from tapyard.marketplace.scaffold import scaffold

    target = base / f"{name}-by-{publisher}"
    if not target.exists():
        scaffold(name, target, publisher=publisher)
    return target


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    from tapyard.marketplace._publish import publish, register
    from tapyard.marketplace._source import Source

    base = tmp_path_factory.mktemp("registry-gate")
    with running_registry(base / "server", kit=True) as server:
        source = Source(server.url)
        tokens, keys = {}, {}
        for who in ("acme", "evil"):
            keys[who] = base / f"{who}.pem"
            with environment(TAPYARD_PUBLISHER_KEY=str(keys[who]), TAPYARD_HOME=str(base / f"home-{who}")):
                tokens[who] = register(source, who)["token"]
        acme = _project(base, "acme", "acme")
        with environment(TAPYARD_PUBLISHER_KEY=str(keys["acme"])):
            first = publish(source, acme, token=tokens["acme"], run_kit=False)
        source.close()
        yield Gate(server.url, base, tokens, keys, acme, first)


def test_a_kit_passing_connector_is_listed_with_its_score(gate: Gate) -> None:
    assert gate.first["name"] == "tapyard-acme" and gate.first["support_level"] == "certified"
    document = httpx.get(gate.url + "api/v1/packages/tapyard-acme.json").json()
    assert document["publisher"] == "acme"
    release = document["releases"][0]
    assert release["score"] == gate.first["score"] and release["kit_passed_at"]


def test_an_existing_version(gate: Gate) -> None:
    assert "already published" in gate.refused("acme", gate.acme)


def test_another_publishers_namespace(gate: Gate) -> None:
    # evil's token, a manifest that says the package is acme's
    assert "only into its own namespace" in gate.refused("evil", _project(gate.base, "acmetwo", "acme"))


def test_another_publishers_package(gate: Gate) -> None:
    project = _project(gate.base, "acme", "evil")
    assert "belongs to another publisher" in gate.refused("evil", project)


@pytest.mark.parametrize("token", ["tyr_0000000000000000.not-a-secret", "not even a token", ""])
def test_a_bad_token(gate: Gate, token: str) -> None:
    with environment(TAPYARD_REGISTRY_TOKEN=token):
        message = gate.refused("evil", _project(gate.base, "bolt", "evil"), token=token)
    assert "token" in message


def test_a_revoked_token(gate: Gate) -> None:
    headers = {"Authorization": f"Bearer {gate.tokens['evil']}"}
    made = httpx.post(gate.url + "api/v1/tokens", headers=headers, json={"scopes": ["publish"]}).json()
    listed = httpx.get(gate.url + "api/v1/tokens", headers=headers).json()
    assert made["token_id"] in {t["token_id"] for t in listed} and all("token" not in t for t in listed)
    assert httpx.delete(gate.url + f"api/v1/tokens/{made['token_id']}", headers=headers).status_code == 200
    assert "revoked" in gate.refused("evil", _project(gate.base, "bolt", "evil"), token=made["token"])


def test_a_token_without_the_publish_scope(gate: Gate) -> None:
    headers = {"Authorization": f"Bearer {gate.tokens['evil']}"}
    made = httpx.post(gate.url + "api/v1/tokens", headers=headers, json={"scopes": ["yank"]}).json()
    assert "may not publish" in gate.refused("evil", _project(gate.base, "bolt", "evil"), token=made["token"])


def test_a_failing_conformance_run(gate: Gate) -> None:
    project = _project(gate.base, "gizmo", "evil")
    for cassette in (project / "tests" / "cassettes").glob("*.yaml"):
        cassette.unlink()
    message = gate.refused("evil", project)
    assert "conformance kit failed" in message and "cassettes" in message


@pytest.mark.parametrize("name", ["acne", "acrne", "amce", "acmee"])
def test_a_confusable_name(gate: Gate, name: str) -> None:
    message = gate.refused("evil", _project(gate.base, name, "evil"))
    assert "confusable with 'tapyard-acme'" in message


def test_a_wrong_publisher_signature(gate: Gate, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    gate.keys["stranger"] = stranger
    message = gate.refused("stranger", _project(gate.base, "bolt", "evil"), token=gate.tokens["evil"])
    assert "signature does not verify" in message


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"hook.pth": b"import os\n"}, ".pth"),
        ({"tapyard_bolt/../../escape.py": b""}, "climbs out"),
        ({"elsewhere/__init__.py": b""}, "outside its package"),
    ],
)
def test_a_wheel_holding_more_than_its_package(gate: Gate, tmp_path: Path, extra: dict[str, bytes], said: str) -> None:
    from tapyard.marketplace._publish import build_wheel, source_archive

    project = _project(gate.base, "bolt", "evil")
    built = build_wheel(project, tmp_path / "built")
    bad = doctored_wheel(built, tmp_path / "bad", version="0.1.1", extra=extra)
    sdist = source_archive(project, tmp_path, "tapyard-bolt", "0.1.1")
    # the client refuses to send it; the registry refuses it when sent anyway
    with pytest.raises(RegistryError, match=said.replace(".", r"\.")):
        gate.publish("evil", bad, sdist=sdist)
    response = _raw_upload(gate, "evil", bad, sdist)
    assert response.status_code == 422 and said in response.json()["error"]


def _raw_upload(gate: Gate, who: str, wheel: Path, sdist: Path) -> httpx.Response:
    from tapyard.marketplace._source import Source

    source = Source(gate.url)
    with environment(TAPYARD_PUBLISHER_KEY=str(gate.keys[who])):
        from tapyard.marketplace._publish import _signed_role

        role = _signed_role(source, who, f"tapyard-bolt/{wheel.name}", wheel.read_bytes())
    source.close()
    return httpx.post(
        gate.url + "api/v1/upload", headers={"Authorization": f"Bearer {gate.tokens[who]}"},
        files={"wheel": (wheel.name, wheel.read_bytes()), "role": ("role.json", role), "source": (sdist.name, sdist.read_bytes())},
    )


def test_a_source_that_is_not_the_wheels(gate: Gate, tmp_path: Path) -> None:
    """The kit runs on the source, so a source whose code differs from the wheel's is refused."""
    from tapyard.marketplace._publish import build_wheel, source_archive

    project = _project(gate.base, "bolt", "evil")
    wheel = doctored_wheel(build_wheel(project, tmp_path / "built"), tmp_path / "w", version="0.1.2",
                           extra={"tapyard_bolt/payload.py": b"import os\n"})
    response = _raw_upload(gate, "evil", wheel, source_archive(project, tmp_path, "tapyard-bolt", "0.1.2"))
    assert response.status_code == 422 and "is not the wheel's" in response.json()["error"]


def test_confusables_by_skeleton_and_distance() -> None:
    from tapyard_registry._names import confusable_with, skeleton

    # Cyrillic U+0430 and U+0435 in place of Latin a and e look the same
    assert skeleton("tapyard-\u0430cm\u0435") == skeleton("tapyard-acme")
    assert confusable_with("tapyard-\u0430cme", ["tapyard-acme"]) == "tapyard-acme"
    assert confusable_with("tapyard-stripe", ["tapyard-sample", "tapyard-salesforce", "tapyard-erp", "tapyard-gcp"]) is None
    assert confusable_with("tapyard-erp", ["tapyard-gcp", "tapyard-aws", "tapyard-azure"]) is None
    assert confusable_with("Tapyard_Acme", ["tapyard-acme"]) == "tapyard-acme"  # PEP 503

"""The marketplace end to end, as a third party and a user meet it (acceptance 1 and 4).

A registry is started with ``tapyard registry serve`` on 127.0.0.1; a
publisher scaffolds a connector (``tapyard connectors new``), registers with a
key made on their machine and publishes it (built, run through the
conformance kit, signed, uploaded; the registry runs the kit again); a user
searches for it and
installs it into a fresh virtual environment with ``tapyard install``, which
verifies it, and syncs from it. The registry is then stopped and the same
install works from a static mirror of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry_helpers import ROOT, running_registry

pytestmark = pytest.mark.slow


def _tapyard(*args: str, env: dict[str, str], executable: str = sys.executable, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([executable, "-m", "tapyard", *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert done.returncode == 0, f"tapyard {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def _fresh_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT / "credentials"), str(ROOT / "core")],
        check=True, timeout=900, capture_output=True,
    )
    return python


_SYNC = """
import json, sys
sys.path.insert(0, sys.argv[1])
from stand_in import StandIn
import tapyard
connector = tapyard.get_connector("acme")
credentials = connector.credential_model("bearer")(token="a-token")
with StandIn() as url:
    result = tapyard.sync("acme", {"base_url": url, "page_size": 2}, credentials=credentials, to=sys.argv[2])
print(json.dumps({"ok": result.ok, "records": result.records}))
"""


@pytest.mark.timeout(1800)
def test_scaffold_publish_search_install_sync_and_mirror(tmp_path: Path) -> None:
    publisher_env = {**os.environ, "TAPYARD_HOME": str(tmp_path / "publisher-home")}
    user_env = {k: v for k, v in os.environ.items() if not k.startswith("TAPYARD_REGISTRY")}
    user_env["TAPYARD_HOME"] = str(tmp_path / "user-home")
    project = tmp_path / "acme"
    _tapyard("connectors", "new", "acme", "--dir", str(project), env=publisher_env)
    with running_registry(tmp_path / "server", kit=True) as server:
        registered = json.loads(_tapyard("registry", "register", "acme", "--registry", server.url, "--json", env=publisher_env).stdout)
        assert registered["token"].startswith("tyr_") and registered["saved_to"]
        # built, run through the kit here, signed, uploaded; the registry runs the kit again
        published = json.loads(_tapyard("publish", str(project), "--registry", server.url, "--json", env=publisher_env).stdout)
        assert published["name"] == "tapyard-acme" and published["version"] == "0.1.0"
        assert published["support_level"] == "certified" and published["score"] > 0

        # no login to search
        found = json.loads(_tapyard("search", "acme widgets", "--registry", server.url, "--json", env=user_env).stdout)
        assert [p["name"] for p in found["results"]] == ["tapyard-acme"]

        python = _fresh_venv(tmp_path / "env")
        installed = _tapyard("install", "acme", "--yes", "--registry", server.url, "--json", env=user_env, executable=str(python))
        assert json.loads(installed.stdout)["name"] == "tapyard-acme"
        assert "verified" in installed.stderr and "permission: acme: hosts {config.base_url}; credentials bearer" in installed.stderr
        listed = json.loads(_tapyard("connectors", "list", "--json", env=user_env, executable=str(python)).stdout)
        assert [c["name"] for c in listed] == ["acme"]
        synced = subprocess.run([str(python), "-c", _SYNC, str(project / "tests"), f"sqlite:///{tmp_path / 'out.db'}"],
                                capture_output=True, text=True, env=user_env, timeout=300)
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout) == {"ok": True, "records": 3}

        mirror = tmp_path / "mirror"
        _tapyard("registry", "mirror", str(mirror), "--registry", server.url, env=user_env)
        outdated = json.loads(_tapyard("connectors", "outdated", "--registry", server.url, "--json", env=user_env, executable=str(python)).stdout)
        assert outdated == []

    # the registry is gone: the mirror still installs, verified the same way
    _tapyard("uninstall", "tapyard-acme", env=user_env, executable=str(python))
    again = _tapyard("install", "tapyard-acme", "--yes", "--registry", str(mirror), env=user_env, executable=str(python))
    assert "installed tapyard-acme 0.1.0" in again.stdout
    offline_search = json.loads(_tapyard("search", "acme", "--registry", str(mirror), "--json", env=user_env).stdout)
    assert offline_search["total"] == 1
    refused = _tapyard("install", "tapyard-acme", "--yes", "--registry", server.url, env=user_env, executable=str(python), check=False)
    assert refused.returncode == 1 and "cannot reach the registry" in refused.stderr and "Traceback" not in refused.stderr

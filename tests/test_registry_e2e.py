"""The marketplace end to end, as a third party and a user meet it (acceptance 1, 3 and 6).

A registry is started with ``tapyard registry serve`` on 127.0.0.1; a
publisher registers with a key made on their machine and publishes a
connector project (built, signed, uploaded); a user searches for it and
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


@pytest.mark.timeout(1800)
def test_publish_search_install_sync_and_mirror(tmp_path: Path) -> None:
    publisher_env = {**os.environ, "TAPYARD_HOME": str(tmp_path / "publisher-home")}
    user_env = {k: v for k, v in os.environ.items() if not k.startswith("TAPYARD_REGISTRY")}
    user_env["TAPYARD_HOME"] = str(tmp_path / "user-home")
    with running_registry(tmp_path / "server") as server:
        registered = json.loads(_tapyard("registry", "register", "tapyard", "--registry", server.url, "--json", env=publisher_env).stdout)
        assert registered["token"].startswith("tyr_") and registered["saved_to"]
        published = json.loads(
            _tapyard("publish", str(ROOT / "connectors" / "sample"), "--registry", server.url, "--skip-kit", "--json", env=publisher_env).stdout
        )
        assert published["name"] == "tapyard-sample" and published["version"] == "0.1.0"

        # no login to search
        found = json.loads(_tapyard("search", "offline sample", "--registry", server.url, "--json", env=user_env).stdout)
        assert [p["name"] for p in found["results"]] == ["tapyard-sample"]

        python = _fresh_venv(tmp_path / "env")
        installed = _tapyard("install", "sample", "--yes", "--registry", server.url, "--json", env=user_env, executable=str(python))
        assert json.loads(installed.stdout)["name"] == "tapyard-sample"
        assert "verified" in installed.stderr and "permission:" in installed.stderr
        listed = json.loads(_tapyard("connectors", "list", "--json", env=user_env, executable=str(python)).stdout)
        assert [c["name"] for c in listed] == ["sample"]
        synced = _tapyard("--quiet", "sync", "sample", "-c", '{"records_per_stream": 50}', "--to",
                          f"sqlite:///{tmp_path / 'out.db'}", "--json", env=user_env, executable=str(python))
        summary = json.loads(synced.stdout)
        assert summary["ok"] and summary["records"] == 150

        mirror = tmp_path / "mirror"
        _tapyard("registry", "mirror", str(mirror), "--registry", server.url, env=user_env)
        outdated = json.loads(_tapyard("connectors", "outdated", "--registry", server.url, "--json", env=user_env, executable=str(python)).stdout)
        assert outdated == []

    # the registry is gone: the mirror still installs, verified the same way
    _tapyard("uninstall", "tapyard-sample", env=user_env, executable=str(python))
    again = _tapyard("install", "tapyard-sample", "--yes", "--registry", str(mirror), env=user_env, executable=str(python))
    assert "installed tapyard-sample 0.1.0" in again.stdout
    offline_search = json.loads(_tapyard("search", "sample", "--registry", str(mirror), "--json", env=user_env).stdout)
    assert offline_search["total"] == 1
    refused = _tapyard("install", "tapyard-sample", "--yes", "--registry", server.url, env=user_env, executable=str(python), check=False)
    assert refused.returncode == 1 and "cannot reach the registry" in refused.stderr and "Traceback" not in refused.stderr

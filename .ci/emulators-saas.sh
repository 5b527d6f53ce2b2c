#!/usr/bin/env bash
# Installs the local vendor emulators that the Stripe and ERP connectors' live
# tests start (Salesforce has none: its tests serve their own fake). Idempotent:
# what is already installed is left alone. Called from .ci/run before the tests.
#
#   localstripe           pip, into the project's .venv (Stripe)
#   @sap/cds 9 + sqlite   npm, into $TAPYARD_EMULATORS/cap (SAP CAP, OData v4 for tapyard-erp)
#
# The tests find the CAP modules through TAPYARD_EMULATORS (default
# ~/.cache/tapyard-emulators), the same default as here.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${TAPYARD_EMULATORS:-$HOME/.cache/tapyard-emulators}
python=${TAPYARD_PYTHON:-.venv/bin/python}

if ! "$python" -c "import localstripe" 2>/dev/null; then
    echo "emulators: installing localstripe into $python"
    "$python" -m pip install -q "localstripe>=1.15"
fi

if command -v npm >/dev/null 2>&1; then
    if [ ! -f "$cache/cap/node_modules/@sap/cds/package.json" ] || [ ! -d "$cache/cap/node_modules/@cap-js/sqlite" ]; then
        echo "emulators: installing SAP CAP (@sap/cds@9, @cap-js/sqlite@2) into $cache/cap"
        mkdir -p "$cache/cap"
        [ -f "$cache/cap/package.json" ] || echo '{"name": "tapyard-cap-emulator", "private": true}' > "$cache/cap/package.json"
        (cd "$cache/cap" && npm install --silent --no-audit --no-fund "@sap/cds@9" "@cap-js/sqlite@2" "express@4")
    fi
else
    echo "emulators: npm not found; the ERP live tests will fail under TAPYARD_REQUIRE_EMULATORS=1" >&2
fi
echo "emulators: ready (localstripe; SAP CAP in $cache/cap)"

#!/usr/bin/env bash
# PostgreSQL for the control-plane tests (tests/test_scheduler.py): Debian's package.
# The tests start their own server on a free loopback port and stop it; the
# cluster the package may create and start is not used.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q postgresql

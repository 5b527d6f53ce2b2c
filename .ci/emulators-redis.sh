#!/usr/bin/env bash
# Redis for the fleet tests (credential locks shared by several machines, the
# shared rate budget): Debian's package. The tests start their own redis-server
# on a free loopback port and stop it; the service the package may start is not used.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  echo "redis: $(command -v redis-server)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q redis-server

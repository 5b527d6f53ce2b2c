#!/usr/bin/env bash
# Headless Chromium and its driver, from Debian's packages, for the registry's
# catalog test (tests/test_registry_catalog.py drives them through Selenium).
# Nothing is started here: the test starts the browser itself.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium), chromedriver: $(command -v chromedriver)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium chromium-driver

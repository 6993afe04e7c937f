#!/usr/bin/env bash
# What the browser tests need: Debian's chromium (apt-get, where missing) and playwright-core
# (npm, the version pinned in package-lock.json). No browser is downloaded by npm: the tests
# drive the system's chromium.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
npm ci --no-audit --no-fund --silent

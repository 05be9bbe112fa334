#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install detect with its test and
# export extras. Idempotent: a second run only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch and torchvision first, on their own: the rest then resolves against the installed pair.
.venv/bin/python -m pip install -q "torch>=2.9" "torchvision>=0.24"
.venv/bin/python -m pip install -q -e ".[dev,export]"

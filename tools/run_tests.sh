#!/usr/bin/env bash
# Set up .venv (tools/setup_env.sh) and run the default test suite (slow and GPU tests deselected).
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m slow` or `... tests/models`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export NO_ALBUMENTATIONS_UPDATE=1
.venv/bin/python -m pytest "$@"

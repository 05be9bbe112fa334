#!/usr/bin/env bash
# The linter on the whole tree: ruff with the settings in pyproject.toml ([tool.ruff]: pyflakes,
# pycodestyle, import order, lines up to 120 characters). Sets up .venv first (tools/setup_env.sh).
# Extra arguments go to ruff, e.g. `bash tools/lint.sh --fix`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
.venv/bin/ruff check . "$@"

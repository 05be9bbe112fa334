#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install detect with its test, export,
# mlflow and openvino extras. Idempotent: when .venv was set up from the same pyproject.toml, a second run checks
# that stamp (this script's too) and that detect imports, and skips pip (its index checks take tens of seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STAMP=.venv/.detect-setup
wanted="$(cat pyproject.toml tools/setup_env.sh | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ] \
    && .venv/bin/python -c "import detect, torch, torchvision" 2>/dev/null; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch and torchvision first, on their own: the rest then resolves against the installed pair.
.venv/bin/python -m pip install -q "torch>=2.9,<2.15" "torchvision>=0.24,<0.30"  # pyproject.toml's range
.venv/bin/python -m pip install -q -e ".[dev,export,mlflow,openvino]"
# trackeval (HOTA for `detect infer --track --gt` and its tests) without its requirements: the others are
# ours already, and its opencv-python would replace our headless OpenCV.
.venv/bin/python -m pip install -q --no-deps "trackeval>=1.3"
echo "$wanted" > "$STAMP"

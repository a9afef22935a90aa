#!/usr/bin/env bash
# Create .venv and install polyepo with what a purpose needs.
#   bash scripts/setup.sh          # everything for running the main job
#   bash scripts/setup.sh test     # the same plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
extras="dev"
if [ "${1:-}" = "test" ]; then
  # The tests run real tiny models: torch first, pinned to the CPU build (unpinned pulls CUDA).
  .venv/bin/python -m pip install -q "torch==2.13.0"
  extras="dev,train,plot"
fi
.venv/bin/python -m pip install -q -e ".[${extras}]"

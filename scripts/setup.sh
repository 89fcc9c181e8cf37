#!/usr/bin/env bash
# One-time set-up: makes .venv/ and installs edgedistill with everything its stages use.
# Idempotent: a second run only checks. Safe to run on a fresh machine with nothing but Python >= 3.10.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.edgedistill-installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup.sh ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip

# torch: keep a torch >= 2.11 the user already installed in the venv (e.g. a CUDA build); otherwise take
# the 2.13.0 wheel, which is the CPU build on the reference machine. An unpinned `torch` (or pip
# resolving edgedistill's torch>=2.11 over an older one) would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 11))" 2>/dev/null; then
  $PIP install -q "torch==${EDGEDISTILL_TORCH_VERSION:-2.13.0}"
fi

# llama.cpp through llama-cpp-python. A default build uses -march=native and may emit AMX instructions
# that die with SIGILL on other CPUs of the same family; build for a portable AVX2 baseline instead.
# pip caches the wheel, so only the first set-up compiles (~8 minutes on 2 cores).
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
    $PIP install "llama-cpp-python==0.3.36"
fi

$PIP install -q -e ".[llama,quickstart,bench,dev]"
touch "$STAMP"
echo "edgedistill installed in $VENV"

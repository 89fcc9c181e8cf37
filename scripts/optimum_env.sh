#!/usr/bin/env bash
# A separate environment for the onnx format's optional optimum exporter (`--onnx-exporter optimum`)
# and its `optimum`-marked tests: `make test-optimum`.
#
# Why separate: optimum-onnx 0.1.0, its only release, requires transformers < 4.58, while edgedistill
# requires transformers 5. `pip install 'edgedistill[optimum]'` therefore cannot resolve until an
# optimum-onnx release accepts transformers 5. Here edgedistill is installed with --no-deps beside
# transformers 4.57 and its other dependencies (read from pyproject.toml), so the optimum path runs
# on the same checkout. onnxruntime-genai is left out: its 0.16+ releases need transformers 5 and the
# optimum path does not use it. Idempotent, like scripts/setup.sh; needs Python >= 3.11 (tomllib).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV_OPTIMUM:-.venv-optimum}
STAMP="$VENV/.edgedistill-optimum-installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/optimum_env.sh ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# the CPU wheel on the reference machine (an unpinned torch pulls a multi-GB CUDA build; see setup.sh)
"$VENV/bin/python" -c "import torch" 2>/dev/null || $PIP install -q "torch==${EDGEDISTILL_TORCH_VERSION:-2.13.0}"

# edgedistill's own requirements except the two that need transformers 5, plus the optimum stack
mapfile -t DEPS < <("$VENV/bin/python" - <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for d in deps:
    if re.match(r"(transformers|onnxruntime-genai)\b", d) is None:
        print(d)
EOF
)
$PIP install -q "${DEPS[@]}" "transformers>=4.36,<4.58" "optimum-onnx==0.1.0" "pytest>=8"
$PIP install -q --no-deps -e .
touch "$STAMP"
echo "optimum environment ready in $VENV (transformers $("$VENV/bin/python" -c 'import transformers; print(transformers.__version__)'))"

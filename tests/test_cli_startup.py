"""`edgedistill --help` stays fast: importing the CLI (which builds every option from the settings
dataclasses) must not pull in the heavy packages that only running a stage needs. Timings live in
benchmarks/cli_import_time.py; this checks the cause, which does not vary with the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("numpy", "torch", "transformers", "gguf", "tqdm", "yaml", "onnx", "onnxruntime", "llama_cpp",
         "importlib.metadata")


def test_cli_import_pulls_in_no_heavy_package():
    code = ("import json, sys; import edgedistill.cli; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [], "imported when the CLI starts; import them where they are used"


def test_help_still_lists_every_command():
    from click.testing import CliRunner

    from edgedistill.cli import main

    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for command in ("generate", "prune", "distill", "export", "inspect", "bench", "plan", "eval", "import-gguf", "run"):
        assert f"  {command}" in r.output, command

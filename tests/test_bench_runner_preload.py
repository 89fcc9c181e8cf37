"""The bench runner imports the runtime's packages before a memory budget's address-space limit is set.

On torch 2.15's CUDA build (PyPI's only Linux wheel), ``import torch`` maps several GB of libraries;
under RLIMIT_AS that failed with "failed to map segment from shared object" and a host-emulated run was
reported as "runtime package not installed". Each case runs in a fresh interpreter, so what is already
imported in the test process does not hide the order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    from edgedistill.bench import runner

    seen = []

    class Watch(runner.MemoryWatch):  # records what is imported when the limit would be set; sets none
        def __init__(self, budget, headroom):
            seen.append({"onnxruntime", "torch"} <= set(sys.modules))  # torch: the tokenizer's import
            super().__init__(None, headroom)

    runner.MemoryWatch = Watch
    spec = {"artifact": "/nonexistent/model", "format": "onnx", "main_file": "/nonexistent/model/model.onnx",
            "threads": 1, "prompt_len": 4, "gen_len": 2, "memory_budget_bytes": BUDGET}
    code, result = runner.run(spec)
    print(json.dumps({"loaded_before_limit": seen[0], "status": result["status"],
                      "unknown_format_s": runner.preload_runtime({"format": "no-such-format"})}))
""")


def _run(budget) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("BUDGET", repr(budget))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runtime_imported_before_the_budget_limit():
    r = _run(1 << 30)
    assert r["loaded_before_limit"] is True
    assert r["status"] == "error"  # the artifact does not exist: reported as before
    assert r["unknown_format_s"] == 0.0  # nothing to preload, no exception


def test_no_budget_no_preload():
    assert _run(None)["loaded_before_limit"] is False

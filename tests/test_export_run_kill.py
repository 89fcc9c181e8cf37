"""kill -9 in the middle of an export leaves no artifact directory, only a .partial temp directory
that the next run removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import export_fake_format

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import export_fake_format
from edgedistill.export import ExportConfig, export
export_fake_format.install()
export(ExportConfig(model={model!r}, artifacts=["hf:slow"], out_dir={out!r}, name="student", verify=False))
"""


@pytest.mark.integration
def test_kill_9_leaves_only_a_partial_that_the_next_run_removes(tiny_llama, tmp_path, monkeypatch):
    out = tmp_path / "artifacts"
    ready = tmp_path / "ready"
    tests_dir = str(Path(export_fake_format.__file__).parent)
    code = SCRIPT.format(tests=tests_dir, model=str(tiny_llama), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "EXPORT_FAKE_READY": str(ready)})
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the export subprocess ended before it started writing"
            assert time.monotonic() < deadline, "the export subprocess never started writing"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 1 and left[0].startswith(".student-hf-slow.") and left[0].endswith(".partial")
    assert (out / left[0] / "model.safetensors").exists()  # it really was killed mid-artifact
    assert not (out / "student-hf-slow").exists()

    # the next run (any artifact) cleans the leftover before it starts
    fake = export_fake_format.install(monkeypatch)
    from edgedistill.export import ExportConfig, export

    messages = []
    export(ExportConfig(model=str(tiny_llama), artifacts=["hf:exact"], out_dir=str(out), name="student", verify=False),
           log=messages.append)
    assert sorted(p.name for p in out.iterdir()) == ["student-hf-exact"]
    assert fake.calls and any(left[0] in m for m in messages)

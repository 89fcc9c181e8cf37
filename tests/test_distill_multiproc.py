"""Data-parallel distillation in two CPU processes (gloo): the ranks must end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.atomic import read_jsonl_records

VENV_BIN = Path(sys.executable).parent


def _data(path: Path) -> Path:
    with open(path, "w") as fh:
        for i in range(12):
            fh.write(json.dumps({"prompt": f"What is {i} plus 30?", "response": f"The answer is {i + 30}."}) + "\n")
    return path


@pytest.mark.integration
@pytest.mark.parametrize("launcher", ["accelerate", "torchrun"])
def test_two_processes_stay_in_sync(tmp_path, tiny_model_factory, launcher):
    student = tiny_model_factory("llama")
    teacher = tiny_model_factory("llama", hidden_size=96, num_layers=3)
    data = _data(tmp_path / "data.jsonl")
    out = tmp_path / "out"
    args = ["-m", "edgedistill.cli", "distill", "--student", str(student), "--teacher", str(teacher),
            "--data", str(data), "--out", str(out), "--loss", "forward_kl", "--max-steps", "3",
            "--learning-rate", "1e-3", "--val-fraction", "0.08", "--rank-checksums", "--work-dir", str(tmp_path / "w")]
    if launcher == "accelerate":
        # `accelerate launch --cpu` starts ONE process unless mpirun is set up; --multi_gpu goes through
        # torch.distributed.run, which on a machine without CUDA gives gloo CPU processes.
        cmd = [str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29519", *args]
    else:
        cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sums = [(tmp_path / "w" / f"rank-{r}.sha256").read_text().strip() for r in (0, 1)]
    assert sums[0] == sums[1] and len(sums[0]) == 64
    log = read_jsonl_records(out / "train_log.jsonl")
    steps = [r["step"] for r in log if "step" in r]
    assert steps == [1, 2, 3]  # written once, by the main process only
    start = log[0]
    assert start["event"] == "start" and start["world_size"] == 2
    assert start["val_examples"] == 1  # one rank evaluates nothing: eval must not hang
    assert "eval_loss" in log[-2]
    assert proc.stdout.count("student written to") == 1

"""Part 2 of the GPU check: one short distillation under `torchrun` and one under `accelerate launch`,
one process each, and the checkpoint and output they write.

    torchrun --nproc_per_node 1 launch.py --launched stop     library run, stops after step 2 with a checkpoint
    torchrun --nproc_per_node 1 launch.py --launched resume   library run, resumes from it to the end
    accelerate launch --num_processes 1 launch.py --launched cli    `edgedistill distill` (CLI)

`accelerate launch` refuses --multi_gpu for one process and then starts the script with no process
group; given the rendezvous variables torchrun would set (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*),
accelerate starts one (NCCL with CUDA), so that is how the check launches it.

Every launched process records the backend that torch.distributed was initialised with (NCCL where
CUDA is present, gloo on a CPU), and, on rank 0, what it wrote: the checkpoint's keys, the model
tensors' names, shapes and dtypes against the student's, and the output directory's files — the same
format as a CPU run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from boxed import run_boxed  # noqa: E402

OUTPUT_FILES = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "train_log.jsonl", "distill_config.json", "distill_summary.json"}
"""What `distill` writes on a CPU (tests/test_distill_train.py checks the same list there); transformers 5
writes no special_tokens_map.json (the special tokens live in tokenizer_config.json)."""
CHECKPOINT_KEYS = {"config", "model", "optimizer", "scheduler", "rng", "step"}
MAX_STEPS, STOP_AT = 4, 2


def prepare(root: Path) -> dict:
    """A tiny student and teacher (edgedistill.testing.tiny) and 16 examples."""
    from edgedistill.testing.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer()
    paths = {"student": root / "student", "teacher": root / "teacher", "data": root / "data.jsonl"}
    if not (paths["teacher"] / "config.json").exists():
        build_tiny_model("llama", paths["student"], tokenizer=tok)
        build_tiny_model("llama", paths["teacher"], tokenizer=tok, hidden_size=96, num_layers=3, seed=1)
    with open(paths["data"], "w") as fh:
        for i in range(16):
            fh.write(json.dumps({"prompt": f"What is {i} plus 30?", "response": f"The answer is {i + 30}."}) + "\n")
    return {k: str(v) for k, v in paths.items()}


def _settings(root: Path, out: str) -> dict:
    return dict(student=str(root / "student"), teacher=str(root / "teacher"), data=str(root / "data.jsonl"),
                out=str(root / out), loss="forward_kl", max_steps=MAX_STEPS, learning_rate=1e-3, batch_size=2,
                save_every=1, seed=0)


def _tensor_format(state: dict) -> dict:
    return {k: [list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in state.items()}


def check_checkpoint(ckpt: Path, student_dir: str) -> dict:
    """The checkpoint loads without CUDA through the library's own loader (train_state.pt read with
    weights_only=True, rng.json, meta.json) and holds the student's tensors as fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    from edgedistill.distill.checkpoint import load_newest_checkpoint
    from edgedistill.errors import EdgeDistillError

    try:
        found, state = load_newest_checkpoint(ckpt.parent.parent)  # <work>/checkpoints/step-NNNNNNN
    except EdgeDistillError as exc:
        return {"path": str(ckpt), "ok": False, "problems": [str(exc)], "n_tensors": 0, "rng_keys": None}
    want = _tensor_format(AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32).state_dict())
    got = _tensor_format(state["model"])
    problems = [] if found == ckpt else [f"the newest checkpoint that loads is {found}, not {ckpt}"]
    if set(state) != CHECKPOINT_KEYS:
        problems.append(f"keys {sorted(state)} != {sorted(CHECKPOINT_KEYS)}")
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))[:5]
        problems.append(f"model tensors differ from the student's (e.g. {diff})")
    if state.get("step") != STOP_AT:
        problems.append(f"step {state.get('step')} != {STOP_AT}")
    if not state.get("optimizer", {}).get("state"):
        problems.append("optimizer state is empty")
    return {"path": str(ckpt), "ok": not problems, "problems": problems, "n_tensors": len(got),
            "rng_keys": sorted(state["rng"][0]) if state.get("rng") else None}


def check_output(out: Path, student_dir: str) -> dict:
    from safetensors import safe_open

    files = {p.name for p in out.iterdir()} if out.is_dir() else set()
    problems = [f"missing {sorted(OUTPUT_FILES - files)}"] if OUTPUT_FILES - files else []

    def fmt(d: str) -> dict:
        with safe_open(str(Path(d) / "model.safetensors"), "pt") as f:
            return {k: [f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()] for k in f.keys()}

    if "model.safetensors" in files and fmt(str(out)) != fmt(student_dir):
        problems.append("model.safetensors has other tensor names, shapes or dtypes than the student's")
    return {"path": str(out), "ok": not problems, "problems": problems, "files": sorted(files)}


def launched(mode: str, root: Path) -> None:
    """Inside the launcher: record the process group's backend, run, and (rank 0) check what was written."""
    import torch.distributed as dist

    seen = {}
    real_init = dist.init_process_group

    def recording_init(*args, **kwargs):
        seen["requested"] = kwargs.get("backend", args[0] if args else None)
        real_init(*args, **kwargs)
        seen["backend"] = str(dist.get_backend())
        seen["world_size"] = dist.get_world_size()

    dist.init_process_group = recording_init
    rank = int(os.environ.get("RANK", "0"))
    if not (root / "teacher" / "config.json").exists():  # one process per launch: no race
        prepare(root)
    record = {"mode": mode, "rank": rank, "local_rank": os.environ.get("LOCAL_RANK")}
    if mode == "cli":
        from edgedistill.cli import main

        s = _settings(root, "out-cli")
        args = ["distill", "--student", s["student"], "--teacher", s["teacher"], "--data", s["data"], "--out",
                s["out"], "--loss", "forward_kl", "--max-steps", str(MAX_STEPS), "--learning-rate", "1e-3",
                "--batch-size", "2"]
        try:
            main.main(args=args, standalone_mode=False)
        finally:
            record["process_group"] = seen
        if rank == 0:
            record["output"] = check_output(Path(s["out"]), s["student"])
    else:
        from edgedistill.distill import DistillConfig, distill

        s = _settings(root, "out-lib")
        extra = {"stop_at_step": STOP_AT} if mode == "stop" else {"resume": True}
        summary = distill(DistillConfig(**s, **extra))
        record.update(process_group=seen, completed=summary.completed, steps=summary.steps,
                      resumed_from_step=summary.resumed_from_step, peak_memory_kind=summary.peak_memory_kind)
        if rank == 0 and mode == "stop":
            record["checkpoint"] = check_checkpoint(Path(s["out"] + ".work") / "checkpoints" / f"step-{STOP_AT:07d}",
                                                    s["student"])
        if rank == 0 and mode == "resume":
            record["output"] = check_output(Path(s["out"]), s["student"])
    (root / f"probe-{mode}-rank{rank}.json").write_text(json.dumps(record))


# --- the part (run by run_check.py) --------------------------------------------------------------------


def _launch(cmd: list[str], root: Path, mode: str, timeout: float, extra_env: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra_env}
    t0 = time.perf_counter()
    try:
        proc = run_boxed(cmd, timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"time box: stopped after {timeout:.0f} s", "command": " ".join(cmd)}
    res = {"command": " ".join(cmd), "exit_status": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1)}
    probe = root / f"probe-{mode}-rank0.json"
    if proc.returncode != 0 or not probe.exists():
        res.update(ok=False, error=(proc.stderr.strip().splitlines() or ["no output"])[-1],
                   output_tail=(proc.stdout + proc.stderr)[-3000:])
        return res
    res["probe"] = json.loads(probe.read_text())
    return res


def run(work: Path, gpu: bool, deadline: float, report: dict, save) -> None:
    """Prepare, then the three launches; each result is checked and saved as soon as it is known."""
    root = work / "launch"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    py = sys.executable
    expected_backend = "nccl" if gpu else "gloo"
    report["expected_backend"] = expected_backend
    me = str(Path(__file__).resolve())
    runs = {
        "torchrun_stop": ([py, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29531",
                           me, "--launched", "stop", str(root)], "stop"),
        "torchrun_resume": ([py, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29532",
                             me, "--launched", "resume", str(root)], "resume"),
        "accelerate_launch_cli": ([py, "-m", "accelerate.commands.launch", "--num_processes", "1",
                                   "--num_machines", "1", "--mixed_precision", "bf16" if gpu else "no",
                                   "--dynamo_backend", "no", me, "--launched", "cli", str(root)], "cli"),
    }
    rendezvous = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                  "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}
    for name, (cmd, mode) in runs.items():
        res = _launch(cmd, root, mode, deadline - time.time(), rendezvous if mode == "cli" else {})
        probe = res.get("probe", {})
        backend = probe.get("process_group", {}).get("backend")
        checks = [probe.get(k, {}).get("ok") for k in ("checkpoint", "output") if k in probe]
        if "probe" in res:
            res["ok"] = backend == expected_backend and all(checks) and (mode != "resume" or
                                                                        probe.get("resumed_from_step") == STOP_AT)
            if backend != expected_backend:
                res["error"] = f"process group backend {backend!r}, expected {expected_backend!r}"
        report[name] = res
        save()


if __name__ == "__main__" and sys.argv[1:2] == ["--launched"]:
    launched(sys.argv[2], Path(sys.argv[3]))

#!/usr/bin/env python3
"""The GPU check: one command that proves the CUDA path of `edgedistill distill` and measures it
against TRL, writing JSON + Markdown to a directory as it goes.

    python3 benchmarks/gpu/run_check.py --out DIR [--wheels .gpu-wheels] [--time-limit 450]

0. install: the carried wheels (scripts/gather_gpu_wheels.py) with `pip install --no-index --no-deps
   --target`, first on PYTHONPATH, so the image's torch is never touched; then what is installed is
   compared with the project's requirements (preflight)
1. cuda tests: `pytest -m cuda tests/test_cuda_*.py` (bf16 step, teacher and student on one device,
   top-k cache on CUDA, resume, batched HF teacher in generate); skipped where there is no CUDA
2. launchers: `torchrun --nproc_per_node 1` (stop with a checkpoint, then resume) and `accelerate
   launch --num_processes 1` (the CLI), NCCL on a GPU (benchmarks/gpu/launch.py)
3. bench: tokens/s, peak memory and MFU of forward_kl (teacher in memory, top-k cache) beside TRL
   GKDTrainer (benchmarks/gpu/bench.py)

Without CUDA the same command runs every part at tiny sizes (tests/test_gpu_check.py runs it in
the test suite: about 65 s of CPU time, mostly the start of 11 Python processes that import torch).
Each part has its own time box inside --time-limit; a part that fails or runs out of time is
recorded as such and the next one still runs. This file imports only the standard library until the
wheels are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import bench  # noqa: E402  (stdlib-only at import)
import launch  # noqa: E402
from boxed import run_boxed  # noqa: E402

SITE = Path("/tmp/edgedistill-gpu-site")
# share of the time left that each part may use when it starts (bench takes whatever remains)
SHARES = {"preflight": 0.15, "cuda_tests": 0.3, "launchers": 0.3, "bench": 1.0}

PREFLIGHT = r"""
import importlib.metadata as md, json, sys, tomllib
from packaging.requirements import Requirement
import torch
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
bad = []
for text in p["dependencies"] + p["optional-dependencies"].get("bench", []):
    r = Requirement(text)
    if r.marker is not None and not r.marker.evaluate():
        continue
    try:
        v = md.version(r.name)
    except md.PackageNotFoundError:
        v = None
    if v is None or not r.specifier.contains(v, prereleases=True):
        bad.append(f"{r}: {'absent' if v is None else v}")
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
names = ["torch", "transformers", "accelerate", "trl", "datasets", "peft", "tokenizers", "huggingface-hub"]
info = {n: version(n) for n in names}
cuda = torch.cuda.is_available()
print("RESULT " + json.dumps({"versions": info, "unsatisfied": bad, "torch_file": torch.__file__,
      "cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else None,
      "torch_cuda": torch.version.cuda}))
"""


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Report:
    """The results so far; written (JSON + Markdown) after every step, so a killed run leaves them."""

    def __init__(self, out: Path, gpu: bool, limit: float):
        self.out, self.data = out, {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gpu": gpu, "time_limit_s": limit,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
            "parts": {}}

    def part(self, name: str) -> dict:
        return self.data["parts"].setdefault(name, {"status": "running"})

    def save(self) -> None:
        self.data["load_average"] = [round(x, 2) for x in os.getloadavg()]
        self.data["elapsed_s"] = round(time.time() - T0, 1)
        atomic_write(self.out / "gpu_check.json", json.dumps(self.data, indent=2) + "\n")
        atomic_write(self.out / "gpu_check.md", markdown(self.data))


T0 = time.time()


def install(wheels: Path, part: dict) -> None:
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    part["wheels"] = [f.name for f in files]
    if files:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                               "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, files)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("pip install of the carried wheels failed: " + proc.stderr.strip()[-1500:])
    paths = ([str(SITE)] if files else []) + [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    os.environ["PYTHONPATH"] = ":".join(dict.fromkeys(paths))


def preflight(part: dict, timeout: float) -> bool:
    """Versions, requirements the environment fails, and whether CUDA is there; True when CUDA is."""
    proc = subprocess.run([sys.executable, "-c", PREFLIGHT, str(ROOT / "pyproject.toml")], capture_output=True,
                          text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("preflight failed: " + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    part.update(json.loads(lines[-1][len("RESULT "):]))
    if str(SITE) in part["torch_file"]:
        raise RuntimeError(f"torch was imported from {SITE}: the carried wheels must not hold torch")
    return part["cuda"]


def cuda_tests(part: dict, work: Path, timeout: float) -> None:
    junit = work / "cuda-tests.xml"
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_cuda_*.py"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", f"--junitxml={junit}",
           *tests]
    try:
        proc = run_boxed(cmd, timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        part["error"] = f"time box: stopped after {timeout:.0f} s"
        return
    part["exit_status"] = proc.returncode
    part["output_tail"] = proc.stdout[-2500:]
    if not junit.exists():
        part["error"] = "pytest wrote no report: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
        return
    cases = {}
    for case in ET.parse(junit).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                cases[case.get("name")] = {"outcome": outcome, "message": (child.get("message") or "")[:300]}
                break
        else:
            cases[case.get("name")] = {"outcome": outcome}
        cases[case.get("name")]["seconds"] = float(case.get("time", 0))
    part["tests"] = cases
    part["counts"] = {o: sum(c["outcome"] == o for c in cases.values())
                      for o in ("passed", "failed", "error", "skipped")}


def markdown(d: dict) -> str:
    parts = d["parts"]
    lines = ["# GPU check (benchmarks/gpu/run_check.py)", "",
             f"Started {d['started']}, {d.get('elapsed_s', 0):.0f} s of {d['time_limit_s']:.0f}; machine: "
             f"{d['machine']}; CUDA: {d['gpu']}; load average at the last write: "
             f"{'/'.join(map(str, d.get('load_average', [])))}.", ""]
    pre = parts.get("preflight", {})
    if pre:
        lines += [f"**preflight** ({pre.get('status')}): device {pre.get('device') or 'CPU'}, torch CUDA "
                  f"{pre.get('torch_cuda')}; " + ", ".join(f"{k} {v}" for k, v in pre.get("versions", {}).items()),
                  "", f"Requirements the environment fails: {pre.get('unsatisfied') or 'none'}. "
                      f"Wheels installed: {len(pre.get('wheels', []))}."
                      + (f" Error: {pre['error']}" if pre.get("error") else ""), ""]
    t = parts.get("cuda_tests", {})
    if t:
        lines += [f"**cuda tests** ({t.get('status')}): {t.get('counts') or t.get('error')}", ""]
        lines += [f"- {name}: {c['outcome']}" + (f" ({c['message']})" if c.get("message") else "")
                  for name, c in t.get("tests", {}).items()]
        lines.append("")
    la = parts.get("launchers", {})
    if la:
        lines += [f"**launchers** ({la.get('status')}), expected backend {la.get('expected_backend')}:"
                  + (f" {la['error']}" if la.get("error") else ""), ""]
        for name in ("torchrun_stop", "torchrun_resume", "accelerate_launch_cli"):
            r = la.get(name)
            if r:
                pg = r.get("probe", {}).get("process_group", {})
                lines.append(f"- {name}: {'ok' if r.get('ok') else 'FAILED'}, backend {pg.get('backend')}, "
                             f"{r.get('wall_s', '?')} s" + (f"; {r['error']}" if r.get("error") else ""))
        lines.append("")
    b = parts.get("bench", {})
    if b:
        mfu = (f"MFU against {b['peak_flops'] / 1e12:.0f} TFLOP/s bf16" if b.get("peak_flops")
               else "no MFU on a CPU")
        lines += [f"**bench** ({b.get('status')}): {b.get('warmup_steps')} warm-up + {b.get('measured_steps')} "
                  f"measured steps per run; {mfu}." + (f" Error: {b['error']}" if b.get("error") else ""), ""]
        lines += bench.markdown(b)
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for gpu_check.json and gpu_check.md")
    ap.add_argument("--wheels", default=str(ROOT / ".gpu-wheels"), help="carried wheels (installed when present)")
    ap.add_argument("--work", default="/tmp/edgedistill-gpu-check", help="scratch space (models, runs)")
    ap.add_argument("--time-limit", type=float, default=450.0, help="seconds for the whole check")
    ap.add_argument("--parts", default="cuda_tests,launchers,bench", help="comma-separated subset to run")
    args = ap.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    deadline = T0 + args.time_limit
    report = Report(out, gpu=False, limit=args.time_limit)
    pre = report.part("preflight")
    try:
        install(Path(args.wheels), pre)
        report.data["gpu"] = gpu = preflight(pre, SHARES["preflight"] * (deadline - time.time()))
        pre["status"] = "ok"
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pre.update(status="failed", error=str(exc))
        report.save()
        return 1
    report.save()
    wanted = args.parts.split(",")
    steps = {"cuda_tests": lambda p, box: cuda_tests(p, work, box - time.time()),
             "launchers": lambda p, box: launch.run(work, gpu, box, p, report.save),
             "bench": lambda p, box: bench.run(work / "bench", gpu, box, p, report.save)}
    failed = False
    for name, step in steps.items():
        if name not in wanted:
            continue
        part = report.part(name)
        started = time.time()
        box = started + SHARES[name] * (deadline - started)
        try:
            step(part, box)
        except Exception as exc:  # a part's failure is a result; the next part still runs
            part["error"] = f"{type(exc).__name__}: {exc}"
        part["seconds"] = round(time.time() - started, 1)
        part["status"] = "failed" if part_failed(name, part, gpu) else "ok"
        failed |= part["status"] == "failed"
        report.save()
    print(markdown(report.data))
    return 1 if failed else 0


def part_failed(name: str, part: dict, gpu: bool) -> bool:
    if part.get("error"):
        return True
    if name == "cuda_tests":
        c = part.get("counts", {})
        return bool(c.get("failed") or c.get("error")) or (gpu and not c.get("passed"))
    if name == "launchers":
        return not all(part.get(k, {}).get("ok")
                       for k in ("torchrun_stop", "torchrun_resume", "accelerate_launch_cli"))
    if name == "bench":
        return not part.get("cells") or any(not c.get("summary") for c in part["cells"])
    return False


if __name__ == "__main__":
    sys.exit(main())

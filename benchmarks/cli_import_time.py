"""CLI start-up: how long `import edgedistill.cli` and `edgedistill --help` take, main against a branch.

    python benchmarks/cli_import_time.py --a /tmp/main-copy --b . --rounds 5 --out benchmarks/results/cli_import_time.md

Each round runs A then B (then B then A the next round, so drift in the machine's load hits both
alike): ``python -X importtime -c "import edgedistill.cli"`` (the cumulative microseconds of
``edgedistill.cli``, what the import costs beyond the interpreter) and the wall time of
``python -m edgedistill.cli --help`` (what a user waits for). A and B are source trees put first on
PYTHONPATH; the best of the rounds is reported, with the load average read beside every sample. It
also lists which heavy packages (numpy, torch, gguf, tqdm, yaml, ...) the import pulls in.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("numpy", "torch", "transformers", "gguf", "tqdm", "yaml", "onnx", "onnxruntime", "importlib.metadata")


def _env(tree: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(tree))


def import_us(tree: Path) -> tuple[int, list[str]]:
    """(cumulative µs of edgedistill.cli, heavy packages it imported) from -X importtime."""
    # cwd=tree: `-c` and `-m` put the working directory first on sys.path, before PYTHONPATH
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edgedistill.cli"], env=_env(tree),
                         cwd=tree, capture_output=True, text=True, check=True).stderr
    total, heavy = None, []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) != 3:
            continue
        name = parts[2].strip()
        if name == "edgedistill.cli":
            total = int(parts[1])
        if name in HEAVY:
            heavy.append(name)
    if total is None:
        raise SystemExit(f"{tree}: no importtime line for edgedistill.cli:\n{err[-2000:]}")
    return total, sorted(heavy)


def help_ms(tree: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgedistill.cli", "--help"], env=_env(tree), cwd=tree, capture_output=True,
                   check=True)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="baseline source tree (e.g. a copy of main)")
    ap.add_argument("--b", type=Path, required=True, help="the tree compared with it (e.g. this branch)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, help="write the markdown result here")
    args = ap.parse_args()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for tree in trees.values():  # warm-up: byte-compile, fill the page cache
        import_us(tree)
        help_ms(tree)
    samples = {k: [] for k in trees}
    heavy = {}
    for r in range(args.rounds):
        for k in ("A", "B") if r % 2 == 0 else ("B", "A"):
            load = os.getloadavg()[0]
            us, heavy[k] = import_us(trees[k])
            ms = help_ms(trees[k])
            samples[k].append((us / 1000, ms, load))
            print(f"round {r + 1} {k}: import {us / 1000:.0f} ms, --help {ms:.0f} ms, load {load:.2f}", flush=True)
    lines = [
        "# CLI start-up time",
        "",
        f"`python {' '.join(sys.argv)}` (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs). "
        f"A = `{trees['A']}`, B = `{trees['B']}`; rounds alternate A B / B A; best of {args.rounds}.",
        "The machine was shared with other jobs (see the 1-minute load average beside each sample), so single samples "
        "vary widely; the best of the rounds is the figure to compare.",
        "",
        "| tree | best `import edgedistill.cli` ms | best `--help` wall ms | heavy packages imported |",
        "|---|---|---|---|",
    ]
    for k in trees:
        lines.append(f"| {k} | {min(s[0] for s in samples[k]):.0f} | {min(s[1] for s in samples[k]):.0f} | "
                     f"{', '.join(heavy[k]) or 'none'} |")
    lines += ["", "| round | tree | import ms | --help ms | load avg (1 min) |", "|---|---|---|---|---|"]
    for k in trees:
        for i, (imp, hlp, load) in enumerate(samples[k]):
            lines.append(f"| {i + 1} | {k} | {imp:.0f} | {hlp:.0f} | {load:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

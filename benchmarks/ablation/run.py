#!/usr/bin/env python3
"""What each part of pruning buys: run the ablation recipes beside the quickstart and tabulate them.

    python benchmarks/ablation/run.py depth depth_vocab        # after `make quickstart`
    python benchmarks/ablation/run.py --table-only              # just rebuild the table

Each variant is a recipe (benchmarks/ablation/<name>.yaml: examples/quickstart.yaml with only
student.prune changed), run by the same `run_recipe` a user's `edgedistill run` calls. Before a variant
runs, the quickstart's finished generate stage (its teacher answers and its state entry) and its eval
cache of the teacher are copied into the variant's out_dir, so every variant learns from the same
answers and is scored against the same teacher outputs; the recipe itself checks the fingerprints and
reruns anything whose settings differ. Writes benchmarks/results/ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from edgedistill.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from edgedistill.recipe import load_recipe, run_recipe  # noqa: E402

QUICKSTART = ROOT / "examples" / "quickstart.yaml"
ROWS = {"depth": "depth only", "depth_vocab": "+ vocabulary", "quickstart": "+ width (the quickstart)"}


def seed_from_quickstart(variant_out: Path, quick_out: Path) -> None:
    """Copy the quickstart's generate output + state entry and its eval cache of the teacher."""
    state_file = quick_out / "state.json"
    if not state_file.exists():
        sys.exit(f"error: {state_file} is missing: run `make quickstart` first")
    gen = json.loads(state_file.read_text())["stages"].get("generate", {})
    if gen.get("status") != "done":
        sys.exit(f"error: the quickstart's generate stage is not done ({state_file})")
    variant_out.mkdir(parents=True, exist_ok=True)
    own_state = variant_out / "state.json"
    state = json.loads(own_state.read_text()) if own_state.exists() else {"stages": {}}
    if state["stages"].get("generate", {}).get("status") != "done":
        (variant_out / "generate").mkdir(exist_ok=True)
        shutil.copy2(quick_out / "generate" / "teacher.jsonl", variant_out / "generate" / "teacher.jsonl")
        gen = dict(gen, outputs={"data": str(variant_out / "generate" / "teacher.jsonl")})
        state["stages"]["generate"] = gen
        atomic_write_json(own_state, state)
    cached = quick_out / "eval" / "models" / "teacher.json"
    if cached.exists() and not (variant_out / "eval" / "models" / "teacher.json").exists():
        (variant_out / "eval" / "models").mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, variant_out / "eval" / "models" / "teacher.json")


def row(name: str, recipe_path: Path) -> dict:
    """The shipped artifact's figures from the variant's own report (the recipe's comparison.json)."""
    from edgedistill.recipe import Plan, shipped_artifact

    recipe = load_recipe(recipe_path)
    out = Path(recipe.out_dir)
    plan = Plan(recipe, recipe_path, recipe.teacher)
    shipped_dir = shipped_artifact(plan)
    comp = json.loads((out / "report" / "comparison.json").read_text())
    prune = json.loads((out / "students" / "pruned" / "prune.json").read_text())
    teacher = comp["rows"][0]
    shipped = next(r for r in comp["rows"] if r["name"] == shipped_dir.name)
    return {"variant": ROWS.get(name, name), "recipe": str(recipe_path.relative_to(ROOT)),
            "params": shipped.get("parameters"), "kept_tokens": (prune.get("vocab") or {}).get("kept"),
            "shipped": shipped["name"], "size_bytes": shipped.get("size_bytes"),
            "decode_tok_s": shipped.get("decode_tokens_per_s"), "speed_source": shipped.get("speed_source"),
            "teacher_decode_tok_s": teacher.get("decode_tokens_per_s"), "teacher_size_bytes": teacher.get("size_bytes"),
            "rouge_l": shipped["scores"].get("rouge_l"), "teacher_rouge_l": teacher["scores"].get("rouge_l"),
            "perplexity": shipped["scores"].get("perplexity"), "teacher_perplexity": teacher["scores"].get("perplexity"),
            "distill_seconds": json.loads((out / "state.json").read_text())["stages"]["distill"].get("seconds"),
            "headline": comp.get("headline"), "load_average_when_tabulated": os.getloadavg()}


def table(rows: list[dict]) -> str:
    lines = ["| pruning | params | tokens kept | shipped file | size (vs teacher) | decode tok/s (vs teacher) "
             "| ROUGE-L (retention) | perplexity (teacher) |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        size = f"{r['size_bytes'] / 1e6:.1f} MB ({r['size_bytes'] / r['teacher_size_bytes']:.1%})"
        speed = f"{r['decode_tok_s']:.0f} ({r['decode_tok_s'] / r['teacher_decode_tok_s']:.1f}x)"
        rouge = f"{r['rouge_l']:.2f} ({r['rouge_l'] / r['teacher_rouge_l']:.0%})"
        ppl = f"{r['perplexity']:.1f} ({r['teacher_perplexity']:.1f})"
        lines.append(f"| {r['variant']} | {r['params'] / 1e6:.1f}M | {r['kept_tokens'] or 'all'} | {r['shipped']} "
                     f"| {size} | {speed} | {rouge} | {ppl} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="*", help="names of benchmarks/ablation/*.yaml to run")
    ap.add_argument("--table-only", action="store_true", help="tabulate what has run; run nothing")
    args = ap.parse_args()
    os.chdir(ROOT)  # recipes name their paths relative to the repository
    quick_out = Path(load_recipe(QUICKSTART).out_dir)
    for name in [] if args.table_only else args.variants:
        path = HERE / f"{name}.yaml"
        seed_from_quickstart(Path(load_recipe(path).out_dir), quick_out)
        run_recipe(path)
    rows = []
    for name in ("depth", "depth_vocab"):
        if (Path(load_recipe(HERE / f"{name}.yaml").out_dir) / "report" / "comparison.json").exists():
            rows.append(row(name, HERE / f"{name}.yaml"))
    rows.append(row("quickstart", QUICKSTART))
    results = ROOT / "benchmarks" / "results"
    atomic_write_json(results / "ablation.json", rows)
    atomic_write_text(results / "ablation.md", table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()

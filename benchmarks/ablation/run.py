#!/usr/bin/env python3
"""What each part of pruning buys: run the ablation recipes beside the quickstart and tabulate them.

    python benchmarks/ablation/run.py depth depth_vocab        # after `make quickstart`
    python benchmarks/ablation/run.py --size-speed-only depth   # prune, export, bench: no distill / eval
    python benchmarks/ablation/run.py --table-only              # just rebuild the table

Each variant is a recipe (benchmarks/ablation/<name>.yaml: examples/quickstart.yaml with only
student.prune changed), run by the same `run_recipe` a user's `edgedistill run` calls. Before a variant
runs, the quickstart's finished generate stage (its teacher answers and its state entry) and its eval
cache of the teacher are copied into the variant's out_dir, so every variant learns from the same
answers and is scored against the same teacher outputs; the recipe itself checks the fingerprints and
reruns anything whose settings differ. Writes benchmarks/results/ablation.{json,md}.

``--size-speed-only`` runs a variant's prune stage, exports its (undistilled) student to the recipe's
shipped quant and benches it beside the teacher with the recipe's own settings — file size and decode
speed do not depend on training, so they are measured even where distilling the variant is too slow
for the machine (the depth-only student keeps Gemma's 262,144-token head: each KD step costs about
8x the quickstart student's); its quality columns then stay empty.
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


def size_speed_only(name: str, recipe_path: Path) -> dict:
    """Prune, export and bench one variant through the recipe's own stage settings; no distill or eval."""
    from edgedistill.bench import bench
    from edgedistill.export import export
    from edgedistill.packaged_models import resolve_packaged
    from edgedistill.prune import prune
    from edgedistill.recipe import Plan

    recipe = load_recipe(recipe_path)
    teacher = str(resolve_packaged(recipe.teacher))
    plan = Plan(recipe, recipe_path, teacher)
    L = plan.layout
    seed_from_quickstart(L.out, Path(load_recipe(QUICKSTART).out_dir))
    report = prune(plan.config("prune"))
    shipped = plan.config("export").planned()[0]
    out = L.out / "undistilled"
    export(plan.config("export", model=str(L.pruned), out_dir=str(out / "artifacts"), artifacts=[":".join(shipped)]))
    art = next(p for p in sorted((out / "artifacts").iterdir()) if (p / "manifest.json").exists())
    bench_report = bench(plan.config("bench", artifacts=[str(art), teacher], out=str(out / "bench"), targets=["host"]))
    measured = {r["artifact"]: r for r in bench_report.rows if r["label"] == "measured" and r["status"] == "ok"}
    student, teach = measured.get(art.name, {}), measured.get(Path(teacher).stem, {})
    return {"variant": ROWS.get(name, name), "recipe": str(recipe_path.relative_to(ROOT)), "distilled": False,
            "params": report.parameters_after["total"], "kept_tokens": None, "shipped": art.name,
            "size_bytes": student.get("artifact_mb", 0) * 2**20 or None, "decode_tok_s": student.get("decode_tps"),
            "speed_source": "bench (target host), undistilled student", "teacher_decode_tok_s": teach.get("decode_tps"),
            "teacher_size_bytes": teach.get("artifact_mb", 0) * 2**20 or None, "rouge_l": None, "teacher_rouge_l": None,
            "perplexity": None, "teacher_perplexity": None, "distill_seconds": None,
            "headline": None, "load_average_when_measured": os.getloadavg()}


def table(rows: list[dict]) -> str:
    lines = ["| pruning | params | tokens kept | shipped file | size (vs teacher) | decode tok/s (vs teacher) "
             "| ROUGE-L (retention) | perplexity (teacher) |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        size = f"{r['size_bytes'] / 2**20:.1f} MB ({r['size_bytes'] / r['teacher_size_bytes']:.1%})"
        speed = f"{r['decode_tok_s']:.0f} ({r['decode_tok_s'] / r['teacher_decode_tok_s']:.1f}x)"
        rouge = f"{r['rouge_l']:.2f} ({r['rouge_l'] / r['teacher_rouge_l']:.0%})" if r["rouge_l"] is not None \
            else "not distilled (see below)"
        ppl = f"{r['perplexity']:.1f} ({r['teacher_perplexity']:.1f})" if r["perplexity"] is not None else "-"
        lines.append(f"| {r['variant']} | {r['params'] / 1e6:.1f}M | {r['kept_tokens'] or 'all'} | {r['shipped']} "
                     f"| {size} | {speed} | {rouge} | {ppl} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="*", help="names of benchmarks/ablation/*.yaml to run")
    ap.add_argument("--table-only", action="store_true", help="tabulate what has run; run nothing")
    ap.add_argument("--size-speed-only", action="store_true",
                    help="prune, export and bench the variants without distilling or scoring them")
    args = ap.parse_args()
    os.chdir(ROOT)  # recipes name their paths relative to the repository
    quick_out = Path(load_recipe(QUICKSTART).out_dir)
    results = ROOT / "benchmarks" / "results"
    undistilled_file = results / "ablation_size_speed.json"
    undistilled = json.loads(undistilled_file.read_text()) if undistilled_file.exists() else {}
    for name in [] if args.table_only else args.variants:
        path = HERE / f"{name}.yaml"
        if args.size_speed_only:
            undistilled[name] = size_speed_only(name, path)
            atomic_write_json(undistilled_file, undistilled)
            continue
        seed_from_quickstart(Path(load_recipe(path).out_dir), quick_out)
        run_recipe(path)
    rows = []
    for name in ("depth", "depth_vocab"):
        if (Path(load_recipe(HERE / f"{name}.yaml").out_dir) / "report" / "comparison.json").exists():
            rows.append(row(name, HERE / f"{name}.yaml"))
        elif name in undistilled:
            rows.append(undistilled[name])
    rows.append(row("quickstart", QUICKSTART))
    atomic_write_json(results / "ablation.json", rows)
    atomic_write_text(results / "ablation.md", table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()

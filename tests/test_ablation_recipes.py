"""The ablation recipes (benchmarks/ablation/) are the quickstart with only the student's pruning changed,
so the table in benchmarks/quickstart.md compares pruning and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgedistill.recipe import Plan, load_recipe

ROOT = Path(__file__).resolve().parent.parent
ABLATION = sorted((ROOT / "benchmarks" / "ablation").glob("*.yaml"))
DIFFERS = {"name", "out_dir", "student", "quick"}


def test_there_are_ablation_recipes():
    assert {p.stem for p in ABLATION} == {"depth", "depth_vocab"}


@pytest.mark.parametrize("path", ABLATION, ids=lambda p: p.stem)
def test_only_the_pruning_differs_from_the_quickstart(path):
    quick = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    variant = yaml.safe_load(path.read_text())
    assert {k: v for k, v in variant.items() if k not in DIFFERS} == {k: v for k, v in quick.items() if k not in DIFFERS}
    assert variant["student"]["prune"]["keep_layers"] == quick["student"]["prune"]["keep_layers"]
    assert "intermediate_size" not in variant["student"]["prune"]
    assert variant["out_dir"] != quick["out_dir"]
    recipe = load_recipe(path)  # and it is a valid recipe whose stages build
    Plan(recipe, path, "teacher.gguf").validate()

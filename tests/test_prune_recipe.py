"""The recipe's prune stage: student: {prune: {...}} runs `prune` between generate and distill."""

from __future__ import annotations

import json

import pytest
import yaml

from edgedistill import recipe as R
from edgedistill.errors import ConfigError

PROMPTS = [{"id": str(i), "prompt": p, "reference": r} for i, (p, r) in enumerate([
    ("What is 2 plus 2?", "4"), ("Name a colour.", "blue"), ("Say hello.", "hello"), ("Count to three.", "one two three")])]


@pytest.fixture()
def write_recipe(tmp_path, tiny_model_factory):
    teacher = tiny_model_factory("llama", num_layers=3)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))

    def write(student: dict, stages=("generate", "prune", "distill")) -> str:
        doc = {"name": "tiny", "out_dir": str(tmp_path / "out"), "task": "qa", "teacher": str(teacher),
               "student": student, "data": {"train": str(data)}, "stages": list(stages),
               "generate": {"sampling": {"temperature": 0, "max_new_tokens": 6}},
               "distill": {"loss": "forward_kl", "max_steps": 1, "batch_size": 2, "max_length": 128}}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    write.out = tmp_path / "out"
    return write


def test_prune_stage_builds_the_student_that_distill_trains(write_recipe):
    logs = []
    summary = R.run_recipe(write_recipe({"prune": {"num_layers": 2, "intermediate_size": 64}}), log=logs.append)
    assert summary.stages_run == ["generate", "prune", "distill"]
    pruned = write_recipe.out / "students" / "pruned"
    report = json.loads((pruned / "prune.json").read_text())
    assert report["shape_after"]["num_hidden_layers"] == 2 and report["shape_after"]["intermediate_size"] == 64
    assert report["settings"]["data"].endswith("teacher.jsonl")  # calibrated on the teacher's answers
    assert report["perplexity_scored_on"] == "answers"
    state = json.loads((write_recipe.out / "state.json").read_text())
    assert state["stages"]["distill"]["outputs"]["student_before"] == str(pruned)
    distilled = json.loads((write_recipe.out / "students" / "distilled" / "config.json").read_text())
    assert (distilled["num_hidden_layers"], distilled["intermediate_size"]) == (2, 64)
    assert any("layers kept" in line for line in logs)

    again = R.run_recipe(write_recipe({"prune": {"num_layers": 2, "intermediate_size": 64}}), log=lambda s: None)
    assert again.stages_run == []  # same settings: nothing reruns
    changed = R.run_recipe(write_recipe({"prune": {"num_layers": 1}}), log=lambda s: None)
    assert changed.stages_run == ["prune", "distill"]  # the teacher's answers are kept


def test_recipes_without_prune_settings_have_no_prune_stage(write_recipe):
    recipe = R.load_recipe(write_recipe({"keep_layers": [0]}))
    assert "prune" not in recipe.stages


def test_prune_settings_cannot_rewire_the_recipe(write_recipe):
    with pytest.raises(ConfigError, match="student.prune.teacher is set by the recipe itself"):
        R.run_recipe(write_recipe({"prune": {"teacher": "x", "num_layers": 1}}), log=lambda s: None)
    with pytest.raises(ConfigError, match="exactly one of path or keep_layers"):
        R.load_recipe(write_recipe({"keep_layers": [0], "prune": {"num_layers": 1}}))
    with pytest.raises(ConfigError, match="num_layers"):
        R.run_recipe(write_recipe({"prune": {"num_layers": 0}}), log=lambda s: None)

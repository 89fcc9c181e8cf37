"""`edgedistill run`: recipe validation, stage state, resume after a failure, missing inputs, --quick."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml
from click.testing import CliRunner

from edgedistill import recipe as R
from edgedistill.cli import main
from edgedistill.errors import ConfigError, EdgeDistillError

PROMPTS = [
    {"id": "a", "prompt": "What is 2 plus 2?", "reference": "4"},
    {"id": "b", "prompt": "Name a colour.", "reference": "blue"},
    {"id": "c", "prompt": "Say hello.", "reference": "hello"},
    {"id": "d", "prompt": "Count to three.", "reference": "one two three"},
]


@pytest.fixture()
def workdir(tmp_path, tiny_llama):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))

    def write(extra: dict | None = None, **top) -> str:
        doc = {
            "name": "tiny",
            "out_dir": str(tmp_path / "out"),
            "task": "qa",
            "teacher": str(tiny_llama),
            "student": {"keep_layers": [0]},
            "data": {"train": str(data), "test": str(data)},
            "stages": ["generate", "distill", "eval"],
            "generate": {"sampling": {"temperature": 0, "max_new_tokens": 6}},
            "distill": {"loss": "forward_kl", "max_steps": 1, "batch_size": 2, "max_length": 256},
            "eval": {"max_new_tokens": 3},
        }
        doc.update(top)
        for k, v in (extra or {}).items():
            doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
        path = tmp_path / "recipe.yaml"
        path.write_text("# edgedistill run recipe.yaml\n" + yaml.safe_dump(doc))
        return str(path)

    write.tmp = tmp_path
    return write


def test_unknown_top_level_key_names_valid_ones(workdir):
    path = workdir(epochs=3)
    with pytest.raises(ConfigError) as err:
        R.load_recipe(path)
    assert "'epochs'" in err.value.message and "valid keys:" in err.value.message
    assert "teacher" in err.value.message and "distill" in err.value.message


def test_unknown_stage_setting_fails_before_anything_runs(workdir):
    path = workdir({"distill": {"lr": 0.1}})
    with pytest.raises(ConfigError) as err:
        R.run_recipe(path, log=lambda s: None)
    msg = err.value.message
    assert "[distill]" in msg and "'lr'" in msg and "learning_rate" in msg
    assert not (workdir.tmp / "out" / "generate").exists()


def test_wired_setting_in_a_section_is_refused(workdir):
    path = workdir({"distill": {"data": "other.jsonl"}})
    with pytest.raises(ConfigError, match="distill.data is set by the recipe"):
        R.run_recipe(path, log=lambda s: None)


def test_student_needs_path_or_keep_layers(workdir):
    with pytest.raises(ConfigError, match="exactly one of path or keep_layers"):
        R.load_recipe(workdir(student={"path": "x", "keep_layers": [0]}))


def test_quick_overrides_and_out_dir(workdir):
    path = workdir(quick={"distill": {"max_steps": 7}, "eval": {"max_records": 2}})
    full, quick = R.load_recipe(path), R.load_recipe(path, quick=True)
    assert quick.out_dir == full.out_dir + "-quick"
    assert quick.distill["max_steps"] == 7 and quick.distill["loss"] == "forward_kl"
    assert quick.eval == {"max_new_tokens": 3, "max_records": 2}


def test_stage_with_missing_input_is_a_clear_error(workdir):
    path = workdir(stages=["distill"])
    with pytest.raises(EdgeDistillError) as err:
        R.run_recipe(path, log=lambda s: None)
    assert "needs" in err.value.message and "teacher.jsonl" in err.value.message
    assert "'generate'" in err.value.message


def test_resume_after_a_failed_stage_and_rerun_on_changed_settings(workdir, monkeypatch):
    path = workdir()
    out = workdir.tmp / "out"

    def fail(plan, log):
        raise RuntimeError("killed")

    monkeypatch.setattr(R.STAGE_REGISTRY.get("eval"), "run", fail)
    with pytest.raises(RuntimeError, match="killed"):
        R.run_recipe(path, log=lambda s: None)
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["generate"]["status"] == "done"
    assert state["stages"]["distill"]["status"] == "done"
    assert state["stages"]["eval"]["status"] == "failed"
    monkeypatch.undo()

    logs: list[str] = []
    summary = R.run_recipe(path, log=logs.append)
    assert summary.stages_run == ["eval"] and summary.stages_skipped == ["generate", "distill"]
    assert (out / "report" / "comparison.md").exists()
    table = (out / "report" / "comparison.md").read_text()
    for name in ("teacher", "student before distillation", "distilled student"):
        assert f"| {name} |" in table
    # nothing to do on a third run
    assert R.run_recipe(path, log=logs.append).stages_run == []
    # changing eval's settings reruns eval only; changing distill's reruns distill and eval
    path = workdir({"eval": {"max_new_tokens": 2}})
    assert R.run_recipe(path, log=logs.append).stages_run == ["eval"]
    path = workdir({"eval": {"max_new_tokens": 2}, "distill": {"learning_rate": 1e-3}})
    assert R.run_recipe(path, log=logs.append).stages_run == ["distill", "eval"]
    # --from-stage forces a stage and the later ones
    assert R.run_recipe(path, from_stage="distill", log=logs.append).stages_run == ["distill", "eval"]


def test_cli_run_prints_table_and_errors_cleanly(workdir):
    runner = CliRunner()
    res = runner.invoke(main, ["run", workdir(stages=["generate"])])
    assert res.exit_code == 0, res.output
    assert "[generate] done" in res.output and "recipe finished" in res.output
    bad = workdir.tmp / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        teacher: x
        student: {path: y}
        data: {train: z}
        stagez: [eval]
        """))
    res = runner.invoke(main, ["run", str(bad)])
    assert res.exit_code != 0 and "unknown key(s) 'stagez'" in res.output and "Traceback" not in res.output


def test_examples_start_with_the_command_that_runs_them():
    from pathlib import Path

    examples = sorted(Path(__file__).parents[1].joinpath("examples").glob("*.yaml"))
    assert examples
    for ex in examples:
        first = ex.read_text().splitlines()[0]
        assert first.startswith("#") and "edgedistill" in first and ex.name in first, ex
        recipe = R.load_recipe(ex)  # and they are valid recipes, plain and --quick
        R.load_recipe(ex, quick=True)
        assert recipe.teacher


def test_changing_the_student_keeps_generated_data(workdir):
    plan_a = R.Plan(R.load_recipe(workdir()), "r.yaml", "teacher")
    plan_b = R.Plan(R.load_recipe(workdir(student={"path": "other"})), "r.yaml", "teacher")
    assert plan_a.fingerprint("generate", "") == plan_b.fingerprint("generate", "")
    assert plan_a.fingerprint("distill", "x") != plan_b.fingerprint("distill", "x")


def test_pruned_student_is_rebuilt_when_keep_layers_change(workdir, monkeypatch):
    import edgedistill.distill.student as student_mod

    pruned_with = []

    def fake_prune(teacher, keep, out_dir):
        pruned_with.append(list(keep))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text("{}")
        return out_dir

    def fake_distill(cfg):
        from pathlib import Path

        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "config.json").write_text("{}")
        return "trained"

    import edgedistill.distill as distill_pkg

    monkeypatch.setattr(student_mod, "prune_layers", fake_prune)
    monkeypatch.setattr(distill_pkg, "distill", fake_distill)
    gen = workdir.tmp / "out" / "generate" / "teacher.jsonl"
    gen.parent.mkdir(parents=True)
    gen.write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    R.run_recipe(workdir(stages=["distill"]), log=lambda s: None)
    R.run_recipe(workdir(stages=["distill"]), log=lambda s: None)  # done: nothing rebuilt
    R.run_recipe(workdir(stages=["distill"], student={"keep_layers": [1]}), log=lambda s: None)
    assert pruned_with == [[0], [1]]


def test_shipped_artifact_is_the_first_export_artifact_unless_named(workdir, tmp_path):
    def plan_of(path):
        return R.Plan(R.load_recipe(path), tmp_path / "recipe.yaml", str(workdir.tmp / "teacher"))

    stages = {"stages": ["generate", "distill", "export", "eval"]}
    path = workdir({"export": {"artifacts": ["onnx:int4", "gguf:q4_k_m"]}}, **stages)
    arts = tmp_path / "out" / "artifacts"
    for name, fmt, quant in [("s-gguf-q4_k_m", "gguf", "q4_k_m"), ("s-onnx-int4", "onnx", "int4")]:
        (arts / name).mkdir(parents=True)
        (arts / name / "manifest.json").write_text(json.dumps({"format": fmt, "quant": quant}))
    assert R.shipped_artifact(plan_of(path)).name == "s-onnx-int4"  # first listed, not first by name
    path = workdir({"export": {"artifacts": ["onnx:int4", "gguf:q4_k_m"]}}, ship="gguf:q4_k_m", **stages)
    assert R.shipped_artifact(plan_of(path)).name == "s-gguf-q4_k_m"
    path = workdir({"export": {"artifacts": ["onnx:int4"]}}, ship="s-gguf-q4_k_m", **stages)
    assert R.shipped_artifact(plan_of(path)).name == "s-gguf-q4_k_m"
    path = workdir({"export": {"artifacts": ["onnx:int4"]}}, ship="gguf:q8_0", **stages)
    assert R.shipped_artifact(plan_of(path)) is None


# -- the stage registry ------------------------------------------------------------------------------


def test_every_stage_of_the_schema_is_registered():
    import dataclasses

    assert sorted(R.STAGES) == R.STAGE_REGISTRY.names()
    for name in R.STAGES:
        stage = R.STAGE_REGISTRY.get(name)
        assert stage.name == name and callable(stage.run) and stage.outputs
        # its settings class and function import, and the class is a settings dataclass
        assert dataclasses.is_dataclass(stage.settings_class()) and callable(stage.library_function())


def test_a_stage_needs_only_stages_that_run_before_it():
    for i, name in enumerate(R.STAGES):
        for need in R.STAGE_REGISTRY.get(name).needs:
            assert need in R.STAGES[:i], (name, need)


def test_the_cli_offers_every_registered_stage():
    from edgedistill.cli import run_cmd

    from_stage = next(p for p in run_cmd.params if p.name == "from_stage")
    assert list(from_stage.type.choices) == list(R.STAGES)


def test_unknown_stage_or_task_suggests_the_near_one(workdir):
    with pytest.raises(ConfigError, match=r"unknown stage 'distil'; valid: generate, .*; did you mean 'distill'\?"):
        R.load_recipe(workdir(stages=["generate", "distil"]))
    with pytest.raises(ConfigError, match=r"unknown task 'summarisation'; .*did you mean 'summarization'\?"):
        R.load_recipe(workdir(task="summarisation"))
    with pytest.raises(EdgeDistillError, match="unknown stage 'evl'; valid: .*did you mean 'eval'"):
        R.STAGE_REGISTRY.get("evl")

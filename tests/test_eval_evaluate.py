"""edgedistill eval on tiny random models: metrics, retention, agreement, reports, resume, bad data."""

from __future__ import annotations

import importlib
import json

import pytest

from edgedistill.errors import ConfigError, DataError
from edgedistill.eval import EvalConfig, evaluate
from edgedistill.tasks import TASKS

ev_mod = importlib.import_module("edgedistill.eval.evaluate")  # the module, not the function

RECORDS = [
    {"id": f"r{i}", "prompt": f"Question: What is {i} plus {i}?", "reference": f"The answer is {2 * i}."}
    for i in range(4)
]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def test_set(tmp_path):
    return _write(tmp_path / "test.jsonl", RECORDS)


@pytest.fixture(scope="module")
def other_llama(tiny_model_factory):
    return tiny_model_factory("llama", seed=7)


def test_eval_teacher_vs_itself_and_another_model(tmp_path, test_set, tiny_llama, other_llama):
    out = tmp_path / "out"
    report = evaluate(EvalConfig(models=[str(tiny_llama), str(other_llama)], names=["same", "other"],
                                 teacher=str(tiny_llama), data=str(test_set), task="summarization",
                                 out=str(out), max_new_tokens=6))
    teacher, same, other = report.rows
    assert [r["name"] for r in report.rows] == ["teacher", "same", "other"]
    # the same weights through the same runtime: identical outputs, perplexity and agreement
    assert same["scores"]["perplexity"] == pytest.approx(teacher["scores"]["perplexity"], rel=1e-5)
    assert same["retention"]["perplexity"] == pytest.approx(1.0, rel=1e-5)
    assert same["scores"]["top1_agreement"] == 1.0
    assert same["scores"]["teacher_rouge_l"] == pytest.approx(100.0)
    # a different random model disagrees and is worse at predicting what the teacher predicts
    assert other["scores"]["top1_agreement"] < 1.0
    assert other["scores"]["perplexity"] != pytest.approx(teacher["scores"]["perplexity"])
    for row in report.rows:
        assert row["parameters"] > 0 and row["size_bytes"] > 0
        # PyTorch models decode in batches (outputs as one at a time): no per-sequence speed to report
        assert row["ttft_ms"] is None and row["decode_tokens_per_s"] is None
        assert row["speed_source"] == "n/a (eval decoded in batches)" and row["batched_redone"] == 0
        assert row["perplexity_mode"] == "full"
        assert set(row["scores"]) >= {"rouge_l", "bleu", "chrf", "perplexity"}
    # reports: JSON round-trips, Markdown has one line per model, chart is a PNG
    data = json.loads((out / "eval.json").read_text())
    assert data["primary_metric"] == "rouge_l" and len(data["rows"]) == 3
    md = (out / "eval.md").read_text()
    assert "| teacher |" in md and "| other |" in md and "retention" in md
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))
    per_model = json.loads((out / "models" / "other.json").read_text())
    assert len(per_model["records"]) == len(RECORDS)


def test_eval_resumes_from_cached_models(tmp_path, test_set, tiny_llama, monkeypatch):
    cfg = dict(models=[str(tiny_llama)], names=["m"], data=str(test_set), task="qa", out=str(tmp_path / "o"),
               max_new_tokens=3)
    first = evaluate(EvalConfig(**cfg))

    def boom(*a, **k):
        raise AssertionError("should have used the cached result")

    monkeypatch.setattr(ev_mod, "score_model", boom)
    second = evaluate(EvalConfig(**cfg))
    assert second.rows[0]["scores"] == first.rows[0]["scores"]
    # other settings -> the cache does not apply
    with pytest.raises(AssertionError, match="cached"):
        evaluate(EvalConfig(**{**cfg, "max_new_tokens": 4}))


@pytest.mark.parametrize("task", TASKS.names())
def test_every_task_scores(tmp_path, tiny_llama, task):
    recs = [{"id": "a", "prompt": "Premise: x\nHypothesis: y", "reference": "entailment"},
            {"id": "b", "prompt": "What is 2+2?", "reference": "4"}]
    data = _write(tmp_path / "t.jsonl", recs)
    report = evaluate(EvalConfig(models=[str(tiny_llama)], data=str(data), task=task, max_new_tokens=3))
    primary = report.primary_metric
    assert primary == ("accuracy" if TASKS.get(task).metric == "accuracy" else "rouge_l")
    value = report.rows[0]["scores"][primary]
    assert value is not None and 0 <= value <= (1 if primary == "accuracy" else 100)
    assert report.rows[0]["scores"]["perplexity"] > 1


def test_missing_reference_names_existing_fields(tmp_path, tiny_llama):
    data = _write(tmp_path / "bad.jsonl", [{"id": "x", "prompt": "hi", "answer_text": "a"}])
    with pytest.raises(DataError) as err:
        evaluate(EvalConfig(models=[str(tiny_llama)], data=str(data), task="qa"))
    msg = err.value.message
    assert "'reference'" in msg and "answer_text, id, prompt" in msg and "record 1" in msg


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="task"):
        EvalConfig(models=["m"], data="d.jsonl", task="poetry")
    with pytest.raises(ConfigError, match="names"):
        EvalConfig(models=["a", "b"], names=["x"], data="d.jsonl", task="qa")
    with pytest.raises(ConfigError, match="last_logits_perplexity"):
        EvalConfig(models=["a"], data="d.jsonl", task="qa", last_logits_perplexity="maybe")


class _LastOnly:
    """A runtime wrapper that, like some exported runtimes, returns last-position logits only."""

    full_logits = False

    def __init__(self, inner):
        self.inner = inner

    def logits(self, ids):
        return self.inner.logits(ids)[-1:]


def test_incremental_perplexity_matches_full_forward(tiny_llama):
    from edgedistill.runtimes import open_runtime

    rt = open_runtime(str(tiny_llama))
    prompt = rt.tokenize("Question: What is 1 plus 1?")
    ref = rt.tokenize("The answer is 2.", add_special_tokens=False)
    full = ev_mod._reference_scores(rt, prompt, ref, "full")
    inc = ev_mod._reference_scores(_LastOnly(rt), prompt, ref, "incremental")
    assert inc["top1"] == full["top1"]
    assert inc["nll"] == pytest.approx(full["nll"], abs=1e-3)


def test_cli_eval_prints_table_and_writes_reports(tmp_path, test_set, tiny_llama):
    from click.testing import CliRunner

    from edgedistill.cli import main

    out = tmp_path / "cli-out"
    res = CliRunner().invoke(main, ["eval", str(tiny_llama), "--teacher", str(tiny_llama), "--name", "copy",
                                    "--data", str(test_set), "--task", "summarization", "--max-new-tokens", "3",
                                    "--max-records", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "| copy |" in res.output and f"markdown: {out / 'eval.md'}" in res.output
    assert json.loads((out / "eval.json").read_text())["records"] == 2


def test_cli_eval_bad_data_exits_without_traceback(tmp_path, tiny_llama):
    from click.testing import CliRunner

    from edgedistill.cli import main

    data = _write(tmp_path / "bad.jsonl", [{"id": "x", "prompt": "hi"}])
    res = CliRunner().invoke(main, ["eval", str(tiny_llama), "--data", str(data), "--task", "qa"])
    assert res.exit_code == 2 and "error:" in res.output and "its fields are: id, prompt" in res.output
    assert "Traceback" not in res.output

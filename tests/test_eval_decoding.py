"""Eval's batched greedy decoding: equal to one record at a time (every architecture, with and without a
stop sequence), rows failing the argmax check decoded again, and eval's outputs unchanged by batching."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgedistill.artifacts import Artifact
from edgedistill.eval import EvalConfig, evaluate
from edgedistill.eval.decoding import generate_outputs
from edgedistill.export.verify import VERIFY_PROMPTS
from edgedistill.runtimes.torch_runtime import TorchRuntime


@dataclass
class Settings:
    max_new_tokens: int = 12
    stop: list = field(default_factory=list)
    batch_size: int = 4


def _runtime(path) -> TorchRuntime:
    return TorchRuntime(Artifact(Path(path), "hf", Path(path) / "config.json"), threads=2)


def _stop_from(rt, outputs: list[list[int]]) -> tuple[int, str]:
    """A record and two characters from the middle of its unstopped output (sure to occur there)."""
    i, text = next((i, t) for i, t in enumerate(rt.detokenize(o) for o in outputs) if len(t.strip()) >= 6)
    return i, text[len(text) // 2: len(text) // 2 + 2]


def test_batched_equals_one_at_a_time_on_every_architecture(tiny_any_arch):
    _, path = tiny_any_arch
    rt = _runtime(path)
    prompts = [rt.tokenize(p) for p in VERIFY_PROMPTS]
    one = generate_outputs(rt, prompts, Settings(batch_size=1))
    batched = generate_outputs(rt, prompts, Settings(batch_size=4))
    assert not one.batched and batched.batched
    assert batched.outputs == one.outputs
    assert one.ttfts and not batched.ttfts  # only one-at-a-time decoding is timed

    i, stop = _stop_from(rt, one.outputs)
    one = generate_outputs(rt, prompts, Settings(stop=[stop], batch_size=1))
    batched = generate_outputs(rt, prompts, Settings(stop=[stop], batch_size=4))
    assert batched.outputs == one.outputs
    cut = rt.detokenize(one.outputs[i])
    assert stop in cut and stop not in rt.detokenize(one.outputs[i][:-1])  # ended at the completing token


def test_a_row_failing_the_argmax_check_is_decoded_again(tiny_llama, monkeypatch):
    rt = _runtime(tiny_llama)
    prompts = [rt.tokenize(p) for p in VERIFY_PROMPTS[:4]]
    real = TorchRuntime.greedy_batch

    def tie_broken_the_other_way(self, batch, n, stop=None):
        rows = real(self, batch, n, stop=stop)
        rows[1] = [(rows[1][0] + 1) % 100] + rows[1][1:]
        return rows

    expected = generate_outputs(rt, prompts, Settings(batch_size=1)).outputs
    monkeypatch.setattr(TorchRuntime, "greedy_batch", tie_broken_the_other_way)
    got = generate_outputs(rt, prompts, Settings(batch_size=4))
    assert got.outputs == expected
    assert got.redone == 1


def test_eval_outputs_do_not_depend_on_batch_size(tmp_path, tiny_llama, tiny_model_factory):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"Summarize: item {i} " * (i + 1),
                                        "reference": f"Item {i}."}) + "\n" for i in range(5)))
    other = tiny_model_factory("qwen2")
    reports = {}
    for bs in (1, 3):
        reports[bs] = evaluate(EvalConfig(models=[str(other)], teacher=str(tiny_llama), data=str(data),
                                          task="conversation", max_new_tokens=10, batch_size=bs,
                                          out=str(tmp_path / f"bs{bs}")))
    assert [r["name"] for r in reports[1].rows] == [r["name"] for r in reports[3].rows]
    outs = {bs: [json.loads((tmp_path / f"bs{bs}" / "models" / f).read_text())["records"]
                 for f in ("teacher.json", f"{reports[bs].rows[1]['name']}.json")] for bs in (1, 3)}
    assert [[r["output"] for r in m] for m in outs[1]] == [[r["output"] for r in m] for m in outs[3]]
    assert reports[1].rows[1]["scores"] == reports[3].rows[1]["scores"]
    assert reports[1].rows[0]["decode_tokens_per_s"] is not None
    assert reports[3].rows[0]["decode_tokens_per_s"] is None
    assert any("decoded them 3 records at a time" in n for n in reports[3].notes)


def test_eval_stop_sequence_cuts_every_models_output(tmp_path, tiny_llama):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"Tell me about {i}.", "reference": "x"}) + "\n"
                            for i in range(3)))
    evaluate(EvalConfig(models=[], teacher=str(tiny_llama), data=str(data), task="conversation",
                               max_new_tokens=12, stop=[], out=str(tmp_path / "free")))
    first = json.loads((tmp_path / "free" / "models" / "teacher.json").read_text())["records"][0]["output"]
    stop = first[len(first) // 2: len(first) // 2 + 2]
    assert stop.strip(), first
    evaluate(EvalConfig(models=[], teacher=str(tiny_llama), data=str(data), task="conversation",
                        max_new_tokens=12, stop=[stop], out=str(tmp_path / "stopped")))
    recs = json.loads((tmp_path / "stopped" / "models" / "teacher.json").read_text())["records"]
    assert all(stop not in r["output"] for r in recs)
    assert recs[0]["output"] == first[: first.find(stop)].strip()


def test_eval_default_stop_is_the_tasks():
    cfg = EvalConfig(models=["m"], data="d.jsonl", task="summarization")
    assert cfg.stop == ["\n\n"]
    assert EvalConfig(models=["m"], data="d.jsonl", task="summarization", stop=[]).stop == []
    with pytest.raises(Exception, match="batch_size"):
        EvalConfig(models=["m"], data="d.jsonl", task="qa", batch_size=0)

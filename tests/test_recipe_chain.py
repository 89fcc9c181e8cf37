"""The whole chain of `edgedistill run` on tiny models: generate, distill, export, eval, bench."""

from __future__ import annotations

import json

import pytest
import yaml

from edgedistill import recipe as R


@pytest.mark.slow
def test_full_chain_on_tiny_models(tmp_path, tiny_llama):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": f"Say {w}.", "reference": w}) + "\n"
                            for i, w in enumerate(["hello", "blue", "four", "yes"])))
    doc = {
        "out_dir": str(tmp_path / "out"), "task": "qa", "teacher": str(tiny_llama),
        "student": {"keep_layers": [0]}, "data": {"train": str(data), "test": str(data)},
        "generate": {"sampling": {"temperature": 0, "max_new_tokens": 6}},
        "distill": {"loss": "forward_kl", "max_steps": 2, "batch_size": 2, "max_length": 256},
        # tiny random models sit on near-ties, so greedy-match verification is not meaningful here
        "export": {"artifacts": ["gguf:f16", "onnx:fp32"], "verify": False},
        "eval": {"max_new_tokens": 4},
        "bench": {"targets": ["host"], "prompt_lens": [8], "gen_len": 4, "warmup": 0, "min_reps": 1,
                  "max_reps": 1, "min_duration_s": 0, "probe_host": False},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text("# edgedistill run recipe.yaml\n" + yaml.safe_dump(doc))
    summary = R.run_recipe(path, log=lambda s: None)
    # every stage but prune, which a student given by keep_layers has no work for (it prunes in distill)
    chain = [s for s in R.STAGES if s != "prune"]
    assert summary.stages_run == chain
    out = tmp_path / "out"
    report = json.loads((out / "report" / "comparison.json").read_text())
    names = [r["name"] for r in report["rows"]]
    assert names[:3] == ["teacher", "student before distillation", "distilled student"]
    arts = {r["name"]: r for r in report["rows"][3:]}
    assert set(arts) == {"distilled-gguf-f16", "distilled-onnx-fp32"}
    for row in arts.values():
        # each artifact scored through its own runtime, close to the student it came from
        assert row["runtime"] in ("llama.cpp", "onnxruntime")
        assert row["scores"]["perplexity"] is not None
        assert row["speed_source"] == "bench (target host)"
        assert row["bench"] and row["bench"][0]["target"] == "host"
    student_ppl = report["rows"][2]["scores"]["perplexity"]
    assert arts["distilled-onnx-fp32"]["scores"]["perplexity"] == pytest.approx(student_ppl, rel=1e-3)
    assert arts["distilled-gguf-f16"]["scores"]["perplexity"] == pytest.approx(student_ppl, rel=2e-2)
    assert (out / "report" / "comparison.png").exists()
    # the teacher is benched like the artifacts, and the headline compares it with the shipped artifact
    # (the first export artifact, gguf:f16), both decode speeds from bench
    assert report["rows"][0]["speed_source"] == "bench (target host)"
    assert report["headline"].startswith("student vs teacher: ")
    assert "× " in report["headline"] and " on host, " in report["headline"]
    # a tiny random teacher scores 0% accuracy, so there is no retention to state
    assert report["headline"].endswith(("of the teacher's accuracy kept", "accuracy retention n/a"))
    assert any("shipped artifact distilled-gguf-f16" in n for n in report["notes"])
    assert summary.headline == report["headline"]
    assert report["headline"] in (out / "report" / "comparison.md").read_text()
    state = json.loads((out / "state.json").read_text())
    assert sorted(state["stages"]) == sorted(chain)
    assert all(state["stages"][s]["status"] == "done" for s in chain)
    # each stage records exactly the outputs its registration declares
    assert {s: sorted(state["stages"][s]["outputs"]) for s in chain} == \
        {s: sorted(R.STAGE_REGISTRY.get(s).outputs) for s in chain}
    # a second run does nothing
    assert R.run_recipe(path, log=lambda s: None).stages_run == []

"""Data-aware export: calibration data -> importance matrix + manifest record; the task-level check
(retention on the user's eval data) as a verification breach; quality-aware --target; bad input."""

from __future__ import annotations

import json
import shutil

import pytest

import export_fake_format
from edgedistill.errors import ConfigError, DataError, EdgeDistillError, VerificationError
from edgedistill.export import ExportConfig, export
from edgedistill.testing.tiny import CORPUS


@pytest.fixture
def fake(monkeypatch):
    return export_fake_format.install(monkeypatch)


@pytest.fixture(scope="module")
def eval_file(tiny_llama, tmp_path_factory):
    """Held-out records whose references are the float model's own greedy answers: the float model
    scores (close to) the maximum, so retention measures exactly what an artifact changes."""
    from edgedistill.eval.evaluate import EvalConfig, find_prompt_format, score_model

    prompts = [f"Tell me about item {i}: {CORPUS[i % len(CORPUS)]}" for i in range(6)]
    recs = [{"id": str(i), "prompt": p, "reference": "x"} for i, p in enumerate(prompts)]
    cfg = EvalConfig(models=[str(tiny_llama)], data="unused", task="conversation", max_new_tokens=8,
                     perplexity=False)
    fmt = find_prompt_format([str(tiny_llama)])  # the prompts as eval (and the task check) render them
    texts = [fmt.text([{"role": "user", "content": p}]) for p in prompts]
    out = score_model(str(tiny_llama), "float", recs, texts, fmt, cfg)
    path = tmp_path_factory.mktemp("evaldata") / "eval.jsonl"
    path.write_text("".join(json.dumps({"id": r["id"], "prompt": p, "reference": r["output"] or "."}) + "\n"
                            for p, r in zip(prompts, out["records"])))
    return path


@pytest.fixture
def calib_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": t}], "response": t[::-1]}) + "\n"
                            for t in CORPUS))
    return path


def _cfg(model, out, *artifacts, **kw):
    kw.setdefault("new_tokens", 6)
    kw.setdefault("eval_max_new_tokens", 8)
    return ExportConfig(model=str(model), artifacts=list(artifacts), out_dir=str(out), **kw)


def test_task_check_passes_exact_and_fails_lossy_artifact_as_failed(fake, tiny_llama, eval_file, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(VerificationError) as info:
        export(_cfg(tiny_llama, out, "hf:exact", "hf:lossy", eval_data=str(eval_file), task="conversation"),
               log=lambda m: None)
    assert "task conversation: rouge_l" in info.value.message and "hf:lossy" in info.value.message
    result = info.value.result
    exact, lossy = result.artifacts
    t = exact.verification["figures"]["task"]
    # ROUGE-L is on a 0-100 scale; a record whose greedy answer is empty scores 0 for everyone
    assert exact.passed and t["float_score"] > 50 and t["score"] == t["float_score"] and t["retention"] == 1.0
    assert t["records"] == 6 and t["metric"] == "rouge_l"
    assert not lossy.passed and lossy.path.name.endswith("-hf-lossy.failed")
    m = json.loads((lossy.path / "manifest.json").read_text())
    task = m["verification"]["figures"]["task"]
    assert task["retention"] < 0.95 and m["verification"]["thresholds"]["min_retention"] == 0.95
    assert any("of the float model's" in f for f in m["verification"]["failures"])
    # the summary table carries the retention column
    table = result.summary()
    assert "retention" in table.splitlines()[0] and "100.0%" in table


def test_min_retention_is_the_bar(fake, tiny_llama, eval_file, tmp_path):
    """The bar is inclusive: an exact copy (retention exactly 1) passes even min_retention 1.0."""
    result = export(_cfg(tiny_llama, tmp_path / "b", "hf:q4", eval_data=str(eval_file), task="conversation",
                         min_retention=1.0, eval_records=3), log=lambda m: None)
    task = result.artifacts[0].verification["figures"]["task"]
    assert result.passed and task["retention"] == 1.0 and task["records"] == 3 and task["min_retention"] == 1.0


def test_quality_aware_target_picks_smallest_that_keeps_retention(fake, tiny_llama, eval_file, tmp_path,
                                                                   monkeypatch):
    import edgedistill.targets as targets

    monkeypatch.setattr(targets, "FORMATS", (*targets.FORMATS, "hf"))  # profiles name real formats only
    tdir = tmp_path / "targets"
    tdir.mkdir()
    (tdir / "fakedev.yaml").write_text(
        "name: fakedev\ndescription: test\ncpu: x\ncpu_big_cores: 2\ncpu_little_cores: 0\nisa: x86-64\n"
        "ram_mb: 4096\nmemory_budget_mb: 2048\nmemory_bandwidth_gbs: 10\npeak_gflops: 10\n"
        "runtimes: [torch]\nformats: [hf]\npreferred_quants: ['hf:q4']\ncontext_length: 256\n"
        "runtime_overhead_mb: 10\nthreads: 2\ntransport: {kind: local}\nsources: {memory_bandwidth_gbs: "
        "'estimate: test', peak_gflops: 'estimate: test', ram_mb: 'estimate: test', memory_budget_mb: 'estimate'}\n")
    messages = []
    out = tmp_path / "t"
    result = export(ExportConfig(model=str(tiny_llama), target="fakedev", targets_dir=str(tdir), out_dir=str(out),
                                 name="s", new_tokens=6, eval_data=str(eval_file), task="conversation",
                                 eval_max_new_tokens=8), log=messages.append)
    sel = result.selection
    # hf:lossy (4.0 bits) is smaller than hf:q4 (4.5) and tried first, but loses the task score
    assert [r["spec"] for r in sel.quality] == ["hf:lossy", "hf:q4"]
    assert sel.chosen.spec == "hf:q4" and "smallest fitting candidate that keeps" in sel.reason
    assert not sel.quality[0]["passed"] and sel.quality[0]["retention"] < 0.95
    assert sel.quality[1]["retention"] == pytest.approx(1.0) and sel.quality[1]["projected_tok_s"] > 0
    assert [a.path.name for a in result.artifacts] == ["s-hf-q4"]
    assert sorted(p.name for p in out.iterdir()) == ["s-hf-q4"]  # the rejected candidate is not left behind
    shown = "\n".join(messages)
    assert "candidates tried on the eval data" in shown and "rejected" in shown
    assert result.to_dict()["selection"]["quality"][1]["spec"] == "hf:q4"


def test_calibration_is_recorded_and_not_used_by_types_without_imatrix(fake, tiny_llama, calib_file, tmp_path):
    result = export(_cfg(tiny_llama, tmp_path / "c", "hf:exact", calibration_data=str(calib_file)),
                    log=lambda m: None)
    m = json.loads((result.artifacts[0].path / "manifest.json").read_text())
    from edgedistill.export.source import sha256_file

    assert m["calibration"]["sha256"] == sha256_file(calib_file)
    assert m["calibration"]["records"] == len(CORPUS)
    assert m["calibration"]["used_for"].startswith("none")


def test_calibration_texts_include_responses(calib_file):
    from edgedistill.export.calibration import load_calibration

    c = load_calibration(calib_file, max_records=3)
    assert c.records == 3 and c.texts[0].endswith(CORPUS[0][::-1]) and CORPUS[0] in c.texts[0]


@pytest.fixture(scope="module")
def llama256(tiny_model_factory):
    return tiny_model_factory("llama", hidden_size=256)


def test_calibration_feeds_kquants_imatrix(llama256, tmp_path):
    """gguf:q4_k_m with calibration data = with an importance matrix: same types and size, other
    rounding; the manifest says which data and how many tokens."""
    pytest.importorskip("llama_cpp")
    calib = tmp_path / "calib.jsonl"
    calib.write_text("".join(json.dumps({"prompt": t, "response": t}) + "\n" for t in CORPUS))
    plain = export(ExportConfig(model=str(llama256), artifacts=["gguf:q4_k_m"], out_dir=str(tmp_path / "p"),
                                verify=False), log=lambda m: None)
    messages = []
    imx = export(ExportConfig(model=str(llama256), artifacts=["gguf:q4_k_m", "gguf:q8_0"],
                              out_dir=str(tmp_path / "i"), verify=False, calibration_data=str(calib)),
                 log=messages.append)
    a = (plain.artifacts[0].path / "model.gguf").read_bytes()
    b = (imx.artifacts[0].path / "model.gguf").read_bytes()
    assert len(a) == len(b) and a != b
    m = json.loads((imx.artifacts[0].path / "manifest.json").read_text())
    c = m["calibration"]
    assert c["used_for"] == "imatrix" and c["records"] == len(CORPUS) and c["tokens"] > len(CORPUS)
    assert len(c["imatrix_sha256"]) == 64
    q8 = json.loads((imx.artifacts[1].path / "manifest.json").read_text())
    assert q8["calibration"]["used_for"].startswith("none")  # gguf-py's q8_0 is not data-aware
    assert any("importance matrix" in msg for msg in messages)
    assert "imatrix_s" in imx.timings


def test_bad_input_names_the_option_before_any_model_loads(fake, tiny_llama, tmp_path, monkeypatch):
    import edgedistill.export.verify as verify

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(verify, "build_reference", no_model)
    monkeypatch.setattr("edgedistill.export.run.build_reference", no_model)
    out = str(tmp_path / "o")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "reference": "x"}\nnot json\n')
    noref = tmp_path / "noref.jsonl"
    noref.write_text('{"prompt": "hi"}\n')
    with pytest.raises(DataError, match="--calibration-data"):
        export(_cfg(tiny_llama, out, "hf:exact", calibration_data=str(bad)), log=lambda m: None)
    with pytest.raises(DataError, match="--calibration-data .*no such file"):
        export(_cfg(tiny_llama, out, "hf:exact", calibration_data=str(tmp_path / "none.jsonl")), log=lambda m: None)
    with pytest.raises(DataError, match="--eval-data .*'reference'"):
        export(_cfg(tiny_llama, out, "hf:exact", eval_data=str(noref), task="conversation"), log=lambda m: None)
    with pytest.raises(DataError, match="--eval-data"):
        export(_cfg(tiny_llama, out, "hf:exact", eval_data=str(bad), task="qa"), log=lambda m: None)
    for kw, field in [({"min_retention": 0}, "min_retention"), ({"min_retention": 1.5}, "min_retention"),
                      ({"eval_data": str(noref)}, "task"), ({"task": "qa"}, "eval_data"),
                      ({"eval_data": str(noref), "task": "poetry"}, "task"),
                      ({"eval_data": str(noref), "task": "qa", "verify": False}, "eval_data")]:
        with pytest.raises(ConfigError, match=field):
            _cfg(tiny_llama, out, "hf:exact", **kw)
    assert not (tmp_path / "o").exists()


def test_cli_bad_input_is_one_error_line(tiny_llama, tmp_path):
    from click.testing import CliRunner

    from edgedistill.cli import main

    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--artifact", "gguf:q8_0", "--out", str(tmp_path / "o"),
                                  "--eval-data", str(tmp_path / "none.jsonl"), "--task", "qa",
                                  "--min-retention", "1.2"])
    assert r.exit_code == 2 and "min_retention" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "--artifact", "gguf:q8_0", "--out", str(tmp_path / "o"),
                                  "--eval-data", str(tmp_path / "none.jsonl"), "--task", "qa"])
    assert r.exit_code == 2 and "--eval-data" in r.output and "no such file" in r.output
    assert not (tmp_path / "o").exists()
    shutil.rmtree(tmp_path / "o", ignore_errors=True)

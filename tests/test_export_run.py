"""The export orchestrator (edgedistill.export.run) against a fake format: atomic output, manifests,
verification verdicts, input errors before any work, disk-full, leftovers of killed runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import export_fake_format
from edgedistill.config import from_dict
from edgedistill.errors import ConfigError, EdgeDistillError, VerificationError
from edgedistill.export import ExportConfig, export
from edgedistill.quant_spec import FormatQuant


@pytest.fixture
def fake(monkeypatch):
    return export_fake_format.install(monkeypatch)


@pytest.fixture
def model_copy(tiny_llama, tmp_path):
    """A private copy of the tiny llama that a test may damage."""
    dst = tmp_path / "student"
    shutil.copytree(tiny_llama, dst)
    return dst


def _cfg(model, out, *artifacts, **kw):
    kw.setdefault("new_tokens", 6)  # keeps the PyTorch reference quick; the logic does not depend on it
    return ExportConfig(model=str(model), artifacts=list(artifacts), out_dir=str(out), **kw)


def test_exact_artifact_is_verified_and_has_a_manifest(fake, model_copy, tmp_path):
    out = tmp_path / "artifacts"
    result = export(_cfg(model_copy, out, "hf:exact"), log=lambda m: None)
    art = out / "student-hf-exact"
    assert result.passed and [a.path for a in result.artifacts] == [art]
    assert sorted(p.name for p in out.iterdir()) == ["student-hf-exact"]  # no temp dirs left
    m = json.loads((art / "manifest.json").read_text())
    assert m["format"] == "hf" and m["quant"] == "exact" and m["name"] == "student-hf-exact"
    assert m["source"]["model_type"] == "llama"
    assert set(m["source"]["weights_sha256"]) == {"model.safetensors"}
    from transformers import AutoModelForCausalLM

    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_copy).parameters())
    assert m["source"]["param_count"] == n
    assert "model.safetensors" in m["files"] and "manifest.json" not in m["files"]
    assert m["files"]["model.safetensors"]["bytes"] == (art / "model.safetensors").stat().st_size
    assert m["size_bytes"] == sum(f["bytes"] for f in m["files"].values())
    from importlib.metadata import version

    assert m["tool_versions"]["torch"] == version("torch") and m["tool_versions"]["transformers"] == version("transformers")
    assert m["tool_versions"]["fake-exporter"] == "1.0"  # versions returned by the format are merged
    v = m["verification"]
    assert v["passed"] and v["failures"] == []
    f = v["figures"]
    assert f["kl_mean"] < 1e-9 and f["max_abs_logit_diff"] < 1e-4
    assert f["greedy_match"] == 1.0 and f["greedy_prefix_match"] == 1.0
    assert f["tokenizer_mismatches"] == 0 and f["tokenizer_checked"] >= 25
    assert v["thresholds"] == {"max_kl": 1e-6, "min_greedy_match": 1.0, "max_abs_logit_diff": 1e-3,
                               "min_stream_consistency": 0.9, "tokenizer_mismatches": 0}
    assert f["stream_consistency"] == 1.0 and f["greedy_match_kind"] == "teacher-forced"
    assert m["created_utc"].endswith("+00:00")


def test_failed_verification_is_kept_as_failed_and_raises_exit_3(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(VerificationError) as info:
        export(_cfg(model_copy, out, "hf:exact", "hf:noisy"), log=lambda m: None)
    assert info.value.exit_code == 3
    assert "hf:noisy" in info.value.message and "mean KL" in info.value.message
    result = info.value.result
    assert [a.passed for a in result.artifacts] == [True, False]  # the good one was still written
    assert (out / "student-hf-exact").is_dir()
    assert not (out / "student-hf-noisy").exists()
    failed = out / "student-hf-noisy.failed"
    m = json.loads((failed / "manifest.json").read_text())
    assert m["verification"]["passed"] is False and m["verification"]["failures"]
    assert sorted(p.name for p in out.iterdir()) == ["student-hf-exact", "student-hf-noisy.failed"]


def test_discard_failed_leaves_nothing(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(VerificationError):
        export(_cfg(model_copy, out, "hf:noisy", keep_failed=False), log=lambda m: None)
    assert list(out.iterdir()) == []


def test_no_verify_writes_without_comparing(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    result = export(_cfg(model_copy, out, "hf:noisy", verify=False), log=lambda m: None)
    assert result.passed and not result.artifacts[0].verified
    assert json.loads((out / "student-hf-noisy" / "manifest.json").read_text())["verification"] is None


def test_success_replaces_an_older_failure(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    (out / "student-hf-exact.failed").mkdir(parents=True)
    export(_cfg(model_copy, out, "hf:exact"), log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == ["student-hf-exact"]


@pytest.mark.parametrize(
    "artifact, expected",
    [
        ("hf:int3", "quantization 'int3' is not available for format hf; valid: exact, noisy"),
        ("nope:int4", "unknown export format 'nope'; valid:"),
    ],
)
def test_bad_format_or_quant_lists_valid_ones(fake, model_copy, tmp_path, artifact, expected):
    with pytest.raises(EdgeDistillError, match=expected.replace("(", r"\(")):
        export(_cfg(model_copy, tmp_path / "a", "hf:exact", artifact), log=lambda m: None)
    assert fake.calls == []  # checked before the first artifact was written


def test_unsupported_architecture_lists_supported(fake, tiny_model_factory, tmp_path):
    phi3 = tiny_model_factory("phi3")
    with pytest.raises(EdgeDistillError, match=r"cannot export architecture 'phi3'.*supported: llama, qwen2"):
        export(_cfg(phi3, tmp_path / "a", "hf:exact"), log=lambda m: None)
    assert fake.calls == []


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: (d / "config.json").unlink(), "has no config.json"),
        (lambda d: [(d / f).unlink() for f in ("tokenizer.json",)], "has no tokenizer"),
        (lambda d: (d / "model.safetensors").unlink(), "has no weights"),
        (lambda d: _truncate(d / "model.safetensors", 1000), "corrupt or truncated"),
        (lambda d: _truncate(d / "model.safetensors", 4), "corrupt or truncated"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64), "corrupt or truncated"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    ],
    ids=["no-config", "no-tokenizer", "no-weights", "truncated", "tiny-file", "garbage", "bad-config"],
)
def test_bad_model_directory_fails_before_any_work(fake, model_copy, tmp_path, damage, expected):
    damage(model_copy)
    out = tmp_path / "a"
    with pytest.raises(EdgeDistillError, match=expected):
        export(_cfg(model_copy, out, "hf:exact"), log=lambda m: None)
    assert fake.calls == [] and not out.exists()


def _truncate(f: Path, size: int) -> None:
    data = f.read_bytes()
    f.write_bytes(data[:size] if size < 100 else data[:-size])


def test_disk_full_leaves_nothing_half_written(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(EdgeDistillError, match="no space left"):
        export(_cfg(model_copy, out, "hf:nospace", verify=False), log=lambda m: None)
    assert list(out.iterdir()) == []


def test_disk_space_is_checked_up_front(fake, model_copy, tmp_path, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("edgedistill.export.run.shutil.disk_usage", lambda p: usage(10**9, 10**9, 1000))
    with pytest.raises(EdgeDistillError, match=r"not enough disk space .* MB are free"):
        export(_cfg(model_copy, tmp_path / "a", "hf:exact"), log=lambda m: None)
    assert fake.calls == []


def test_existing_artifact_needs_overwrite(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    export(_cfg(model_copy, out, "hf:exact", verify=False), log=lambda m: None)
    with pytest.raises(EdgeDistillError, match="already exist"):
        export(_cfg(model_copy, out, "hf:exact", verify=False), log=lambda m: None)
    assert json.loads((out / "student-hf-exact" / "manifest.json").read_text())["verification"] is None
    export(_cfg(model_copy, out, "hf:exact", overwrite=True), log=lambda m: None)  # now verified
    assert json.loads((out / "student-hf-exact" / "manifest.json").read_text())["verification"]["passed"]
    assert sorted(p.name for p in out.iterdir()) == ["student-hf-exact"]


def test_partial_leftovers_are_removed_at_the_next_run(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    leftover = out / ".student-hf-exact.abc123.partial"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")
    messages = []
    export(_cfg(model_copy, out, "hf:exact", verify=False), log=messages.append)
    assert not leftover.exists()
    assert any("interrupted" in m for m in messages)


def test_name_and_duplicates(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    result = export(_cfg(model_copy, out, "hf:exact", "hf:exact", name="tiny", verify=False), log=lambda m: None)
    assert [a.path.name for a in result.artifacts] == ["tiny-hf-exact"]


# -- ExportConfig ------------------------------------------------------------------------------------

def test_config_from_dict_with_nested_options():
    cfg = from_dict(ExportConfig, {"model": "m", "artifacts": "gguf:q4_k_m, onnx:int4",
                                   "options": {"int4_block_size": 64}}, where="recipe.yaml [export]")
    assert cfg.artifacts == ["gguf:q4_k_m", "onnx:int4"] and cfg.options.int4_block_size == 64
    assert cfg.planned() == [FormatQuant("gguf", "q4_k_m"), FormatQuant("onnx", "int4")]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"artifacts": ["gguf:q8_0"]}, "model"),
        ({"model": "m"}, "artifacts"),
        ({"model": "m", "artifacts": ["gguf"]}, "artifacts"),
        ({"model": "m", "artifacts": ["gguf:q8_0"], "target": "raspberry-pi-5"}, "target"),
        ({"model": "m", "artifacts": ["gguf:q8_0"], "new_tokens": 0}, "new_tokens"),
        ({"model": "m", "artifacts": ["gguf:q8_0"], "threads": 0}, "threads"),
        ({"model": "m", "artifacts": ["gguf:q8_0"], "prompts": []}, "prompts"),
        ({"model": "m", "artifacts": ["gguf:q8_0"], "name": "a/b"}, "name"),
        ({"model": "m", "artifacts": ["gguf:q8_0"], "options": {"int4_block_size": 48}}, "options.int4_block_size"),
    ],
)
def test_config_validation_names_the_field(data, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        from_dict(ExportConfig, data, where="recipe.yaml [export]")


def test_config_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown key.*'quants'.*valid keys: .*artifacts"):
        from_dict(ExportConfig, {"model": "m", "quants": ["x"]}, where="recipe.yaml [export]")


def test_missing_imatrix_is_an_error_before_work(fake, model_copy, tmp_path):
    cfg = from_dict(ExportConfig, {"model": str(model_copy), "artifacts": ["hf:exact"], "out_dir": str(tmp_path),
                                   "options": {"imatrix": str(tmp_path / "none.dat")}})
    assert isinstance(cfg.options.imatrix, Path)
    with pytest.raises(EdgeDistillError, match="none.dat: no such file"):
        export(cfg, log=lambda m: None)
    assert fake.calls == []


def test_an_artifact_its_runtime_cannot_load_fails_verification(fake, model_copy, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(VerificationError, match="runtime could not load or run the artifact"):
        export(_cfg(model_copy, out, "hf:unloadable"), log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == ["student-hf-unloadable.failed"]
    from edgedistill.export.inspect import format_report, inspect_artifact

    assert "failure: the runtime could not load" in format_report(inspect_artifact(out / "student-hf-unloadable.failed"))

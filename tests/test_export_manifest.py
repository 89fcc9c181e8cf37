"""manifest.json contents, integrity checks and `edgedistill inspect`."""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib.metadata import PackageNotFoundError, version

import pytest
from click.testing import CliRunner

import export_fake_format
from edgedistill.cli import main
from edgedistill.errors import EdgeDistillError
from edgedistill.export import ExportConfig, export
from edgedistill.export.inspect import format_report, inspect_artifact
from edgedistill.export.manifest import check_files, file_table, tool_versions


@pytest.fixture(scope="module")
def _exported(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifest-artifacts")
    with pytest.MonkeyPatch.context() as mp:
        export_fake_format.install(mp)
        export(ExportConfig(model=str(tiny_llama), artifacts=["hf:exact"], out_dir=str(out), name="m",
                            new_tokens=6), log=lambda m: None)
    return out / "m-hf-exact"


@pytest.fixture
def artifact(_exported, tmp_path, monkeypatch):
    """A private copy of one verified artifact (tests may damage it); the fake format stays registered."""
    export_fake_format.install(monkeypatch)
    dst = tmp_path / _exported.name
    shutil.copytree(_exported, dst)
    return dst


def test_tool_versions_cover_the_stack():
    v = tool_versions()
    for pkg in ("edgedistill", "torch", "transformers", "onnxruntime", "onnxruntime-genai", "gguf"):
        assert v[pkg] == version(pkg)
    # optional extras: recorded when installed, None (not missing) when not
    for pkg in ("llama-cpp-python", "optimum", "optimum-onnx"):
        try:
            assert v[pkg] == version(pkg)
        except PackageNotFoundError:
            assert pkg in v and v[pkg] is None


def test_file_table_hashes_and_sizes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"hello")
    (tmp_path / "sub" / "b.txt").write_text("x" * 10)
    (tmp_path / "manifest.json").write_text("{}")
    table = file_table(tmp_path)
    assert table == {
        "a.bin": {"sha256": hashlib.sha256(b"hello").hexdigest(), "bytes": 5},
        "sub/b.txt": {"sha256": hashlib.sha256(b"x" * 10).hexdigest(), "bytes": 10},
    }


def test_source_sha_matches_the_weights(artifact, tiny_llama):
    m = json.loads((artifact / "manifest.json").read_text())
    want = hashlib.sha256((tiny_llama / "model.safetensors").read_bytes()).hexdigest()
    assert m["source"]["weights_sha256"] == {"model.safetensors": want}
    assert m["source"]["path"] == str(tiny_llama.resolve())
    assert m["export_options"]["int4_block_size"] == 32 and m["format_info"]["fake"] is True


def test_check_files_detects_tampering(artifact):
    m = json.loads((artifact / "manifest.json").read_text())
    assert check_files(artifact, m) == []
    (artifact / "config.json").write_text((artifact / "config.json").read_text() + " ")
    (artifact / "tokenizer.json").unlink()
    problems = check_files(artifact, m)
    assert any(p.startswith("config.json:") for p in problems) and "tokenizer.json: missing" in problems


def test_inspect_shows_manifest_verification_and_file_metadata(artifact):
    info = inspect_artifact(artifact)
    assert info["format"] == "hf" and info["integrity"] == {"ok": True, "problems": []}
    assert "model.safetensors" in info["describe"]["files"]
    text = format_report(info)
    for needle in ("format        hf / exact", "verification  PASSED", "KL mean", "greedy", "tokenizer",
                   "model.safetensors", "integrity     files match the manifest", "file metadata", "torch "):
        assert needle in text, needle


def test_cli_inspect_human_and_json(artifact):
    runner = CliRunner()
    r = runner.invoke(main, ["inspect", str(artifact)])
    assert r.exit_code == 0, r.output
    assert "verification  PASSED" in r.output
    r = runner.invoke(main, ["inspect", str(artifact), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["manifest"]["verification"]["passed"] is True and data["describe"]["files"]


def test_cli_inspect_errors_cleanly(tmp_path):
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "error: artifact" in r.output and "Traceback" not in r.output
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text("{broken")
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "x")])
    assert r.exit_code == 2 and "corrupt manifest" in r.output


def test_inspect_of_a_damaged_artifact_still_reports(artifact):
    (artifact / "model.safetensors").write_bytes(b"0" * 10)
    info = inspect_artifact(artifact)
    assert info["integrity"]["ok"] is False
    assert "PROBLEMS" in format_report(info)

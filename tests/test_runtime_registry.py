"""edgedistill.runtime_registry: every registered runtime opens an artifact of its format, has its own
runtime tests, and the stand-alone device runner's copy agrees with the registry."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import pytest

from edgedistill.artifacts import FORMAT_RUNTIME, detect_artifact
from edgedistill.bench import runner
from edgedistill.runtime_registry import RUNTIMES, artifact_formats, runtime_for_format, runtime_specs
from edgedistill.runtimes import open_runtime, runtime_class
from onnx_export_helpers import shared_cache

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_model_factory):
    return shared_cache(tmp_path_factory, tiny_model_factory)


# runtime name -> (how to build a tiny artifact of its format, the test module of that runtime).
# A runtime registered without a row here fails test_every_runtime_has_a_case.
CASES = {
    "torch": (lambda cache, llama, gguf: llama, "test_runtime_torch.py"),
    "llama.cpp": (lambda cache, llama, gguf: gguf, "test_runtime_llamacpp.py"),
    "onnxruntime": (lambda cache, llama, gguf: cache.artifact("onnx", "llama", "fp32")[0], "test_runtime_onnx.py"),
    "ort-genai": (lambda cache, llama, gguf: cache.artifact("ort-genai", "llama", "fp32")[0], "test_runtime_onnx.py"),
}


@pytest.mark.parametrize("name", RUNTIMES.names())
def test_every_runtime_has_a_case(name, cache, tiny_llama, tiny_llama_gguf):
    assert name in CASES, f"runtime {name!r} is registered but has no case here (artifact builder + test module)"
    build, test_module = CASES[name]
    spec = RUNTIMES.get(name)
    cls = runtime_class(name)
    # its own runtime tests exist and exercise its class
    source = (TESTS / test_module).read_text()
    assert cls.__name__ in source, f"{test_module} never mentions {cls.__name__}"
    pytest.importorskip(spec.packages[0])
    art = detect_artifact(build(cache, tiny_llama, tiny_llama_gguf))
    assert (art.format, art.runtime) == (spec.format, spec.name)
    assert art.main_file.match(spec.main_file)
    with open_runtime(art, threads=1) as rt:
        assert type(rt) is cls and rt.name == spec.name
        assert rt.greedy(rt.tokenize("hello"), 2)  # it really runs
    assert spec.missing_packages() == []
    assert spec.kv_bytes_per_value(None) in (2, 4)


def test_registry_is_the_one_table():
    specs = runtime_specs()
    assert len({s.format for s in specs}) == len(specs), "two runtimes claim one format"
    assert FORMAT_RUNTIME == {s.format: s.name for s in specs}
    assert [s.detect_rank for s in specs] == sorted({s.detect_rank for s in specs})
    from edgedistill.targets import RUNTIMES as PROFILE_RUNTIMES
    from edgedistill.targets import FORMATS as PROFILE_FORMATS

    assert set(PROFILE_RUNTIMES) == set(RUNTIMES.names())
    assert all(runtime_for_format(f).name in PROFILE_RUNTIMES for f in PROFILE_FORMATS)
    with pytest.raises(Exception, match="unknown artifact format 'tflite'; known: ort-genai, gguf, onnx, hf"):
        runtime_for_format("tflite")
    # the Hugging Face baseline needs transformers (model classes) and torch (runs them)
    assert set(runtime_for_format("hf").packages) == {"torch", "transformers"}


def test_export_formats_are_the_registered_ones_without_importing_them():
    """targets.FORMATS (what a profile may list) is read from the specs' ``exporter`` without importing
    an exporter; each named module is the one that registers that format in export.formats.FORMATS."""
    import subprocess
    import sys

    code = ("import sys, edgedistill.targets as t; print(sorted(t.FORMATS)); "
            "print([m for m in sys.modules if m.startswith('edgedistill.export.')])")
    out = subprocess.run([sys.executable, "-c", code], cwd=TESTS.parent, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    from edgedistill.export.formats import FORMATS

    assert out == [str(sorted(FORMATS.names())), "[]"]
    for spec in runtime_specs():
        if spec.exporter:
            assert type(FORMATS.get(spec.format)).__module__ == spec.exporter, spec.name
        else:
            assert spec.format not in FORMATS, f"{spec.format} is exported but its runtime names no exporter"


def _imported_top_packages(cls) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_device_runner_copy_agrees_with_the_registry():
    """runner.py is stdlib-only (copied to devices), so its adapters table is its own: it must name
    registered formats, and each adapter must import exactly the packages the registry says it needs."""
    assert set(runner.STANDALONE) <= set(artifact_formats())
    for fmt, adapter in runner.STANDALONE.items():
        assert _imported_top_packages(adapter) == set(runtime_for_format(fmt).packages), fmt


def test_bare_files_and_magic_come_from_the_registry(tmp_path, tiny_llama_gguf):
    art = detect_artifact(tiny_llama_gguf)
    assert (art.format, art.path, art.main_file) == ("gguf", tiny_llama_gguf, tiny_llama_gguf)
    onnx_file = tmp_path / "d" / "model.onnx"
    onnx_file.parent.mkdir()
    onnx_file.write_bytes(b"\x08\x07")
    art = detect_artifact(onnx_file)
    assert (art.format, art.path) == ("onnx", onnx_file.parent)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 32)
    with pytest.raises(Exception, match="not a GGUF file"):
        detect_artifact(fake)
    other = tmp_path / "d" / "x.tflite"
    other.write_bytes(b"x")
    with pytest.raises(Exception, match=r"unknown file type \(expected \.gguf, \.onnx or a directory\)"):
        detect_artifact(other)

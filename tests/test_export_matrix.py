"""Every registered architecture through every format and quantization, with the real verification.

The case table below is written out by hand on purpose: ``test_matrix_covers_the_registries``
compares it with the format registry and the tiny-model architectures, so a new quant type or
architecture without a case here fails the suite. The architectures of each format are the tiny
ones whose ``model_type`` the format lists in ``supported_architectures``.

Default run: llama through onnx:int4, gguf:q8_0 and gguf:q4_k_m; everything else is ``slow``.
"""

from __future__ import annotations

import json

import pytest

import edgedistill.export  # noqa: F401  (registers the formats)
from edgedistill.export import ExportConfig, export
from edgedistill.export.formats import FORMATS
from edgedistill.export.inspect import inspect_artifact
from edgedistill.testing.tiny import ARCHITECTURES, build_tokenizer

FORMAT_QUANTS = {
    "onnx": ("fp32", "fp16", "int8", "int4"),
    "ort-genai": ("fp32", "int8", "int4"),
    "gguf": ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s",
             "q4_1", "q4_0", "q3_k_m", "q2_k"),
}
DEFAULT_RUN = {("llama", "onnx", "int4"), ("llama", "gguf", "q8_0"), ("llama", "gguf", "q4_k_m")}


def _model_types() -> dict[str, str]:
    tok = build_tokenizer()
    return {arch: make(tok, 384, 64, 2, 4).model_type for arch, make in ARCHITECTURES.items()}


MODEL_TYPES = _model_types()


def expected_matrix() -> set[tuple[str, str, str]]:
    """(arch, format, quant) for every registered format x quant x supported tiny architecture."""
    return {
        (arch, name, quant)
        for name, fmt in FORMATS.items()
        for quant in fmt.quants
        for arch, mt in MODEL_TYPES.items()
        if mt in fmt.supported_architectures
    }


def _width(fmt: str, quant: str) -> int:
    """llama.cpp's K-quants need rows that are multiples of 256; narrower ones silently fall back to
    other types, so those cases use width 256 to test the real quantization path."""
    if fmt == "gguf":
        from edgedistill.export.gguf import GGUF_QUANTS

        if GGUF_QUANTS.get(quant).route == "llama.cpp":
            return 256
    return 64


CASES = [
    (arch, fmt, quant)
    for fmt, quants in FORMAT_QUANTS.items()
    for quant in quants
    for arch in sorted(ARCHITECTURES)
    if fmt in FORMATS and MODEL_TYPES[arch] in FORMATS.get(fmt).supported_architectures
]


def test_matrix_covers_the_registries():
    assert set(FORMAT_QUANTS) == set(FORMATS.names()), "a format has no cases (or cases name an unknown format)"
    for name, fmt in FORMATS.items():
        assert set(FORMAT_QUANTS[name]) == set(fmt.quants), f"{name}: quant types and cases differ"
    assert set(CASES) == expected_matrix()
    covered = {arch for arch, _, _ in CASES}
    assert covered == set(ARCHITECTURES), f"architectures no format exports: {set(ARCHITECTURES) - covered}"
    assert DEFAULT_RUN <= set(CASES)


@pytest.mark.parametrize(
    "arch, fmt, quant",
    [pytest.param(*c, marks=() if c in DEFAULT_RUN else pytest.mark.slow, id="-".join(c)) for c in CASES],
)
def test_export_and_verify(arch, fmt, quant, tiny_model_factory, tmp_path, tmp_path_factory):
    from onnx_export_helpers import shared_cache

    model = tiny_model_factory(arch, hidden_size=_width(fmt, quant))
    # onnx: the float graph of this model is exported once per session (the other export tests' too)
    with shared_cache(tmp_path_factory, tiny_model_factory).float_graph_exported_once():
        result = export(ExportConfig(model=str(model), artifacts=[f"{fmt}:{quant}"], out_dir=str(tmp_path),
                                     name=arch), log=lambda m: None)
    art = result.artifacts[0]
    assert art.passed and art.verified and art.path == tmp_path / f"{arch}-{fmt}-{quant}"
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["format"] == fmt and manifest["quant"] == quant and manifest["verification"]["passed"]
    assert manifest["verification"]["figures"]["tokenizer_mismatches"] == 0
    info = inspect_artifact(art.path)
    assert info["integrity"]["ok"] and info["describe"]
    if fmt == "onnx":
        from onnx_export_helpers import check_onnx_files

        # Not full_check (strict shape inference) since the default graph is the ort-genai builder's: it
        # annotates one Constant with a rank-0 shape that inference makes rank 1 (onnxruntime runs it, and
        # verification above compared it with PyTorch); the structural check still runs.
        check_onnx_files(art.path)
    elif fmt == "ort-genai":
        import onnxruntime_genai as og

        og.Model(str(art.path))
    elif fmt == "gguf":
        llama_cpp = pytest.importorskip("llama_cpp")
        llm = llama_cpp.Llama(model_path=str(art.path / "model.gguf"), n_ctx=128, n_threads=2, verbose=False)
        # A random tiny model may rank an end-of-generation token first; with those barred it must decode
        # at least four tokens (llama-cpp-python may add a few to finish a multi-byte character).
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        eog = {t: float("-inf") for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        assert llm.token_eos() in eog
        out = llm.create_completion("The quick brown fox", max_tokens=4, temperature=0.0, logit_bias=eog)
        assert out["usage"]["completion_tokens"] >= 4


def test_target_aware_export_end_to_end(tiny_llama, tmp_path, capsys):
    """--target picks the profile's first preferred format:quant that fits and names the dir after it."""
    messages = []
    result = export(ExportConfig(model=str(tiny_llama), target="raspberry-pi-5", out_dir=str(tmp_path),
                                 name="s", verify=False), log=messages.append)
    sel = result.selection
    assert sel.chosen.spec == "gguf:q4_k_m" and "most preferred" in sel.reason
    assert [a.path.name for a in result.artifacts] == ["s-gguf-q4_k_m"]
    assert any("* gguf:q4_k_m" in m for m in messages)  # the candidates table was shown
    assert result.to_dict()["selection"]["chosen"] == "gguf:q4_k_m"

"""Shared by the onnx / ort-genai export tests: export once per (format, arch, quant, options), verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.export import FORMATS, ExportOptions
from edgedistill.export.verify import TOKENIZER_CORPUS, build_reference, verify_artifact

# Texts for the runtime-level tokenization checks (besides verify.TOKENIZER_CORPUS).
EXTRA_TEXTS = ("", " ", "x", "\n\n", "<|user|>\nhi<|end|>\n<|assistant|>\n", "🙂🙂🙂 ١٢٣ ½ ∑ ∞")


class ArtifactCache:
    """Exports are the slow part: each (format, arch, quant, options) is written once per session."""

    def __init__(self, tmp_path_factory, model_factory):
        self.tmp = tmp_path_factory
        self.model_factory = model_factory
        self.artifacts: dict = {}
        self.refs: dict = {}

    def reference(self, arch: str):
        if arch not in self.refs:
            self.refs[arch] = build_reference(self.model_factory(arch), threads=2)
        return self.refs[arch]

    def artifact(self, fmt: str, arch: str, quant: str, options: ExportOptions | None = None) -> tuple[Path, dict]:
        options = options or ExportOptions()
        key = (fmt, arch, quant, repr(options))
        if key not in self.artifacts:
            out = self.tmp.mktemp(f"{fmt}-{arch}-{quant}")
            info = FORMATS.get(fmt).write(self.model_factory(arch), out, quant, options)
            self.artifacts[key] = (out, info)
        return self.artifacts[key]

    def verify(self, fmt: str, arch: str, quant: str, options: ExportOptions | None = None):
        path, _ = self.artifact(fmt, arch, quant, options)
        spec = FORMATS.get(fmt).quants[quant]
        return verify_artifact(path, spec, self.reference(arch), threads=2)


_SHARED: dict = {}


def shared_cache(tmp_path_factory, model_factory) -> ArtifactCache:
    """One cache for all test modules of the session (the runtime tests reuse the export tests' files)."""
    key = id(tmp_path_factory)
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = ArtifactCache(tmp_path_factory, model_factory)
    return _SHARED[key]


# onnxruntime registers these in the default ONNX domain although they are not ONNX operators;
# onnxruntime-genai's builder uses them. onnx.checker knows only real ONNX ops there.
ORT_DEFAULT_DOMAIN_EXTRAS = {"SimplifiedLayerNormalization"}


def check_onnx_files(path: Path) -> list[Path]:
    """onnx.checker on every .onnx file, by path so external data is checked too.

    For a graph with onnxruntime's extra default-domain ops (the genai builder's), those nodes are
    moved to the com.microsoft domain in an in-memory copy, and the rest of the graph is checked
    (external data loaded, so initializer files are checked too).
    """
    import onnx

    files = sorted(path.glob("*.onnx"))
    assert files, f"no .onnx file in {path}"
    for f in files:
        header = onnx.load(str(f), load_external_data=False)
        if not any(n.op_type in ORT_DEFAULT_DOMAIN_EXTRAS and n.domain in ("", "ai.onnx") for n in header.graph.node):
            onnx.checker.check_model(str(f), full_check=False)
            continue
        model = onnx.load(str(f))  # with external data: a missing/short data file fails here
        for n in model.graph.node:
            if n.op_type in ORT_DEFAULT_DOMAIN_EXTRAS and n.domain in ("", "ai.onnx"):
                n.domain = "com.microsoft"
        onnx.checker.check_model(model, full_check=False)
    return files


def assert_tokenization_identical(runtime, reference_runtime) -> None:
    for text in tuple(TOKENIZER_CORPUS) + EXTRA_TEXTS:
        for special in (True, False):
            assert runtime.tokenize(text, add_special_tokens=special) == reference_runtime.tokenize(
                text, add_special_tokens=special
            ), (text, special)


def kl_mean(ref_logits: np.ndarray, art_logits: np.ndarray) -> float:
    def lsm(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p, q = lsm(ref_logits.astype(np.float64)), lsm(art_logits.astype(np.float64))
    return float((np.exp(p) * (p - q)).sum(-1).mean())

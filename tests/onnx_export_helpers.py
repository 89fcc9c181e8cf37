"""Shared by the onnx / ort-genai export tests: export once per (format, arch, quant, options), verify."""

from __future__ import annotations

import contextlib
import shutil
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
        self.float_graphs: dict = {}

    def reference(self, arch: str):
        if arch not in self.refs:
            self.refs[arch] = build_reference(self.model_factory(arch), threads=2)
        return self.refs[arch]

    def artifact(self, fmt: str, arch: str, quant: str, options: ExportOptions | None = None) -> tuple[Path, dict]:
        options = options or ExportOptions()
        key = (fmt, arch, quant, repr(options))
        if key not in self.artifacts:
            out = self.tmp.mktemp(f"{fmt}-{arch}-{quant}")
            with self.float_graph_exported_once():
                info = FORMATS.get(fmt).write(self.model_factory(arch), out, quant, options)
            self.artifacts[key] = (out, info)
        return self.artifacts[key]

    @contextlib.contextmanager
    def float_graph_exported_once(self):
        """The onnx format writes every quant from a fresh fp32 export (a builder subprocess, ~4 CPU-s on the
        tiny model); the graph depends only on the model and the exporter settings, so within the cache
        each is exported once and copied where the format would export it again. What the format does
        with the copy (fp32 as it is, the fp16 conversion, the quantizers) runs for every artifact."""
        from edgedistill.export import onnx_format

        real = onnx_format._export_float

        def exported_once(model_dir: Path, out_dir: Path, options: ExportOptions) -> None:
            key = (str(Path(model_dir).resolve()), options.onnx_exporter, options.opset)  # all it reads
            if key not in self.float_graphs:
                graph = self.tmp.mktemp("onnx-float-graph")
                real(model_dir, graph, options)
                self.float_graphs[key] = graph  # only once it was written whole
            shutil.copytree(self.float_graphs[key], out_dir, dirs_exist_ok=True)

        onnx_format._export_float = exported_once
        try:
            yield
        finally:
            onnx_format._export_float = real

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


def stored_initializer_bytes(graph: Path) -> dict[str, tuple[int, int]]:
    """name -> (bytes stored, onnx dtype) of every initializer, inline or in external data."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(graph), load_external_data=False)
    out = {}
    for t in model.graph.initializer:
        size = (int({e.key: e.value for e in t.external_data}["length"]) if uses_external_data(t)
                else len(t.raw_data) or t.ByteSize())
        out[t.name] = (size, t.data_type)
    return out


def assert_int4_artifact_holds_only_what_the_weights_need(path: Path, model_dir: Path, block_size: int = 32,
                                                       float_embedding: bool = False) -> None:
    """An int4 artifact must weigh about what block-int4 weights + fp32 scales + float vectors need.

    Written for issue #11's follow-up (a 25M-parameter student's onnx:int4 was 253 MiB): it fails on
    a float copy of a quantized matrix, on stored rotary cos/sin tables, and on a stale float weights
    file in the directory. Budget from the PyTorch weights: every matrix as int4 (numel / 2) plus one
    fp32 scale per block; vectors (norms, biases) as fp32; a tied embedding counted twice (a table
    and an LM head, as onnx:int4 stores them; ort-genai shares one). ``float_embedding``: an untied
    table may stay float32 (ort-genai:int4's builder default, documented).
    """
    import onnx
    from safetensors.numpy import load_file

    from edgedistill.export.onnx_rotary import rotary_table_pairs

    weights = load_file(str(Path(model_dir) / "model.safetensors"))
    int4 = scales = vectors = 0
    for name, w in weights.items():
        if w.ndim < 2:
            vectors += w.size * 4
            continue
        if float_embedding and name.endswith("embed_tokens.weight") and "lm_head.weight" in weights:
            vectors += w.size * 4  # allowed as float32, counted with the float data
            continue
        times = 2 if name.endswith("embed_tokens.weight") and "lm_head.weight" not in weights else 1
        int4 += times * w.size // 2
        scales += times * w.shape[0] * -(-w.shape[-1] // block_size) * 4
    stored = stored_initializer_bytes(path / "model.onnx")
    floats = {n: b for n, (b, dtype) in stored.items()
              if dtype in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)}
    # float data: only the scales, the vectors and a few small constants (rotary inv_freq, eps, ...)
    assert sum(floats.values()) <= scales + vectors + 4096, sorted(floats.items(), key=lambda kv: -kv[1])[:5]
    model = onnx.load(str(path / "model.onnx"), load_external_data=False)
    assert rotary_table_pairs(model) == [], "rotary cos/sin tables are stored instead of computed"
    # every file holding weights: the graph's own file and whatever data files lie beside it
    weight_files = [f for f in path.iterdir() if f.is_file() and f.name.startswith("model.onnx")]
    total = sum(f.stat().st_size for f in weight_files)
    graph_overhead = 128 * 1024  # node definitions, names, shapes of a 2-layer graph
    assert total <= 1.1 * (int4 + scales + vectors) + graph_overhead, (
        {f.name: f.stat().st_size for f in weight_files}, int4 + scales + vectors)

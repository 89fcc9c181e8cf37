"""Speed ceilings from a device's memory bandwidth and arithmetic peak ("projected" figures).

Decode of one token reads every weight once plus the KV cache so far, so its ceiling is
``bandwidth / bytes_per_token``. Prefill is compute-bound: about ``2 x params`` FLOPs per token
(multiply-add per weight; attention's own FLOPs are left out, small at these context lengths), so its
ceiling is ``peak_flops / (2 x params)``. Both are upper bounds: real runtimes reach a fraction.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgedistill.artifacts import Artifact
from edgedistill.runtime_registry import kv_bytes_per_value
from edgedistill.targets import TargetProfile, kv_cache_bytes


@dataclass
class ModelShape:
    params: int
    """All weights (estimated from the config where the file does not say)."""
    weight_bytes: int
    """Bytes of weights as stored in the artifact."""
    bytes_read_per_token: int
    """Weight bytes a decode step reads: all of them but an untied input embedding (one row)."""
    num_layers: int
    num_kv_heads: int
    head_dim: int
    kv_bytes_per_value: float
    source: str

    def kv_cache_bytes(self, context: int) -> int:
        return kv_cache_bytes(self.num_layers, self.num_kv_heads, self.head_dim, context, self.kv_bytes_per_value)


def _params_from_config(c: dict) -> tuple[int, int]:
    """(all params, input-embedding params if untied else 0) of a decoder-only transformer config."""
    h, v = c["hidden_size"], c["vocab_size"]
    nh = c["num_attention_heads"]
    nkv = c.get("num_key_value_heads") or nh
    hd = c.get("head_dim") or h // nh
    inter = c.get("intermediate_size") or 4 * h
    per_layer = h * nh * hd * 2 + 2 * h * nkv * hd + 3 * h * inter + 2 * h
    tied = c.get("tie_word_embeddings", False)
    total = per_layer * c["num_hidden_layers"] + v * h * (1 if tied else 2) + h
    return total, 0 if tied else v * h


def _onnx_gathered_bytes(model_file) -> int | None:
    """Stored bytes of the tables an ONNX decoder only gathers rows from (the input embedding).

    A decode step reads one row of such a table, not all of it. Read from the graph rather than from
    config.json because the graph is what runs: weight-only int4 (MatMulNBits) leaves the embedding in
    float (so an average bytes-per-parameter would undercount it badly) and gives a tied LM head its
    own quantized copy, while onnxruntime-genai may share one quantized table between
    ``GatherBlockQuantized`` and the LM head (then it is read in full every step and is not counted
    here). None when the file cannot be read.
    """
    try:
        import onnx
        from onnx.helper import tensor_dtype_to_np_dtype

        m = onnx.load(str(model_file), load_external_data=False)
    except Exception:
        return None
    inits = {i.name: i for i in m.graph.initializer if len(i.dims) >= 2}
    gathered, used_otherwise = set(), set()
    for node in m.graph.node:
        for pos, name in enumerate(node.input):
            if name not in inits:
                continue
            # Gather's data is input 0; GatherBlockQuantized's data, scales and zero points are 0, 2, 3
            if (node.op_type == "Gather" and pos == 0) or (node.op_type == "GatherBlockQuantized" and pos != 1):
                gathered.add(name)
            else:
                used_otherwise.add(name)
    total = 0
    for name in gathered - used_otherwise:
        t = inits[name]
        n = 1
        for d in t.dims:
            n *= d
        itemsize = tensor_dtype_to_np_dtype(t.data_type).itemsize
        total += n * itemsize // (2 if t.data_type in (onnx.TensorProto.UINT4, onnx.TensorProto.INT4) else 1)
    return total


def _onnx_decoder_file(artifact: Artifact) -> Path:
    """The decoder graph: the artifact's .onnx file, or the one genai_config.json names."""
    if artifact.format == "ort-genai":
        cfg = json.loads((artifact.path / "genai_config.json").read_text())
        return artifact.path / cfg["model"]["decoder"].get("filename", "model.onnx")
    return artifact.main_file


def _quant_of(artifact: Artifact) -> str | None:
    """The quant an export wrote into the manifest (None for a bare file or an HF directory)."""
    quant = artifact.manifest.get("quant")
    return quant if isinstance(quant, str) else None


def model_shape(artifact: Artifact) -> ModelShape:
    """Parameter count, weight bytes and KV geometry of an artifact (GGUF: from its tensors)."""
    fmt = artifact.format
    if fmt == "gguf":
        return _gguf_shape(artifact)
    cfg_file = artifact.path / "config.json" if artifact.path.is_dir() else None
    cfg = json.loads(cfg_file.read_text()) if cfg_file and cfg_file.exists() else None
    if cfg is None and (artifact.path / "genai_config.json").exists():
        d = json.loads((artifact.path / "genai_config.json").read_text())["model"]["decoder"]
        cfg = {"hidden_size": d["hidden_size"], "num_attention_heads": d["num_attention_heads"],
               "num_key_value_heads": d.get("num_key_value_heads"), "head_dim": d.get("head_size"),
               "num_hidden_layers": d["num_hidden_layers"], "vocab_size": json.loads(
                   (artifact.path / "genai_config.json").read_text())["model"]["vocab_size"]}
    if cfg is None:
        from edgedistill.errors import EdgeDistillError

        raise EdgeDistillError(f"artifact {artifact.path}: no config.json to read the model's shape from")
    cfg = cfg.get("text_config", cfg)
    params, embed = _params_from_config(cfg)
    nh = cfg["num_attention_heads"]
    weights = sum(p.stat().st_size for p in artifact.path.rglob("*")
                  if p.suffix in (".safetensors", ".bin", ".onnx", ".data", ".onnx_data") or p.name.endswith(".onnx.data"))
    weights = weights or artifact.size_bytes()
    embed_bytes = embed * weights / params  # average bytes per parameter, unless the graph says better
    if fmt in ("onnx", "ort-genai"):
        graph_says = _onnx_gathered_bytes(_onnx_decoder_file(artifact))
        if graph_says is not None:
            embed_bytes = graph_says
    return ModelShape(
        params=params, weight_bytes=weights,
        bytes_read_per_token=int(weights - embed_bytes),
        num_layers=cfg["num_hidden_layers"], num_kv_heads=cfg.get("num_key_value_heads") or nh,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // nh,
        kv_bytes_per_value=kv_bytes_per_value(fmt, _quant_of(artifact)), source="config.json (parameter count estimated from it)",
    )


def _gguf_shape(artifact: Artifact) -> ModelShape:
    from gguf import Keys

    from edgedistill.gguf_header import read_gguf_header

    header = read_gguf_header(artifact.main_file, max_array=0)  # scalars only: arrays are skipped
    params = sum(t.n_elements for t in header.tensors)
    sizes = {t.name: t.n_bytes for t in header.tensors}
    weights = sum(sizes.values())
    untied_embed = sizes["token_embd.weight"] if "output.weight" in sizes and "token_embd.weight" in sizes else 0
    nh = header.arch_get(Keys.Attention.HEAD_COUNT)
    nkv = header.arch_get(Keys.Attention.HEAD_COUNT_KV) or nh
    hd = header.arch_get(Keys.Attention.KEY_LENGTH) or header.arch_get(Keys.LLM.EMBEDDING_LENGTH) // nh
    return ModelShape(
        params=params, weight_bytes=weights, bytes_read_per_token=weights - untied_embed,
        num_layers=header.arch_get(Keys.LLM.BLOCK_COUNT), num_kv_heads=nkv, head_dim=hd,
        kv_bytes_per_value=kv_bytes_per_value("gguf", None), source="GGUF tensor table and metadata",
    )


@dataclass
class Projection:
    target: str
    context_length: int
    bytes_per_token: int
    decode_ceiling_tps: float | None
    prefill_ceiling_tps: float | None
    kv_cache_mb: float
    label: str = "projected"

    def to_dict(self) -> dict:
        return asdict(self)


def project(shape: ModelShape, target: TargetProfile, context: int | None = None) -> Projection:
    """Ceilings on ``target`` with the KV cache filled to ``context`` (default: the profile's context)."""
    context = context or target.context_length
    kv = shape.kv_cache_bytes(context)
    per_token = shape.bytes_read_per_token + kv
    bw = target.memory_bandwidth_gbs
    gf = target.peak_gflops
    return Projection(
        target=target.name, context_length=context, bytes_per_token=per_token,
        decode_ceiling_tps=bw * 1e9 / per_token if bw else None,
        prefill_ceiling_tps=gf * 1e9 / (2 * shape.params) if gf else None,
        kv_cache_mb=kv / 2**20,
    )


def static_fit(shape: ModelShape, target: TargetProfile, artifact_bytes: int, runtime: str | None = None,
               facts=None, prompt_len: int | None = None):
    """The static check: artifact size + KV cache at the profile's context + the runtime's memory, by
    ``memory.fit_check`` (the runtime's terms, as `plan` predicts; the profile's overhead without a runtime)."""
    from edgedistill.bench.memory import DEFAULT_PROMPT_LEN, fit_check

    return fit_check(target, max(artifact_bytes, shape.weight_bytes), shape.kv_cache_bytes(target.context_length),
                     runtime, facts, prompt_len or DEFAULT_PROMPT_LEN, target.context_length)

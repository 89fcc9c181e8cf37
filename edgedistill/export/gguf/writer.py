"""HF model directory -> one GGUF file, with our own converter on gguf-py.

    meta = write_gguf(model_dir, out_dir / "model.gguf", "q4_k_m", imatrix=None)

Reads ``config.json`` and the safetensors weights tensor by tensor (memory stays near one tensor's
size plus the output), writes the architecture's hyperparameters, the full tokenizer and the tensors
named by gguf-py's ``TensorNameMap``. Types other than f32/f16/bf16/q8_0 go through llama.cpp's
quantizer from an f32 intermediate file that is deleted afterwards.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgedistill.errors import EdgeDistillError
from edgedistill.export.gguf.architectures import GgufArchitecture, architecture_for, text_config
from edgedistill.export.gguf.inspect import describe_gguf
from edgedistill.export.gguf.quantize import GGUF_QUANTS, GgufQuant, encode_tensor, file_type, llama_cpp_quantize
from edgedistill.export.gguf.tokenizer import tokenizer_metadata

# Prefixes of multimodal checkpoints (Gemma 3 4B+): the text model's weights, and parts we drop.
_TEXT_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.")
_SKIP_PREFIXES = ("vision_tower.", "model.vision_tower.", "multi_modal_projector.", "model.multi_modal_projector.")


def load_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.exists():
        raise EdgeDistillError(f"{model_dir} has no config.json; is it a Hugging Face model directory?")
    try:
        return _flatten_rope_parameters(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise EdgeDistillError(f"{path}: not valid JSON ({exc})") from None


def _flatten_rope_parameters(cfg: dict) -> dict:
    """transformers 5 saves ``rope_parameters`` (per layer type for Gemma 3) instead of ``rope_theta`` /
    ``rope_scaling`` / ``rope_local_base_freq``; give the architecture code the keys it reads."""
    for c in (cfg, cfg.get("text_config")):
        rp = c.get("rope_parameters") if isinstance(c, dict) else None
        if not isinstance(rp, dict):
            continue
        full = rp.get("full_attention", rp)
        if "sliding_attention" in rp and "rope_theta" in rp["sliding_attention"]:
            c.setdefault("rope_local_base_freq", rp["sliding_attention"]["rope_theta"])
        if "rope_theta" in full:
            c.setdefault("rope_theta", full["rope_theta"])
        if full.get("rope_type", "default") != "default" and not c.get("rope_scaling"):
            c["rope_scaling"] = {k: v for k, v in full.items() if k != "rope_theta"}
    return cfg


def iter_hf_tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) for every weight, one at a time, with multimodal prefixes normalised."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise EdgeDistillError(f"{model_dir}: no *.safetensors weights found (save the model with safe_serialization=True)")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                if name.startswith(_SKIP_PREFIXES):
                    continue
                tensor = st.get_tensor(name).float().numpy()
                for prefix in _TEXT_PREFIXES:
                    if name.startswith(prefix):
                        name = "model." + name[len(prefix):] if not name[len(prefix):].startswith("lm_head") else name[len(prefix):]
                        break
                yield name, tensor


def _gguf_tensors(model_dir: Path, cfg: dict, arch: GgufArchitecture) -> Iterator[tuple[str, np.ndarray]]:
    import gguf

    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.gguf_arch), int(cfg["num_hidden_layers"]))
    tied = bool(cfg.get("tie_word_embeddings", False))
    seen = set()
    for name, tensor in iter_hf_tensors(model_dir):
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name == "lm_head.weight" and tied:
            continue
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise EdgeDistillError(
                f"{model_dir}: tensor {name!r} has no llama.cpp {arch.gguf_arch.lower()} equivalent",
                hint="the checkpoint has parts this architecture's GGUF mapping does not know",
            )
        seen.add(new)
        yield new, arch.transform(name, tensor, cfg)
    yield from arch.extra_tensors(cfg).items()
    if "token_embd.weight" not in seen:
        raise EdgeDistillError(f"{model_dir}: no token embedding (model.embed_tokens.weight) in the weights")


# llama.cpp keys a tokenizer quirk on general.name: a name containing "phi3"/"phi-3" makes it look up
# Phi-3's own special tokens (failing to load without them) and strip spaces after every special token
# (matching Phi-3's HF tokenizer, not others). Only real Phi-3 vocabularies may keep such a name.
_PHI3_NAME_TOKENS = ("<unk>", "<s>", "</s>", "<|endoftext|>")


def _model_name(name: str, tokens: list[str]) -> str:
    lowered = name.lower()
    if ("phi3" in lowered or "phi-3" in lowered) and not set(_PHI3_NAME_TOKENS) <= set(tokens):
        return re.sub(r"(?i)phi-?3", "phi", name)
    return name


def _write_direct(model_dir: Path, dst: Path, cfg: dict, arch: GgufArchitecture, quant: GgufQuant, name: str) -> int:
    import gguf

    w = gguf.GGUFWriter(str(dst), arch=gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch.gguf_arch)])
    w.add_type(gguf.GGUFType.MODEL)
    tok_meta = tokenizer_metadata(model_dir, int(cfg["vocab_size"]))
    w.add_name(_model_name(name, tok_meta.tokens))
    arch.hparams(w, cfg)
    w.add_file_type(file_type(quant))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tok_meta.write(w)
    n = 0
    for tname, tensor in _gguf_tensors(model_dir, cfg, arch):
        data, raw_dtype = encode_tensor(tname, tensor, quant)
        # quantized data arrives as uint8 bytes; gguf-py derives the logical shape from them
        w.add_tensor(tname, data, raw_dtype=raw_dtype)
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n


def write_gguf(model_dir: Path, dst: Path, quant_name: str, imatrix: Path | None = None, threads: int = 0) -> dict[str, Any]:
    """Convert ``model_dir`` into the GGUF file ``dst`` at ``quant_name``; returns manifest fields."""
    import gguf

    model_dir, dst = Path(model_dir), Path(dst)
    quant = GGUF_QUANTS.get(quant_name)
    raw_cfg = load_config(model_dir)
    cfg = text_config(raw_cfg)
    arch = architecture_for(cfg, where=str(model_dir / "config.json"))
    arch.check(cfg)
    if imatrix is not None and quant.route != "llama.cpp":
        raise EdgeDistillError(
            f"an importance matrix only applies to llama.cpp-quantized types, not {quant_name}",
            hint="use it with q4_k_m, q3_k_m, q2_k...",
        )
    t0 = time.perf_counter()
    name = model_dir.resolve().name
    if quant.route == "direct":
        n = _write_direct(model_dir, dst, cfg, arch, quant, name)
    else:
        source = dst.with_name(dst.stem + ".f32-source.gguf")
        try:
            n = _write_direct(model_dir, source, cfg, arch, GGUF_QUANTS.get("f32"), name)
            llama_cpp_quantize(source, dst, quant, imatrix=imatrix, threads=threads)
        finally:
            source.unlink(missing_ok=True)
    return {
        "gguf_architecture": arch.gguf_arch.lower(),
        "hf_model_type": cfg.get("model_type"),
        "quant": quant_name,
        "quant_route": quant.route,
        "imatrix": str(imatrix) if imatrix else None,
        "tensors": n,
        "gguf_py_version": _version("gguf"),
        "llama_cpp_python_version": _version("llama_cpp_python") if quant.route == "llama.cpp" else None,
        "convert_seconds": round(time.perf_counter() - t0, 2),
        "file_bytes": dst.stat().st_size,
        "tensor_type_counts": describe_gguf(dst)["tensor_type_counts"],
        "ggml_file_type": int(gguf.LlamaFileType[quant.ftype]),
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None

"""Which Hugging Face architectures the GGUF converter understands, and how each maps onto llama.cpp.

One :class:`GgufArchitecture` per HF ``config.model_type``: the llama.cpp architecture it becomes, the
hyperparameters llama.cpp's loader reads (``{arch}.context_length``, ``{arch}.attention.head_count``...),
and the weight transforms llama.cpp's graph expects. Tensor *names* come from gguf-py's own
``TensorNameMap`` so they always match the installed llama.cpp naming.

Transforms worth knowing about:

* **llama** — llama.cpp's ``llama`` graph applies RoPE to interleaved pairs (x0,x1),(x2,x3)... while HF
  rotates the two halves of each head (``rotate_half``). The HF checkpoint's q/k rows are therefore
  re-ordered per head so that row ``2i`` / ``2i+1`` hold HF rows ``i`` / ``i + d/2``.
  qwen2, qwen3, gemma3 and phi3 use llama.cpp's NEOX RoPE (halves), so they need no re-ordering.
* **gemma3** — HF's ``Gemma3RMSNorm`` computes ``x * (1 + w)``; llama.cpp multiplies by the stored
  weight, so every ``*norm.weight`` is written as ``w + 1``. Token embeddings are scaled by
  ``sqrt(hidden)`` inside llama.cpp's graph, as in HF, so they are stored unchanged.
* **phi3** — the fused ``qkv_proj`` and ``gate_up_proj`` map one-to-one onto llama.cpp's ``attn_qkv``
  and a double-width ``ffn_up`` (llama.cpp splits it into gate|up halves, the same order as HF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgedistill.errors import EdgeDistillError
from edgedistill.registry import Registry


@dataclass(frozen=True)
class GgufArchitecture:
    model_type: str
    """HF ``config.model_type`` (after un-nesting a multimodal ``text_config``)."""
    gguf_arch: str
    """Name of the ``gguf.MODEL_ARCH`` member (LLAMA, QWEN2, ...)."""
    check: Callable[[dict], None]
    """Raises EdgeDistillError for config features this converter (or llama.cpp) cannot reproduce."""
    hparams: Callable[[object, dict], None]
    """Writes the architecture's key-values through a ``gguf.GGUFWriter``."""
    transform: Callable[[str, np.ndarray, dict], np.ndarray] = lambda name, t, cfg: t
    """Per-tensor weight transform, given the HF tensor name."""
    extra_tensors: Callable[[dict], dict[str, np.ndarray]] = lambda cfg: {}
    """Tensors llama.cpp needs that the checkpoint does not hold (e.g. llama3 ``rope_freqs``)."""
    notes: str = ""
    hf_classes: tuple[str, ...] = field(default=())


ARCHITECTURES: Registry[GgufArchitecture] = Registry("GGUF architecture")


# ---------------------------------------------------------------- helpers shared by the architectures


def head_dim(cfg: dict) -> int:
    return int(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])


def n_kv_heads(cfg: dict) -> int:
    return int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])


def rope_scaling(cfg: dict) -> dict | None:
    rs = cfg.get("rope_scaling")
    if not rs:
        return None
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return None
    return {**rs, "kind": kind}


def _unsupported(cfg: dict, what: str, hint: str | None = None) -> EdgeDistillError:
    return EdgeDistillError(f"GGUF export of model_type {cfg.get('model_type')!r}: {what} is not supported", hint)


def _common_hparams(w, cfg: dict, *, rope_dims: int | None = None) -> None:
    """The key-values every llama-style llama.cpp architecture reads."""
    w.add_context_length(int(cfg.get("max_position_embeddings", 2048)))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_block_count(int(cfg["num_hidden_layers"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_head_count_kv(n_kv_heads(cfg))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_key_length(head_dim(cfg))
    w.add_value_length(head_dim(cfg))
    w.add_rope_dimension_count(rope_dims if rope_dims is not None else head_dim(cfg))
    w.add_vocab_size(int(cfg["vocab_size"]))


def _linear_or_yarn(w, cfg: dict, allowed: tuple[str, ...] = ("linear", "yarn")) -> None:
    import gguf

    rs = rope_scaling(cfg)
    if rs is None:
        return
    if rs["kind"] not in allowed:
        raise _unsupported(cfg, f"rope_scaling type {rs['kind']!r}", f"supported here: {', '.join(allowed)}")
    if rs["kind"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rs["factor"]))
    elif rs["kind"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rs["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])))


def _check_common(cfg: dict) -> None:
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise _unsupported(cfg, f"hidden_act {act!r} (llama.cpp's graph uses SiLU)")
    if cfg.get("mlp_bias"):
        raise _unsupported(cfg, "mlp_bias=true")


# ---------------------------------------------------------------------------------------------- llama


def _permute_rope_rows(t: np.ndarray, n_heads: int) -> np.ndarray:
    """HF half-rotation layout -> llama.cpp interleaved-pair layout, per head (rows of a q/k projection)."""
    rows = t.shape[0]
    return t.reshape(n_heads, 2, rows // n_heads // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)


def _llama_transform(name: str, t: np.ndarray, cfg: dict) -> np.ndarray:
    if ".self_attn.q_proj." in name:
        return _permute_rope_rows(t, int(cfg["num_attention_heads"]))
    if ".self_attn.k_proj." in name:
        return _permute_rope_rows(t, n_kv_heads(cfg))
    return t


def _llama3_rope_freqs(cfg: dict) -> dict[str, np.ndarray]:
    """Per-frequency scaling factors of Llama 3.x's rope_scaling (rope_type 'llama3'), as llama.cpp's
    ``rope_freqs`` tensor: 1 for short wavelengths, ``factor`` for long ones, smooth in between."""
    rs = rope_scaling(cfg)
    if rs is None or rs["kind"] != "llama3":
        return {}
    base = float(cfg.get("rope_theta", 10000.0))
    dim = head_dim(cfg)
    factor = float(rs.get("factor", 8.0))
    low, high = float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return {"rope_freqs.weight": np.asarray(factors, dtype=np.float32)}


def _llama_hparams(w, cfg: dict) -> None:
    _common_hparams(w, cfg)
    rs = rope_scaling(cfg)
    if rs is not None and rs["kind"] != "llama3":
        _linear_or_yarn(w, cfg)


def _llama_check(cfg: dict) -> None:
    _check_common(cfg)
    rs = rope_scaling(cfg)
    if rs is not None and rs["kind"] not in ("linear", "yarn", "llama3"):
        raise _unsupported(cfg, f"rope_scaling type {rs['kind']!r}", "supported: linear, yarn, llama3")


ARCHITECTURES.register(
    "llama",
    GgufArchitecture(
        "llama", "LLAMA", _llama_check, _llama_hparams, _llama_transform, _llama3_rope_freqs,
        notes="q/k rows re-ordered for llama.cpp's interleaved RoPE; llama3 rope_scaling -> rope_freqs tensor",
        hf_classes=("LlamaForCausalLM",),
    ),
)


# ---------------------------------------------------------------------------------------- qwen2 / 3


def _qwen2_check(cfg: dict) -> None:
    _check_common(cfg)
    if cfg.get("use_sliding_window"):
        raise _unsupported(cfg, "use_sliding_window=true (llama.cpp's qwen2 graph has full attention only)")
    rs = rope_scaling(cfg)
    if rs is not None and rs["kind"] not in ("linear", "yarn"):
        raise _unsupported(cfg, f"rope_scaling type {rs['kind']!r}", "supported: linear, yarn")


def _qwen_hparams(w, cfg: dict) -> None:
    _common_hparams(w, cfg)
    _linear_or_yarn(w, cfg)


ARCHITECTURES.register(
    "qwen2",
    GgufArchitecture("qwen2", "QWEN2", _qwen2_check, _qwen_hparams, notes="q/k/v biases kept",
                     hf_classes=("Qwen2ForCausalLM",)),
)
ARCHITECTURES.register(
    "qwen3",
    GgufArchitecture("qwen3", "QWEN3", _qwen2_check, _qwen_hparams, notes="q_norm/k_norm -> attn_q_norm/attn_k_norm",
                     hf_classes=("Qwen3ForCausalLM",)),
)


# --------------------------------------------------------------------------------------------- gemma3


def _gemma3_check(cfg: dict) -> None:
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_new", "gelu"):
        raise _unsupported(cfg, f"hidden_activation {act!r} (llama.cpp's gemma3 graph uses tanh-GELU)")
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if cfg.get(key):
            raise _unsupported(cfg, f"{key}={cfg[key]} (llama.cpp's gemma3 graph has no soft-capping)")
    scalar = cfg.get("query_pre_attn_scalar")
    if scalar is not None and int(scalar) != head_dim(cfg):
        # llama.cpp scales queries by 1/sqrt(head_dim) (1/sqrt(hidden/heads) only for the 62-layer 27B).
        raise _unsupported(cfg, f"query_pre_attn_scalar={scalar} != head_dim={head_dim(cfg)}")
    rs = rope_scaling(cfg)
    if rs is not None and rs["kind"] != "linear":
        raise _unsupported(cfg, f"rope_scaling type {rs['kind']!r}", "supported: linear (as Gemma 3 4B+ ship)")


def _gemma3_hparams(w, cfg: dict) -> None:
    _common_hparams(w, cfg)
    _linear_or_yarn(w, cfg, allowed=("linear",))
    n_layers = int(cfg["num_hidden_layers"])
    layer_types = cfg.get("layer_types")
    if not layer_types:  # older configs: every sliding_window_pattern-th layer is global
        pattern = int(cfg.get("sliding_window_pattern", cfg.get("_sliding_window_pattern", 6)))
        layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)]
    if cfg.get("sliding_window"):
        w.add_sliding_window(int(cfg["sliding_window"]))
    w.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])
    w.add_rope_freq_base_swa(float(cfg.get("rope_local_base_freq", 10000.0)))


def _gemma3_transform(name: str, t: np.ndarray, cfg: dict) -> np.ndarray:
    if name.endswith("norm.weight"):
        return t + np.float32(1.0)
    return t


ARCHITECTURES.register(
    "gemma3_text",
    GgufArchitecture(
        "gemma3_text", "GEMMA3", _gemma3_check, _gemma3_hparams, _gemma3_transform,
        notes="norm weights stored as 1+w; sliding-window layer pattern from layer_types; "
        "model_type 'gemma3' (multimodal) is exported as its text model",
        hf_classes=("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"),
    ),
)


# ----------------------------------------------------------------------------------------------- phi3


def _phi3_check(cfg: dict) -> None:
    _check_common(cfg)
    rs = rope_scaling(cfg)
    if rs is not None:
        raise _unsupported(
            cfg, f"rope_scaling type {rs['kind']!r}",
            "only Phi-3 models without rope_scaling (the 4k-context ones) are supported",
        )


def _phi3_hparams(w, cfg: dict) -> None:
    rope_dims = int(float(cfg.get("partial_rotary_factor", 1.0)) * head_dim(cfg))
    _common_hparams(w, cfg, rope_dims=rope_dims)
    w.add_rope_scaling_orig_ctx_len(int(cfg.get("original_max_position_embeddings", cfg["max_position_embeddings"])))
    if cfg.get("sliding_window"):
        w.add_sliding_window(int(cfg["sliding_window"]))


ARCHITECTURES.register(
    "phi3",
    GgufArchitecture("phi3", "PHI3", _phi3_check, _phi3_hparams,
                     notes="fused qkv_proj -> attn_qkv, gate_up_proj -> double-width ffn_up",
                     hf_classes=("Phi3ForCausalLM",)),
)


# ------------------------------------------------------------------------------------------- lookup

#: user-facing model_type aliases -> registry key
ALIASES = {"gemma3": "gemma3_text"}


def supported_model_types() -> tuple[str, ...]:
    return tuple(sorted(set(ARCHITECTURES.names()) | set(ALIASES)))


def text_config(config: dict) -> dict:
    """The language-model part of a HF config (Gemma 3 multimodal configs nest it under text_config)."""
    if config.get("model_type") == "gemma3" and isinstance(config.get("text_config"), dict):
        inner = dict(config["text_config"])
        inner.setdefault("model_type", "gemma3_text")
        for key in ("tie_word_embeddings", "vocab_size"):
            if key not in inner and key in config:
                inner[key] = config[key]
        return inner
    return config


def architecture_for(config: dict, where: str = "config.json") -> GgufArchitecture:
    """The registry entry for a HF config; a clear error listing the supported model types otherwise."""
    mt = config.get("model_type")
    key = ALIASES.get(mt, mt)
    if key not in ARCHITECTURES:
        raise EdgeDistillError(
            f"{where}: model_type {mt!r} cannot be exported to GGUF; supported: {', '.join(supported_model_types())}",
            hint="distil into one of these architectures, or export to ONNX instead",
        )
    return ARCHITECTURES.get(key)

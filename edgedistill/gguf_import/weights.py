"""Config and dequantized weights of a GGUF file in one pass over our own reader.

transformers' ``from_pretrained(dir, gguf_file=...)`` parses the file with gguf-py's GGUFReader, whose
per-element objects for a 262k-token vocabulary cost ~15 s, and does so twice when the config is read
first. Here the config is built from :func:`~edgedistill.gguf_import.reader.read_gguf` metadata with
transformers' own key mapping (``GGUF_TO_TRANSFORMERS_MAPPING``), tensors are memory-mapped and
dequantized with gguf-py, and transformers' per-architecture tensor processors (Q/K un-permutation
for llama, Gemma's norm offset, MoE expert stacking...) and HF-name mapping are reused, so the
result is what transformers would load. :func:`load_model` falls back to plain ``from_pretrained``
when those transformers internals are not available.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gguf import Keys

from edgedistill.gguf_import.reader import GGUFFile


_BIG_KEYS = frozenset(
    [Keys.Tokenizer.LIST, Keys.Tokenizer.SCORES, Keys.Tokenizer.TOKEN_TYPE, Keys.Tokenizer.MERGES]
)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def config_dict(gguf: GGUFFile) -> dict[str, Any]:
    """The HF config dict transformers' ``load_gguf_checkpoint`` would build (mirrors 4.5x)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_TO_TRANSFORMERS_MAPPING

    arch = gguf.architecture
    name = str(gguf.get(Keys.General.NAME, "")).lower()
    updated = arch
    if "llama" in arch and "mistral" in name:
        updated = "mistral"
    if "qwen2moe" in arch:
        updated = "qwen2_moe"
    elif "qwen3moe" in arch:
        updated = "qwen3_moe"
    renames = GGUF_TO_TRANSFORMERS_MAPPING["config"]
    cfg: dict[str, Any] = {}
    tensor_names = {t.name for t in gguf.tensors}
    cfg["tie_word_embeddings"] = "output.weight" not in tensor_names or arch in ("falcon", "bloom")
    if "stablelm" in arch:
        cfg["use_qkv_bias"] = any(b in n for n in tensor_names for b in ("attn_q.bias", "attn_k.bias", "attn_v.bias"))
        cfg["use_parallel_residual"] = not any("ffn_norm" in n for n in tensor_names)
    for key, value in gguf.metadata.items():
        if key in _BIG_KEYS:  # the vocabulary itself is not config
            continue
        key = key.replace(arch, updated)
        prefix, _, rest = key.partition(".")
        if prefix in renames and rest in renames[prefix]:
            target = renames[prefix][rest]
            if target is None or target == -1:
                continue
            value = _plain(value)
            if isinstance(value, str) and arch in value:
                value = value.replace(arch, updated)
            cfg[target] = value
    if cfg.get("model_type") == "gemma3":
        cfg["model_type"] = "gemma3_text"
    if cfg.get("model_type") == "lfm2":
        kv = cfg["num_key_value_heads"]
        cfg["num_key_value_heads"] = max(kv)
        cfg["block_auto_adjust_ff_dim"] = False
        cfg["full_attn_idxs"] = [i for i, n in enumerate(kv) if n > 0]
    if "vocab_size" not in cfg and Keys.Tokenizer.LIST in gguf.metadata:
        cfg["vocab_size"] = len(gguf.metadata[Keys.Tokenizer.LIST])
    return cfg


def _tensor_array(path: Path, info) -> np.ndarray:
    """The raw bytes of one tensor shaped as gguf-py's dequantize expects: (*rows, bytes per row)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(info.ggml_type)]
    dims = list(info.shape) or [1]
    row_bytes = dims[0] // block * type_size
    shape = tuple(reversed(dims[1:])) + (row_bytes,)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=info.offset, shape=shape)


def load_state_dict(path: Path, gguf: GGUFFile, config, model) -> dict:
    """Dequantized tensors under HF names for ``model`` (an empty-weights instance of the config)."""
    import torch
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    from tqdm.auto import tqdm
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map

    cfg = config.to_dict()
    processor = TENSOR_PROCESSORS.get(gguf.architecture, TensorProcessor)(config=cfg)
    try:  # transformers 5: the processor maps names too (preprocess_name, fallback mappings)
        key_map = get_gguf_hf_weights_map(model, processor)
    except TypeError:  # transformers 4.x: get_gguf_hf_weights_map(model)
        key_map = get_gguf_hf_weights_map(model)
    parsed: dict[str, Any] = {"config": cfg, "tensors": {}}
    state = {}
    for info in tqdm(gguf.tensors, desc="dequantizing GGUF tensors", leave=False):
        weights = dequantize(_tensor_array(path, info), GGMLQuantizationType(info.ggml_type))
        result = processor.process(weights=weights, name=info.name, tensor_key_mapping=key_map, parsed_parameters=parsed)
        if result.name not in key_map:
            continue
        state[key_map[result.name]] = torch.from_numpy(np.array(result.weights, dtype=np.float32, copy=True))
    state.update(parsed["tensors"])  # processors that assemble tensors across calls (MoE experts)
    return state


def load_model(path: Path, gguf: GGUFFile, config, dtype):
    """A causal LM with ``config`` and the file's dequantized weights, all on the CPU."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = load_state_dict(path, gguf, config, model)
    missing, _unexpected = model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    still_empty = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if still_empty:
        raise RuntimeError(f"no weights in the file for {', '.join(still_empty[:5])}")
    return model.to(dtype).eval()

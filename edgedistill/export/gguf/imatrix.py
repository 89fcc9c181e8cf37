"""An importance matrix from the PyTorch model itself, for llama.cpp's K-quants.

llama.cpp's quantizer weighs each input column of a weight matrix by how large the activations
entering it are (mean of x² over calibration tokens). ``llama-imatrix`` measures this by running the
GGUF model; here the same statistic is gathered with forward hooks on the HF model's linear layers,
so no llama.cpp binary is needed. The file is the GGUF imatrix format ``llama-quantize --imatrix``
reads (``<tensor>.in_sum2`` / ``<tensor>.counts``), keyed by GGUF tensor names.

    compute_imatrix(model_dir, texts, out / "imatrix.gguf")
    write_gguf(model_dir, dst, "q4_k_m", imatrix=out / "imatrix.gguf")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.errors import EdgeDistillError
from edgedistill.export.gguf.architectures import architecture_for, text_config
from edgedistill.export.gguf.quantize import write_imatrix
from edgedistill.export.gguf.writer import load_config


def compute_imatrix(model_dir: Path, texts: list[str], out_path: Path, max_tokens: int = 512) -> dict[str, int]:
    """Mean squared input activation per column of every linear layer, written to ``out_path``.

    Returns {gguf tensor name: number of tokens seen}.
    """
    import gguf
    import torch

    from edgedistill.models import load_causal_lm

    if not texts:
        raise EdgeDistillError("compute_imatrix needs at least one calibration text")
    model_dir = Path(model_dir)
    cfg = text_config(load_config(model_dir))
    arch = architecture_for(cfg, where=str(model_dir / "config.json"))
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.gguf_arch), int(cfg["num_hidden_layers"]))
    model, tok = load_causal_lm(model_dir, what="model")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        gguf_name = tmap.get_name(name + ".weight", try_suffixes=(".weight",))
        if gguf_name is None or gguf_name in ("output.weight",):
            continue

        def hook(mod, inputs, _out, key=gguf_name):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[key] = sums.get(key, 0) + (x * x).sum(0)
            counts[key] = counts.get(key, 0) + x.shape[0]

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            for text in texts:
                ids = tok(text, return_tensors="pt").input_ids[:, :max_tokens]
                model(ids)
    finally:
        for h in hooks:
            h.remove()
    entries = {k: (sums[k] / counts[k]).numpy().astype(np.float32) for k in sums}
    write_imatrix(Path(out_path), entries, chunk_count=len(texts), chunk_size=max_tokens)
    return counts

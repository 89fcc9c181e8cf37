"""GPTQ for onnx:int4: data-aware rounding onto the exact grid RTN writes, fed the user's data.

``export --int4-algorithm gptq --calibration-data FILE`` (the recipe passes its distillation data)
collects, for every weight MatMul of the float graph, the Hessian ``X^T X`` of the activations
entering it on the calibration records (onnxruntime runs the float graph), then rounds the weight
input channel by input channel, pushing each channel's rounding error onto the channels not yet
rounded -- so the error lands where the user's data does not look (Frantar et al., 2022).

Why not onnxruntime's own ``GPTQWeightOnlyQuantConfig`` (used here until 2026-12-01): measured on the
tiny test model it gave a larger layer output error on the calibration data than plain RTN. Two
reasons, both in onnxruntime 1.32's ``neural_compressor/weight_only.py``: its GPTQ rounds to a grid of
step ``2 max|w| / 15`` (levels -8..7, the top one clipped), coarser than the ``max|w| / 8`` that
MatMulNBits' RTN uses; and it then re-quantizes that result with ``quant_tensor``, whose scale comes
from the already-rounded block -- a second rounding onto another grid that undoes part of GPTQ's
choices. Here the grid is onnxruntime's RTN grid itself (``edgedistill.distill.qat``'s "mlas" grid:
per block of ``--int4-block-size`` input channels and per output column, scale = the signed value of
largest magnitude / -8, levels -8..7), and the block's largest element is kept at level -8, so the
RTN pass that writes the artifact (``onnx_format._quantize_int4``) recovers each block's scale and
level exactly: the artifact holds GPTQ's rounding, with RTN's size, layout and kernels.

The float graph (onnxruntime-genai's builder) takes ``input_ids``, ``attention_mask`` (and possibly
``position_ids``) plus one key and one value cache per layer; each calibration record is one prefill
with an empty cache (past length 0), which is what GPTQ needs: every position's activations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.errors import EdgeDistillError

#: Calibration records fed to GPTQ. The Hessian of a 640-wide input settles with a few thousand
#: tokens; every record costs one forward pass of the float graph.
GPTQ_RECORDS = 32
#: Tokens of a record kept (the prompt and its answer; the quickstart's are 100-160).
GPTQ_MAX_TOKENS = 256
#: Dampening: this share of the Hessian's mean diagonal is added to it (GPTQ's usual 1 %).
PERCDAMP = 0.01


def calibration_feeds(graph_path: Path, model_dir: Path, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """One input dict per calibration text for the float graph at ``graph_path`` (empty KV cache)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    from edgedistill.models import load_tokenizer

    if not texts:
        raise EdgeDistillError("options.int4_algorithm = 'gptq' needs calibration texts (--calibration-data FILE)")
    tok = load_tokenizer(model_dir)
    inputs = onnx.load(str(graph_path), load_external_data=False).graph.input
    feeds = []
    for text in texts[:GPTQ_RECORDS]:
        ids = np.asarray([tok(text)["input_ids"][:GPTQ_MAX_TOKENS]], dtype=np.int64)
        feed = {}
        for inp in inputs:
            t = inp.type.tensor_type
            dtype = tensor_dtype_to_np_dtype(t.elem_type)
            if inp.name == "input_ids":
                feed[inp.name] = ids.astype(dtype)
            elif inp.name == "attention_mask":
                feed[inp.name] = np.ones_like(ids, dtype=dtype)
            elif inp.name == "position_ids":
                feed[inp.name] = np.arange(ids.shape[1], dtype=dtype)[None]
            elif inp.name.startswith("past_key_values."):
                # [batch, kv heads, past length, head size]: batch 1, past 0, the rest as the graph says
                dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
                dims[0] = 1
                feed[inp.name] = np.zeros(dims, dtype=dtype)
            else:
                raise EdgeDistillError(f"options.int4_algorithm = 'gptq': the float graph has an input "
                                       f"{inp.name!r} it cannot feed", hint="use --int4-algorithm rtn")
        feeds.append(feed)
    return feeds


def weight_matmuls(model, block_size: int) -> dict[str, list]:
    """{activation name: [MatMul nodes whose weight is a 2-D float initializer used by nothing else]}.

    Skipped (left to RTN): weights shared with another node (a tied embedding table read through a
    Transpose: GPTQ's rounding of it for the LM head would be no rounding for the table) and weights
    whose input width is not a whole number of blocks (the quantizer pads those)."""
    from onnx import TensorProto

    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    out: dict[str, list] = {}
    for node in model.graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if (w is not None and len(w.dims) == 2 and w.data_type == TensorProto.FLOAT and uses[w.name] == 1
                and w.dims[0] % block_size == 0):
            out.setdefault(node.input[0], []).append(node)
    return out


def hessians(model, feeds: list[dict], names: list[str]) -> dict[str, np.ndarray]:
    """{activation name: sum over the feeds' positions of x x^T} (float64), from one onnxruntime session
    over a copy of ``model`` that also outputs those activations."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    del probe
    hs: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, x in zip(names, sess.run(names, feed)):
            x = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
            hs[name] = hs.get(name, 0) + x.T @ x
    return hs


def gptq_round(w: np.ndarray, h: np.ndarray, block_size: int, batch: int = 128) -> np.ndarray:
    """``w`` [in, out] (an ONNX MatMul weight) rounded by GPTQ onto MatMulNBits' symmetric RTN grid,
    dequantized, float32. Input channels are rounded in order; each block's scales (one per output
    column) are set when the block starts, from the weights as GPTQ has updated them by then."""
    w = w.astype(np.float64).copy()
    k = w.shape[0]
    h = h.copy()
    dead = np.diag(h) == 0  # channels the data never excite: nothing to trade, round them as RTN does
    h[dead, dead] = 1
    h[np.diag_indices(k)] += PERCDAMP * np.mean(np.diag(h))
    # upper Cholesky factor of H^-1: row i holds the error-feedback weights of channel i (GPTQ's Hinv)
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros_like(w)
    batch = max(batch // block_size, 1) * block_size
    cols = np.arange(w.shape[1])
    for b0 in range(0, k, batch):
        b1 = min(b0 + batch, k)
        wb, err = w[b0:b1].copy(), np.zeros((b1 - b0, w.shape[1]))
        for i in range(b1 - b0):
            if (b0 + i) % block_size == 0:
                blk = wb[i:i + block_size]
                top = np.abs(blk).argmax(axis=0)  # per output column, the block's largest element ...
                scale = blk[top, cols] / -8.0
                inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
            x = wb[i] * inv
            levels = np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), -8, 7)  # roundf, as MLAS rounds
            levels[top == (b0 + i) % block_size] = -8  # ... stays at -8, so that RTN finds this scale again
            q[b0 + i] = levels * scale
            e = (wb[i] - q[b0 + i]) / u[b0 + i, b0 + i]
            wb[i + 1:] -= np.outer(u[b0 + i, b0 + i + 1:b1], e)
            err[i] = e
        w[b1:] -= u[b0:b1, b1:].T @ err
    return q.astype(np.float32)


def apply_gptq(model, graph_path: Path, model_dir: Path, texts: list[str], block_size: int) -> int:
    """Replace, in ``model`` (the float graph loaded with its weights), every eligible MatMul weight by its
    GPTQ rounding on the calibration texts (still float: the RTN pass that follows writes the int4
    blocks). Returns how many weights were rounded."""
    from onnx import numpy_helper

    groups = weight_matmuls(model, block_size)
    if not groups:
        return 0
    hs = hessians(model, calibration_feeds(graph_path, model_dir, texts), sorted(groups))
    inits = {t.name: t for t in model.graph.initializer}
    n = 0
    for name, nodes in groups.items():
        for node in nodes:
            t = inits[node.input[1]]
            t.CopyFrom(numpy_helper.from_array(gptq_round(numpy_helper.to_array(t), hs[name], block_size), t.name))
            n += 1
    return n

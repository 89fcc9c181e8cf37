"""GPTQ for onnx:int4: the data-aware rounding of onnxruntime's MatMulNBits quantizer, fed the user's data.

``export --int4-algorithm gptq --calibration-data FILE`` (the recipe passes its distillation data)
runs onnxruntime's GPTQ (``GPTQWeightOnlyQuantConfig``): for every weight MatMul it collects the
Hessian ``X^T X`` of the activations entering it on the calibration records, then rounds the weight
column by column, pushing each column's rounding error onto the columns not yet rounded -- so the
error lands where the user's data does not look. The grid is the one RTN uses (symmetric int4 blocks
of ``--int4-block-size``): the artifact has the same size and kernels, only other rounding choices.

The float graph (onnxruntime-genai's builder) takes ``input_ids``, ``attention_mask`` (and possibly
``position_ids``) plus one key and one value cache per layer; each calibration record is one prefill
with an empty cache (past length 0), which is what GPTQ needs: every position's activations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.errors import EdgeDistillError

#: Calibration records fed to GPTQ. The Hessian of a 640-wide input settles with a few thousand
#: tokens; every record costs one forward pass per distinct MatMul input (~25 for a 6-layer student).
GPTQ_RECORDS = 32
#: Tokens of a record kept (the prompt and its answer; the quickstart's are 100-160).
GPTQ_MAX_TOKENS = 256


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


class FeedReader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds (deep-copied by the quantizer,
    hence an index rather than an iterator)."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self.i = feeds, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def __iter__(self):
        return iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def gptq_config(graph_path: Path, model_dir: Path, texts: list[str], op_types: tuple[str, ...]):
    """The quantizer's algo_config: GPTQ over the calibration feeds (no activation reordering, per-block
    scales from the plain max, as RTN; onnxruntime's defaults otherwise)."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    reader = FeedReader(calibration_feeds(graph_path, model_dir, texts))
    return mq.GPTQWeightOnlyQuantConfig(calibration_data_reader=reader, op_types_to_quantize=op_types)

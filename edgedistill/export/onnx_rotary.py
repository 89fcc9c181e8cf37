"""Rotary cos/sin tables of onnxruntime-genai's graphs, computed at load time instead of stored.

The builder bakes each RoPE base's ``cos_cache`` / ``sin_cache`` ([max_position_embeddings, head_dim/2],
float32) into the graph as GroupQueryAttention inputs. For Gemma 3 (32,768 positions, head_dim 256,
two bases) that is 4 x 16.8 MB = 67 MB: more than the int4 weights of a 25M-parameter student
(about 13 MB). Every table is ``cos(t * inv_freq) * mscale`` for ``t = 0..L-1``, so the artifact can
carry ``inv_freq`` (head_dim/2 floats) and a few nodes (Range, Cast, Mul, Cos/Sin) instead.
onnxruntime folds those constant nodes into the same tables when the session is created, so the
per-step work is unchanged; only the file shrinks.

``inv_freq`` and ``mscale`` are read back from the stored tables (whatever RoPE variant the builder
implemented) and the rebuilt tables are compared with the stored ones; a table that is not
reproduced to within ``TOLERANCE`` is kept as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: max |rebuilt - stored| accepted, relative to mscale (float32 cos/sin of the same float32 phase)
TOLERANCE = 2e-5
#: GroupQueryAttention's cos_cache / sin_cache input positions
_GQA_COS, _GQA_SIN = 7, 8


def rotary_table_pairs(model) -> list[tuple[str, str]]:
    """(cos, sin) initializer names that GroupQueryAttention / RotaryEmbedding nodes read, in order."""
    inits = {t.name for t in model.graph.initializer}
    pairs = []
    for node in model.graph.node:
        if node.op_type == "GroupQueryAttention" and len(node.input) > _GQA_SIN:
            pair = (node.input[_GQA_COS], node.input[_GQA_SIN])
        elif node.op_type == "RotaryEmbedding" and len(node.input) >= 4:
            pair = (node.input[2], node.input[3])
        else:
            continue
        if pair[0] in inits and pair[1] in inits and pair not in pairs:
            pairs.append(pair)
    return pairs


def table_params(cos: np.ndarray, sin: np.ndarray, known: tuple[np.ndarray, float] | None = None):
    """(inv_freq float32 [H], mscale) that rebuild ``cos``/``sin`` [L, H]; None when they do not.

    ``known``: parameters read from the float32 graph the tables were converted from (an fp16 table is
    too coarse to read them back from); they are still checked against these tables.
    """
    cos64, sin64 = cos.astype(np.float64), sin.astype(np.float64)
    if cos.ndim != 2 or cos.shape != sin.shape or cos.shape[0] < 2:
        return None
    if known is not None:
        return known if _rebuild_error(known, cos64, sin64) <= _tolerance(cos.dtype) else None
    mscale = float(cos64[0, 0])
    if mscale <= 0 or not np.allclose(cos64[0], mscale, rtol=0, atol=1e-7) or np.abs(sin64[0]).max() > 1e-7:
        return None
    # The phase at row 1 is inv_freq itself (|inv_freq| <= 1 < pi); later rows refine it: the phase at
    # row k, known modulo 2 pi, is k * inv_freq, so each step divides the error by about k / previous k.
    freq = np.arctan2(sin64[1], cos64[1])
    k = 8
    while k < cos.shape[0]:
        phase = np.arctan2(sin64[k], cos64[k])
        freq = (phase + 2 * np.pi * np.round((k * freq - phase) / (2 * np.pi))) / k
        k *= 8
    params = (freq.astype(np.float32), mscale)
    return params if _rebuild_error(params, cos64, sin64) <= _tolerance(cos.dtype) else None


def _rebuild_error(params, cos64: np.ndarray, sin64: np.ndarray) -> float:
    cos2, sin2 = rebuild(params[0], params[1], cos64.shape[0])
    return max(np.abs(cos2 - cos64).max(), np.abs(sin2 - sin64).max()) / params[1]


def _tolerance(dtype) -> float:
    # float32: TOLERANCE; a narrower type: its own rounding step (the stored table was rounded to it)
    return max(TOLERANCE, float(np.finfo(dtype).eps))


def rotary_params(model) -> dict[tuple[str, str], tuple[np.ndarray, float]]:
    """Parameters of every reproducible table pair of a float32 graph, by (cos, sin) name."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for pair in rotary_table_pairs(model):
        params = table_params(*(numpy_helper.to_array(inits[n]) for n in pair))
        if params is not None:
            out[pair] = params
    return out


def rebuild(inv_freq: np.ndarray, mscale: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The tables as the graph's nodes compute them: float32 phase, then cos/sin, then the scale."""
    phase = np.arange(length, dtype=np.float32)[:, None] * inv_freq[None, :]  # float32 product, as Mul
    return np.cos(phase.astype(np.float64)) * mscale, np.sin(phase.astype(np.float64)) * mscale


def compute_rotary_tables_in_graph(model, known: dict | None = None) -> int:
    """Replace each reproducible stored table pair by nodes that compute it; returns the bytes saved.

    ``known``: :func:`rotary_params` of the float32 graph this one was converted from (fp16).
    """
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    new_nodes, saved = [], 0
    for i, (cos_name, sin_name) in enumerate(rotary_table_pairs(model)):
        cos, sin = numpy_helper.to_array(inits[cos_name]), numpy_helper.to_array(inits[sin_name])
        if known is not None and (cos_name, sin_name) not in known:
            continue
        params = table_params(cos, sin, known[(cos_name, sin_name)] if known is not None else None)
        if params is None:
            continue
        inv_freq, mscale = params
        p = f"/model/rotary_tables/{i}"
        consts = {
            f"{p}/limit": np.array(cos.shape[0], dtype=np.int64),
            f"{p}/zero": np.array(0, dtype=np.int64),
            f"{p}/one": np.array(1, dtype=np.int64),
            f"{p}/column": np.array([-1, 1], dtype=np.int64),
            f"{p}/inv_freq": inv_freq.reshape(1, -1),
        }
        nodes = [
            helper.make_node("Range", [f"{p}/zero", f"{p}/limit", f"{p}/one"], [f"{p}/t_int"], name=f"{p}/Range"),
            helper.make_node("Cast", [f"{p}/t_int"], [f"{p}/t"], to=TensorProto.FLOAT, name=f"{p}/Cast"),
            helper.make_node("Reshape", [f"{p}/t", f"{p}/column"], [f"{p}/t_col"], name=f"{p}/Reshape"),
            helper.make_node("Mul", [f"{p}/t_col", f"{p}/inv_freq"], [f"{p}/phase"], name=f"{p}/Mul"),
        ]
        for op, out, table in (("Cos", cos_name, cos), ("Sin", sin_name, sin)):
            val = f"{p}/{op}"
            nodes.append(helper.make_node(op, [f"{p}/phase"], [val], name=f"{p}/{op}"))
            if mscale != 1.0:  # e.g. YaRN's attention factor
                consts[f"{p}/mscale"] = np.array(mscale, dtype=np.float32)
                nodes.append(helper.make_node("Mul", [val, f"{p}/mscale"], [val + "_scaled"], name=f"{val}/Scale"))
                val += "_scaled"
            target = helper.np_dtype_to_tensor_dtype(table.dtype)  # an fp16 graph keeps fp16 tables
            nodes.append(helper.make_node("Cast", [val], [out], to=target, name=f"{p}/{op}/Cast"))
            saved += table.nbytes
        for name in (cos_name, sin_name):
            model.graph.initializer.remove(inits[name])
        model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        new_nodes += nodes
    if new_nodes:  # first in the node list: the graph stays topologically sorted
        nodes = list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(new_nodes + nodes)
    return saved


def slim_rotary_tables(path: Path, external_data_name: str | None, known: dict | None = None) -> int:
    """Rewrite the graph file at ``path`` in place; weights go to ``external_data_name`` (None: inline)."""
    import onnx

    model = onnx.load(str(path))  # with its external data
    saved = compute_rotary_tables_in_graph(model, known)
    if not saved:
        return 0
    data = path.parent / external_data_name if external_data_name else None
    path.unlink()
    if data is not None and data.exists():
        data.unlink()
    if data is not None:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external_data_name, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return saved

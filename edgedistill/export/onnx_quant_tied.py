"""onnx:int4 with tied embeddings: the builder's ``Gather(Transpose(lm_head weight))``, quantized.

onnxruntime-genai's builder reads a tied embedding table (Gemma 3) through a Transpose of the LM
head's float weight. ``MatMulNBitsQuantizer``'s Gather pass cannot see that table (its input is no
initializer), so before this module the LM head became int4 while the whole float32 matrix stayed in
the artifact for the Transpose alone (14 MB of the quickstart student's 25M parameters).

With symmetric RTN (the default) the int4 LM head already holds the table: ``MatMulNBits`` quantizes
the weight ``[hidden, vocab]`` per output column in blocks along the hidden axis, which are exactly
the table's rows in blocks along their hidden axis. :func:`share_with_lm_head` therefore reads the rows
from the LM head's int4 blocks and scales through ``GatherBlockQuantized`` (as the builder does for its
own int4 graphs): no second copy. Other algorithms (asymmetric, zero points) get a table of their own
(:func:`untie`) that the quantizer's Gather pass then rounds like an untied one.
"""

from __future__ import annotations

TABLE_NAME = "model.embed_tokens.weight"


def tied_embedding(model):
    """(Gather node, Transpose node) when the table is ``Transpose(initializer, perm=[1, 0])``, else None."""
    inits = {t.name for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for gather in (n for n in model.graph.node if n.op_type == "Gather"):
        tr = producers.get(gather.input[0])
        if tr is None or tr.op_type != "Transpose" or tr.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        if perm == [1, 0] and not any(tr.output[0] in n.input for n in model.graph.node if n is not gather):
            return gather, tr
    return None


def untie(model) -> bool:
    """Give a tied table an initializer of its own (transposed once, here); True when there was one."""
    from onnx import numpy_helper

    found = tied_embedding(model)
    if found is None:
        return False
    gather, tr = found
    weight = next(t for t in model.graph.initializer if t.name == tr.input[0])
    model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), TABLE_NAME))
    gather.input[0] = TABLE_NAME
    model.graph.node.remove(tr)
    _drop_if_unused(model, weight.name)
    return True


def share_with_lm_head(model, block_size: int) -> bool:
    """After symmetric RTN: read the tied table from the LM head's int4 blocks; False when not possible."""
    import numpy as np
    from onnx import helper, numpy_helper

    found = tied_embedding(model)
    if found is None:
        return False
    gather, tr = found
    weight = tr.input[0]
    inits = {t.name: t for t in model.graph.initializer}
    # the quantizer's names for the MatMul's weight: <name>_Q4 (uint8 [N, K/bs, bs/2]), <name>_scales
    head = next((n for n in model.graph.node if n.op_type == "MatMulNBits" and n.input[1] == f"{weight}_Q4"), None)
    if head is None or len(head.input) != 3:  # zero points: another layout, not shared
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    k, n = attrs["K"], attrs["N"]
    scales = inits.get(head.input[2])
    if attrs.get("bits") != 4 or attrs.get("block_size") != block_size or k % block_size or scales is None \
            or list(scales.dims) != [n, k // block_size]:
        return False
    rows = f"{weight}_Q4/rows"
    model.graph.initializer.append(numpy_helper.from_array(np.array([n, k // 2], dtype=np.int64), f"{rows}/shape"))
    nodes = [
        helper.make_node("Reshape", [head.input[1], f"{rows}/shape"], [rows], name=f"{gather.name}/Reshape"),
        helper.make_node("GatherBlockQuantized", [rows, gather.input[1], head.input[2]], [gather.output[0]],
                         name=f"{gather.name}BlockQuantized", domain="com.microsoft", bits=4,
                         block_size=block_size, gather_axis=0, quantize_axis=1),
    ]
    at = list(model.graph.node).index(gather)
    model.graph.node.remove(gather)
    model.graph.node.remove(tr)
    for i, node in enumerate(nodes):
        model.graph.node.insert(at - 1 + i, node)  # where the Transpose was: its inputs are initializers
    _drop_if_unused(model, weight)
    return True


def _drop_if_unused(model, name: str) -> None:
    if not any(name in n.input for n in model.graph.node):
        for t in list(model.graph.initializer):
            if t.name == name:
                model.graph.initializer.remove(t)

"""onnx:int4 with --int4-algorithm gptq: the calibration data decide the rounding (same grid and size as
RTN), the rounding lowers the layers' output error on those data below RTN's, the RTN pass that writes the
artifact keeps GPTQ's levels exactly, the manifest says which data; without calibration data a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgedistill.errors import ConfigError
from edgedistill.export import ExportConfig, ExportOptions, export
from edgedistill.testing.tiny import CORPUS

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def llama256(tiny_model_factory):
    return tiny_model_factory("llama", hidden_size=256)


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    path = tmp_path_factory.mktemp("gptq") / "calib.jsonl"
    path.write_text("".join(json.dumps({"prompt": t, "response": t[::-1]}) + "\n" for t in CORPUS))
    return path


def _int4_weights(model_dir) -> dict[str, np.ndarray]:
    """{MatMulNBits node: dequantized (N, K) weight} of an artifact (symmetric: zero point 8)."""
    from onnx import numpy_helper

    model = onnx.load(str(model_dir / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n, k, bs = attrs["N"], attrs["K"], attrs["block_size"]
        assert len(node.input) < 4 or not node.input[3], f"{node.name}: symmetric int4 has no zero points"
        packed = numpy_helper.to_array(inits[node.input[1]]).reshape(n, -1)
        scales = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(n, -1)
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1)[:, :k].astype(np.float32)
        out[node.name] = (q - 8) * np.repeat(scales, bs, axis=1)[:, :k]
    return out


def _down_proj_inputs(model_dir, texts) -> dict[int, torch.Tensor]:
    """{layer: the activations entering mlp.down_proj on ``texts``} from the PyTorch model."""
    from edgedistill.models import load_causal_lm

    model, tok = load_causal_lm(model_dir, what="model")
    acts: dict[int, list] = {}
    hooks = [layer.mlp.down_proj.register_forward_hook(
        lambda m, inp, out, i=i: acts.setdefault(i, []).append(inp[0].reshape(-1, inp[0].shape[-1])))
        for i, layer in enumerate(model.model.layers)]
    with torch.inference_mode():
        for t in texts:
            model(tok(t, return_tensors="pt").input_ids)
    for h in hooks:
        h.remove()
    return {i: torch.cat(a).double().numpy() for i, a in acts.items()}


@pytest.fixture(scope="module")
def artifacts(llama256, calib, tmp_path_factory, tiny_model_factory):
    """(rtn, gptq) onnx:int4 artifacts of the same model (from one float graph, exported once). Unverified:
    on a random tiny model, rounding tuned to 10 short records need not keep greedy agreement on the
    verification's generic prompts (a first run verified the GPTQ artifact and failed that bar: 16.7% < 25%)."""
    from onnx_export_helpers import shared_cache

    out = tmp_path_factory.mktemp("gptq-artifacts")
    with shared_cache(tmp_path_factory, tiny_model_factory).float_graph_exported_once():
        rtn = export(ExportConfig(model=str(llama256), artifacts=["onnx:int4"], out_dir=str(out / "r"),
                                  verify=False), log=lambda m: None).artifacts[0]
        gptq = export(ExportConfig(model=str(llama256), artifacts=["onnx:int4"], out_dir=str(out / "g"),
                                   verify=False, calibration_data=str(calib),
                                   options=ExportOptions(int4_algorithm="gptq")), log=lambda m: None).artifacts[0]
    return rtn, gptq


def test_gptq_same_grid_and_size_other_rounding(artifacts):
    from edgedistill.runtimes import open_runtime

    rtn, gptq = artifacts
    w_rtn, w_gptq = _int4_weights(rtn.path), _int4_weights(gptq.path)
    assert sorted(w_rtn) == sorted(w_gptq) and {k: v.shape for k, v in w_rtn.items()} == \
        {k: v.shape for k, v in w_gptq.items()}
    assert abs(gptq.size_bytes - rtn.size_bytes) < 0.01 * rtn.size_bytes  # same grid: same size
    assert any(not np.array_equal(w_rtn[k], w_gptq[k]) for k in w_rtn)
    with open_runtime(gptq.path, threads=1) as rt:  # onnxruntime loads and runs the GPTQ graph
        assert np.isfinite(np.asarray(rt.logits([1, 5, 9, 12]))).all()
    m = json.loads((gptq.path / "manifest.json").read_text())
    assert m["calibration"]["used_for"] == "gptq" and m["calibration"]["gptq_records"] == len(CORPUS)
    assert m["format_info"]["quantization"]["algorithm"] == "gptq"


def test_gptq_lowers_the_layer_error_on_the_calibration_data(artifacts, llama256, calib):
    """GPTQ's objective: the layer's output error on the calibration activations, ||X (W - W_q)^T||.
    (With onnxruntime's own GPTQ, used until 2026-12-01, layer 0 measured 102.5 against RTN's 72.5.)"""
    from edgedistill.export.calibration import load_calibration
    from edgedistill.models import load_causal_lm

    rtn, gptq = artifacts
    w_rtn, w_gptq = _int4_weights(rtn.path), _int4_weights(gptq.path)
    x = _down_proj_inputs(llama256, load_calibration(calib).texts)
    model, _ = load_causal_lm(llama256, what="model")
    for i, layer in enumerate(model.model.layers):
        w = layer.mlp.down_proj.weight.detach().double().numpy()
        node = next(k for k in w_rtn if f"layers.{i}/" in k and "down_proj" in k)
        err = {name: np.linalg.norm(x[i] @ (w - ws[node]).T) for name, ws in (("rtn", w_rtn), ("gptq", w_gptq))}
        assert err["gptq"] < err["rtn"], f"layer {i} down_proj: {err}"


def test_gptq_without_calibration_data_names_the_option(llama256, tmp_path):
    with pytest.raises(ConfigError, match=r"options\.int4_algorithm.*--calibration-data"):
        ExportConfig(model=str(llama256), artifacts=["onnx:int4"], out_dir=str(tmp_path / "o"),
                     options=ExportOptions(int4_algorithm="gptq"))
    assert not (tmp_path / "o").exists()


def _correlated(k: int, n: int, seed: int = 0):
    """Activations with correlated channels (as a trained model's are) and a weight [in, out]."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1000, k)) @ rng.standard_normal((k, k)) * 0.3 + rng.standard_normal(k)
    return x, (rng.standard_normal((k, n)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("block", [16, 32, 64])
def test_gptq_round_is_on_the_rtn_grid_and_beats_rtn(block):
    """gptq_round's output is a fixed point of MatMulNBits' RTN (the "mlas" grid of distill/qat.py, which
    tests/test_qat.py holds equal to the exported MatMulNBits weights): RTN re-derives every block's scale
    and level, so the artifact keeps GPTQ's choices; and its output error on the data is below RTN's."""
    from edgedistill.distill.qat import Grid, fake_quantize
    from edgedistill.export.onnx_gptq import gptq_round

    x, w = _correlated(128, 96)
    grid = Grid(4, block, True, "mlas", exact=True)
    q = gptq_round(w, x.T @ x, block, batch=48)  # a batch that is no multiple of the block: rounded down to one
    rtn = fake_quantize(torch.from_numpy(w.T.copy()), grid).numpy().T
    again = fake_quantize(torch.from_numpy(q.T.copy()), grid).numpy().T
    np.testing.assert_allclose(again, q, rtol=1e-6, atol=1e-9)
    scales = np.abs(q).reshape(-1, block, q.shape[1]).max(axis=1) / 8  # per block and output column
    levels = q.reshape(-1, block, q.shape[1]) / scales[:, None, :]
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert levels.min() >= -8 - 1e-4 and levels.max() <= 8 + 1e-4
    assert not np.array_equal(q, rtn)
    err_gptq, err_rtn = np.linalg.norm(x @ (w - q)), np.linalg.norm(x @ (w - rtn))
    assert err_gptq < 0.9 * err_rtn, (err_gptq, err_rtn)


def test_gptq_round_survives_a_channel_the_data_never_excite():
    """A dead input channel (zero activations, a zero Hessian row) has nothing to trade: the Cholesky
    factorisation must not break on it, and it is still rounded onto the grid (the shipped model may see it)."""
    from edgedistill.distill.qat import Grid, fake_quantize
    from edgedistill.export.onnx_gptq import gptq_round

    x, w = _correlated(64, 32, seed=1)
    x[:, 5] = 0
    q = gptq_round(w, x.T @ x, 32)
    assert np.isfinite(q).all() and q.shape == w.shape and np.abs(q[5]).max() > 0
    again = fake_quantize(torch.from_numpy(q.T.copy()), Grid(4, 32, True, "mlas", exact=True)).numpy().T
    np.testing.assert_allclose(again, q, rtol=1e-6, atol=1e-9)

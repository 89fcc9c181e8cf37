"""Importance matrices: computed from the PyTorch model, read back, passed to llama.cpp's quantizer."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS, ExportOptions
from edgedistill.export.gguf import describe_gguf, write_gguf
from edgedistill.export.gguf.imatrix import compute_imatrix
from edgedistill.export.gguf.quantize import load_imatrix, write_imatrix
from edgedistill.runtimes import open_runtime
from edgedistill.testing.tiny import CORPUS


@pytest.fixture(scope="module")
def llama256(tiny_model_factory):
    return tiny_model_factory("llama", hidden_size=256)


@pytest.fixture(scope="module")
def imatrix_file(llama256, tmp_path_factory):
    path = tmp_path_factory.mktemp("imx") / "imatrix.gguf"
    counts = compute_imatrix(llama256, list(CORPUS), path)
    assert "blk.0.attn_q.weight" in counts and "blk.1.ffn_down.weight" in counts
    return path


def test_imatrix_roundtrip(imatrix_file, tmp_path):
    data = load_imatrix(imatrix_file)
    assert data["blk.0.attn_q.weight"].shape == (256,)  # one value per input column
    assert data["blk.0.ffn_down.weight"].shape == (512,)
    assert all(np.all(v >= 0) and np.all(np.isfinite(v)) for v in data.values())
    path = tmp_path / "x.gguf"
    write_imatrix(path, {"a.weight": np.array([1.0, 2.0], dtype=np.float32)})
    assert load_imatrix(path)["a.weight"].tolist() == [1.0, 2.0]


def test_quantize_with_imatrix_changes_weights_and_loads(llama256, imatrix_file, tmp_path):
    fmt = FORMATS.get("gguf")
    (tmp_path / "plain").mkdir()
    (tmp_path / "imx").mkdir()
    fmt.write(llama256, tmp_path / "plain", "q4_k_m", ExportOptions())
    extra = fmt.write(llama256, tmp_path / "imx", "q4_k_m", ExportOptions(imatrix=imatrix_file))
    assert extra["imatrix"] == str(imatrix_file)
    a, b = (tmp_path / "plain" / "model.gguf").read_bytes(), (tmp_path / "imx" / "model.gguf").read_bytes()
    assert len(a) == len(b) and a != b, "same types and sizes, different (importance-weighted) rounding"
    assert describe_gguf(tmp_path / "imx" / "model.gguf")["tensor_type_counts"].get("Q4_K", 0) > 0
    with open_runtime(tmp_path / "imx") as rt:
        assert len(rt.greedy(rt.tokenize("The quick brown"), 4)) >= 1


def test_imatrix_errors(llama256, tmp_path):
    not_gguf = tmp_path / "old.dat"
    not_gguf.write_bytes(b"\x01\x00\x00\x00garbage")
    with pytest.raises(EdgeDistillError, match="legacy"):
        load_imatrix(not_gguf)
    with pytest.raises(EdgeDistillError, match="does not exist"):
        load_imatrix(tmp_path / "missing.gguf")
    with pytest.raises(EdgeDistillError, match="only applies"):
        write_gguf(llama256, tmp_path / "m.gguf", "f16", imatrix=not_gguf)
    with pytest.raises(EdgeDistillError, match="calibration"):
        compute_imatrix(llama256, [], tmp_path / "x.gguf")

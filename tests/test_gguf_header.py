"""The one GGUF header reader (edgedistill.gguf_header) against gguf-py's own GGUFReader."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

from edgedistill.errors import EdgeDistillError
from edgedistill.gguf_header import SkippedArray, read_gguf_header

# one key per scalar value type, with a value that shows the type's range
SCALARS = {
    GGUFValueType.UINT8: 250, GGUFValueType.INT8: -120, GGUFValueType.UINT16: 65000,
    GGUFValueType.INT16: -32000, GGUFValueType.UINT32: 4_000_000_000, GGUFValueType.INT32: -2_000_000_000,
    GGUFValueType.FLOAT32: 1.5, GGUFValueType.UINT64: 2**63 + 5, GGUFValueType.INT64: -(2**62),
    GGUFValueType.FLOAT64: 0.1, GGUFValueType.BOOL: True, GGUFValueType.STRING: "héllo ∑ wörld",
}


def _every_type_gguf(path: Path) -> Path:
    """A GGUF file with a key of every value type, arrays of each element type (short, long, nested,
    strings) and tensors of a float, a half and a block-quantized type."""
    w = GGUFWriter(path, "llama")
    for vtype, value in SCALARS.items():
        w.add_key_value(f"test.scalar.{vtype.name.lower()}", value, vtype)
    for vtype, value in SCALARS.items():
        if vtype != GGUFValueType.STRING:
            w.add_key_value(f"test.array.{vtype.name.lower()}", [value] * 3, GGUFValueType.ARRAY, sub_type=vtype)
    w.add_array("test.array.strings", ["a", "", "ü∑🙂", "last"])
    w.add_array("test.array.long_strings", [f"tok{i}" for i in range(300)])
    w.add_key_value("test.array.long_ints", list(range(1000)), GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
    w.add_array("test.array.nested", [[1, 2], [3, 4, 5]])
    w.add_uint32("llama.context_length", 77)
    w.add_tensor("a.f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("b.f16", np.ones((2, 8), dtype=np.float16))
    q = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), GGMLQuantizationType.Q8_0)
    w.add_tensor("c.q8_0", q, raw_dtype=GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _flat(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [x for v in value for x in (_flat(v) if isinstance(v, (list, np.ndarray)) else [v])]
    return value


def _assert_same_as_gguf_py(path: Path) -> None:
    ours = read_gguf_header(path)
    theirs = gguf.GGUFReader(str(path))
    keys = [k for k in theirs.fields if not k.startswith("GGUF.")]  # its own pseudo-fields (version, counts)
    assert list(ours.metadata) == keys
    for key in keys:
        # gguf-py flattens nested arrays (its FIXME); compare element sequences for those
        assert _flat(ours.metadata[key]) == theirs.fields[key].contents(), key
    assert ours.version == int(theirs.fields["GGUF.version"].contents())
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(ours.tensors, theirs.tensors):
        assert (a.ggml_type, a.type_name) == (int(b.tensor_type), b.tensor_type.name), a.name
        assert a.shape == tuple(int(d) for d in b.shape), a.name
        assert (a.n_elements, a.n_bytes, a.offset) == (int(b.n_elements), int(b.n_bytes), int(b.data_offset)), a.name


def test_every_value_type_matches_gguf_py(tmp_path):
    path = _every_type_gguf(tmp_path / "all.gguf")
    _assert_same_as_gguf_py(path)
    meta = read_gguf_header(path).metadata
    for vtype, value in SCALARS.items():  # and the values are the ones written, as Python scalars
        got = meta[f"test.scalar.{vtype.name.lower()}"]
        assert got == pytest.approx(value) if vtype == GGUFValueType.FLOAT64 else got == value
        assert type(got) is type(value)
    assert [a.tolist() for a in meta["test.array.nested"]] == [[1, 2], [3, 4, 5]]
    assert meta["test.array.long_ints"].dtype == np.int32


def test_tiny_model_gguf_matches_gguf_py(tiny_llama_gguf):
    _assert_same_as_gguf_py(tiny_llama_gguf)
    header = read_gguf_header(tiny_llama_gguf)
    assert header.architecture == "llama"
    assert header.arch_get(gguf.Keys.LLM.BLOCK_COUNT) == 2


def test_long_arrays_are_skipped_and_later_keys_still_read(tmp_path):
    path = _every_type_gguf(tmp_path / "all.gguf")
    full = read_gguf_header(path)
    short = read_gguf_header(path, max_array=64)
    assert short.metadata["test.array.long_strings"] == SkippedArray(GGUFValueType.STRING, 300)
    assert str(short.metadata["test.array.long_ints"]) == "<array of 1000>"
    # len() reads a skipped array as it reads a kept one (callers count a vocabulary without the strings)
    assert len(short.metadata["test.array.long_strings"]) == len(full.metadata["test.array.long_strings"]) == 300
    assert short.metadata["test.array.strings"] == ["a", "", "ü∑🙂", "last"]
    assert short.arch_get(gguf.Keys.LLM.CONTEXT_LENGTH) == 77  # written after the skipped arrays
    assert short.tensors == full.tensors
    assert read_gguf_header(path, with_tensors=False).tensors == []


@pytest.mark.parametrize("keep", [10, 24, 200, 2000, -40])
def test_truncated_file_is_a_clear_error_naming_it(tmp_path, keep):
    src = _every_type_gguf(tmp_path / "all.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src[:keep])
    with pytest.raises(EdgeDistillError, match="truncated|not a GGUF") as err:
        read_gguf_header(cut)
    assert str(cut) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + b"\0" * 60, b"GGUF" + (99).to_bytes(4, "little") + b"\0" * 40])
def test_not_a_gguf_file_is_a_clear_error_naming_it(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(EdgeDistillError, match="not a GGUF file|version 99") as err:
        read_gguf_header(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(EdgeDistillError, match="does not exist"):
        read_gguf_header(tmp_path / "missing.gguf")


def test_eval_reads_chat_template_and_parameters_through_it(tmp_path, tiny_llama_gguf):
    """eval's two GGUF reads (chat template with BOS/EOS texts, parameter count) once used GGUFReader."""
    from edgedistill.artifacts import detect_artifact
    from edgedistill.eval.evaluate import _format_from_gguf, count_parameters

    path = tmp_path / "chat.gguf"
    w = GGUFWriter(path, "llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "hi"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{{ bos_token }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}{{ eos_token }}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    fmt = _format_from_gguf(path)
    assert (fmt.source, fmt.bos_text) == (str(path), "<s>")
    assert fmt.text([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]) == "<s>[x][y]</s>"
    want = sum(int(t.n_elements) for t in gguf.GGUFReader(str(tiny_llama_gguf)).tensors)
    assert count_parameters(detect_artifact(tiny_llama_gguf)) == want > 0

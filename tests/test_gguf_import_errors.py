"""Bad input to the GGUF importer: each case is a clear EdgeDistillError, a non-zero exit from the CLI,
and no output directory (or leftover partial) afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.errors import EdgeDistillError
from edgedistill.gguf_import import SUPPORTED_ARCHITECTURES, build_tokenizer_from_gguf, import_gguf, read_gguf

sys.path.insert(0, str(Path(__file__).parent))
from gguf_import_helpers import write_gguf_from_hf  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_factory, tmp_path_factory):
    return write_gguf_from_hf(tiny_model_factory("llama"), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _write_gguf(path: Path, arch: str, tokenizer_model: str | None = "gpt2") -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    if tokenizer_model:
        w.add_tokenizer_model(tokenizer_model)
        w.add_token_list(["a", "b", "ab"])
        w.add_token_merges(["a b"])
    w.add_tensor("token_embd.weight", np.zeros((3, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*")), "a partial directory was left behind"


def _cli_fails(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    text = result.output.lower()
    for needle in needles:
        assert needle.lower() in text, result.output
    return result.output


def test_missing_file(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(EdgeDistillError, match="does not exist"):
        import_gguf(tmp_path / "nope.gguf", out)
    _cli_fails(["import-gguf", str(tmp_path / "nope.gguf"), "--out", str(out)], "error:", "does not exist")
    _assert_nothing_written(out)


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("this is a text file, not a model\n" * 10)
    out = tmp_path / "out"
    with pytest.raises(EdgeDistillError, match="not a GGUF file"):
        import_gguf(bad, out)
    _cli_fails(["import-gguf", str(bad), "--out", str(out)], "not a GGUF file")
    _assert_nothing_written(out)


@pytest.mark.parametrize("where", ["header", "vocabulary", "tensor data"])
def test_truncated_file(tiny_gguf, tmp_path, where):
    data = tiny_gguf.read_bytes()
    tensors = read_gguf(tiny_gguf).tensors
    end = {
        "header": 30,
        "vocabulary": data.index(b"tokenizer.ggml.merges") + 200,
        "tensor data": tensors[-1].offset + tensors[-1].n_bytes // 2,
    }[where]
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:end])
    out = tmp_path / "out"
    with pytest.raises(EdgeDistillError, match="truncated|not a GGUF"):
        import_gguf(cut, out)
    _cli_fails(["import-gguf", str(cut), "--out", str(out)], "error:")
    _assert_nothing_written(out)


def test_unsupported_architecture_lists_supported(tmp_path):
    path = _write_gguf(tmp_path / "bert.gguf", "bert")
    out = tmp_path / "out"
    with pytest.raises(EdgeDistillError) as info:
        import_gguf(path, out)
    assert "'bert'" in str(info.value) and "gemma3" in str(info.value) and "llama" in str(info.value)
    output = _cli_fails(["import-gguf", str(path), "--out", str(out)], "cannot import architecture", "hint:")
    assert all(a in output for a in SUPPORTED_ARCHITECTURES)
    _assert_nothing_written(out)


def test_unsupported_tokenizer_type(tmp_path):
    path = _write_gguf(tmp_path / "t5tok.gguf", "llama", tokenizer_model="t5")
    with pytest.raises(EdgeDistillError, match="tokenizer.ggml.model is 't5'"):
        build_tokenizer_from_gguf(path)
    out = tmp_path / "out"
    _cli_fails(["import-gguf", str(path), "--out", str(out)], "tokenizer.ggml.model")
    _assert_nothing_written(out)


def test_file_without_vocabulary(tmp_path):
    path = _write_gguf(tmp_path / "novocab.gguf", "llama", tokenizer_model=None)
    with pytest.raises(EdgeDistillError, match="has no tokenizer"):
        import_gguf(path, tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_broken_weights_leave_nothing(tmp_path):
    """A supported architecture whose tensors do not fit: the transformers loader fails, we report it."""
    path = _write_gguf(tmp_path / "broken.gguf", "llama")
    out = tmp_path / "out"
    with pytest.raises(EdgeDistillError, match="could not"):
        import_gguf(path, out)
    _assert_nothing_written(out)


def test_existing_output_needs_overwrite(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")  # not an import: refused, --overwrite or not
    _cli_fails(["import-gguf", str(tiny_gguf), "--out", str(out)], "not an earlier edgedistill output")
    assert (out / "keep.txt").read_text() == "mine"
    done = tmp_path / "done"
    assert CliRunner().invoke(main, ["import-gguf", str(tiny_gguf), "--out", str(done)]).exit_code == 0
    _cli_fails(["import-gguf", str(tiny_gguf), "--out", str(done)], "earlier edgedistill output", "--overwrite")
    assert CliRunner().invoke(main, ["import-gguf", str(tiny_gguf), "--out", str(done), "--overwrite"]).exit_code == 0


def test_reader_metadata_and_tensors(tiny_gguf):
    g = read_gguf(tiny_gguf)
    assert g.architecture == "llama"
    assert g.get("tokenizer.ggml.model") == "gpt2"
    assert len(g.get("tokenizer.ggml.tokens")) == g.get("llama.vocab_size")
    names = {t.name for t in g.tensors}
    assert {"token_embd.weight", "output.weight", "blk.0.attn_q.weight", "output_norm.weight"} <= names
    size = tiny_gguf.stat().st_size
    assert all(t.offset + t.n_bytes <= size for t in g.tensors)
    assert read_gguf(tiny_gguf, with_tensors=False).tensors == []

"""A vocabulary-pruned student downstream: export (GGUF, ONNX, ort-genai) verifies, llama.cpp tokenizes
the GGUF as the student's HF tokenizer does, import-gguf and eval carry the id map."""

from __future__ import annotations

import json
import shutil

import pytest

from edgedistill.export import ExportConfig, export
from edgedistill.prune.vocab import prune_vocabulary
from edgedistill.testing.tiny import CORPUS, build_tiny_model
from edgedistill.vocab_map import MAP_FILE, load_vocab_map

CALIBRATION = CORPUS[:9]
EXTRA = ["Ελληνικά и кириллица 🦀🎉", "<|user|>\nhi<|end|>\n<|assistant|>\n", "zzz  QQQ\t\n0xDEADBEEF", CORPUS[-1]]
SPM_EXTRA = ["Ελληνικά и кириллица 🦀🎉", "<start_of_turn>user\nhi<end_of_turn>\n", "zzz  QQQ\t\n0xDEADBEEF"]


@pytest.fixture(scope="module")
def pruned_bpe(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("pv-export")
    teacher = build_tiny_model("llama", root / "teacher", tokenizer=tiny_tokenizer)
    student = root / "student"
    prune_vocabulary(teacher, list(CALIBRATION), student)
    return teacher, student


def _llama_tokenize_equal(gguf_file, hf_dir, texts) -> int:
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(hf_dir)
    llm = llama_cpp.Llama(str(gguf_file), vocab_only=True, verbose=False)
    n = 0
    try:
        for text in texts:
            for special in (True, False):
                got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)
                want = hf(text, add_special_tokens=True, split_special_tokens=not special)["input_ids"]
                assert got == want, (text, special)
                n += 1
    finally:
        llm.close()
    return n


def test_gguf_export_of_a_pruned_bpe_student_verifies(pruned_bpe, tmp_path):
    pytest.importorskip("llama_cpp")
    teacher, student = pruned_bpe
    result = export(ExportConfig(model=str(student), artifacts=["gguf:f16"], out_dir=str(tmp_path / "a"),
                                 new_tokens=4), log=lambda m: None)
    assert result.passed, result.summary()
    art = result.artifacts[0].path
    figures = json.loads((art / "manifest.json").read_text())["verification"]["figures"]
    assert figures["tokenizer_checked"] > 0 and figures["tokenizer_mismatches"] == 0
    assert load_vocab_map(art) == load_vocab_map(student)  # eval finds the map next to the artifact
    (gguf_file,) = art.glob("*.gguf")
    assert _llama_tokenize_equal(gguf_file, student, list(CORPUS) + EXTRA) == 2 * (len(CORPUS) + len(EXTRA))

    # import-gguf brings the map back with the model
    from edgedistill.gguf_import import import_gguf

    back = import_gguf(gguf_file, tmp_path / "imported")
    assert load_vocab_map(back) == load_vocab_map(student)


@pytest.mark.parametrize("keep_model_file", [True, False], ids=["tokenizer.model", "tokenizer.json-only"])
def test_gguf_of_a_pruned_spm_student_tokenizes_as_hf(tmp_path, keep_model_file):
    pytest.importorskip("llama_cpp")
    from test_prune_vocab import _spm_model

    from edgedistill.export.gguf import write_gguf

    teacher = _spm_model(tmp_path / "t", keep_model_file=keep_model_file)
    student = tmp_path / "student"
    prune_vocabulary(teacher, list(CALIBRATION), student)
    assert (student / "tokenizer.model").exists() is keep_model_file
    out = tmp_path / "s.gguf"
    write_gguf(student, out, "f16")
    texts = list(CORPUS) + SPM_EXTRA
    assert _llama_tokenize_equal(out, student, texts) == 2 * len(texts)


def test_onnx_and_ort_genai_exports_of_a_pruned_student_verify(pruned_bpe, tmp_path):
    pytest.importorskip("optimum.onnxruntime")
    pytest.importorskip("onnxruntime_genai")
    _, student = pruned_bpe
    result = export(ExportConfig(model=str(student), artifacts=["onnx:fp32", "ort-genai:fp32"],
                                 out_dir=str(tmp_path / "a"), new_tokens=4), log=lambda m: None)
    assert result.passed, result.summary()
    for art in result.artifacts:
        figures = json.loads((art.path / "manifest.json").read_text())["verification"]["figures"]
        assert figures["tokenizer_mismatches"] == 0 and figures["tokenizer_checked"] > 0, art.path
        assert (art.path / MAP_FILE).exists()


def test_eval_agreement_goes_through_the_map(pruned_bpe, tmp_path):
    """The pruned student is the teacher restricted to the kept tokens: its top-1 predictions, mapped to
    teacher ids, equal the teacher's wherever the teacher's top-1 token is kept (and differ elsewhere)."""
    from edgedistill.eval import EvalConfig, evaluate

    teacher, student = pruned_bpe
    records = [{"id": f"r{i}", "prompt": CALIBRATION[i][:20], "reference": CALIBRATION[i][20:]} for i in range(4)]
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    bare = tmp_path / "bare"
    shutil.copytree(student, bare)
    (bare / MAP_FILE).unlink()
    out = tmp_path / "eval"
    report = evaluate(EvalConfig(models=[str(student), str(bare)], names=["mapped", "bare"], teacher=str(teacher),
                                 data=str(data), task="summarization", max_new_tokens=4, out=str(out)))
    _, mapped, unmapped = report.rows
    assert not [n for n in mapped["notes"] if "top-1 agreement over" in n]  # every record comparable
    assert unmapped["scores"]["top1_agreement"] is None  # without the map the ids are not the teacher's

    kept = set(load_vocab_map(student).student_to_teacher)
    t_recs = json.loads((out / "models" / "teacher.json").read_text())["records"]
    s_recs = json.loads((out / "models" / "mapped.json").read_text())["records"]
    n_kept = n_other = 0
    for t, s in zip(t_recs, s_recs):
        assert t["ids_hash"] == s["ids_hash"]
        for a, b in zip(t["top1"], s["top1"]):
            if a in kept:
                assert b == a
                n_kept += 1
            else:
                assert b != a and b in kept
                n_other += 1
    assert n_kept > 0
    assert mapped["scores"]["top1_agreement"] == pytest.approx(n_kept / (n_kept + n_other))

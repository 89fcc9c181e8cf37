"""Logit KD and eval of a vocabulary-pruned student go through its id map (vocab_map.json).

A student that is the teacher with a pruned vocabulary has, through the map, exactly the teacher's
distribution over the kept tokens: every KD loss (teacher in memory and top-k cache) is then zero at
the first step. Without the map the same student cannot be distilled at all (different vocabularies).
"""

from __future__ import annotations

import json

import pytest

from edgedistill.atomic import read_jsonl_records
from edgedistill.distill import DistillConfig, distill
from edgedistill.distill.losses import LOSSES
from edgedistill.errors import ConfigError
from edgedistill.prune.vocab import prune_vocabulary
from edgedistill.vocab_map import MAP_FILE

PROMPTS = [f"What is {i} plus 30?" for i in range(8)]


@pytest.fixture(scope="module")
def setup(tiny_model_factory, tmp_path_factory):
    from transformers import AutoTokenizer

    teacher = tiny_model_factory("llama")
    tok = AutoTokenizer.from_pretrained(teacher)
    root = tmp_path_factory.mktemp("vocab-distill")
    data = root / "data.jsonl"
    texts = []
    with open(data, "w") as fh:
        for i, prompt in enumerate(PROMPTS):
            messages = [{"role": "user", "content": prompt}]
            response = f"The answer is {i + 30}."
            fh.write(json.dumps({"id": str(i), "messages": messages, "prompt": prompt, "response": response}) + "\n")
            texts += [tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), response]
    student = root / "student"
    report = prune_vocabulary(teacher, texts, student)
    assert report.kept < len(tok)
    return teacher, student, data


def _first_loss(tmp_path, teacher, student, data, **kw) -> float:
    cfg = DistillConfig(student=str(student), teacher=str(teacher), data=str(data), out=str(tmp_path / "out"),
                        max_steps=1, alpha=1.0, learning_rate=1e-9, loss_chunk_tokens=16, **kw)
    distill(cfg)
    (step,) = [r for r in read_jsonl_records(tmp_path / "out" / "train_log.jsonl") if "step" in r]
    return step["loss"]


@pytest.mark.parametrize("loss", [n for n in LOSSES.names() if n != "sft"])
@pytest.mark.parametrize("topk", [None, 8])
def test_kd_through_the_map_matches_the_teacher_exactly(tmp_path, setup, loss, topk):
    teacher, student, data = setup
    assert _first_loss(tmp_path, teacher, student, data, loss=loss, teacher_topk=topk, temperature=2.0) < 1e-5


def test_the_distilled_student_keeps_its_map(tmp_path, setup):
    """Export and eval read the map from the distilled student's directory, so distill must carry it."""
    from edgedistill.vocab_map import load_vocab_map

    teacher, student, data = setup
    _first_loss(tmp_path, teacher, student, data, loss="forward_kl")
    assert load_vocab_map(tmp_path / "out") == load_vocab_map(student) is not None


def test_the_map_is_what_makes_it_work(tmp_path, setup):
    """The same student with its map removed is refused (other vocabulary), not silently mis-trained."""
    import shutil

    teacher, student, data = setup
    bare = tmp_path / "bare"
    shutil.copytree(student, bare)
    (bare / MAP_FILE).unlink()
    with pytest.raises(ConfigError, match="different vocabularies"):
        _first_loss(tmp_path, teacher, bare, data, loss="forward_kl")


def test_another_teacher_is_refused(tmp_path, setup, tiny_model_factory):
    from transformers import AutoTokenizer

    from edgedistill.testing.tiny import build_tiny_model, build_tokenizer

    _, student, data = setup
    other_tok = build_tokenizer(vocab_size=400)
    other = build_tiny_model("llama", tmp_path / "other", tokenizer=other_tok)
    assert AutoTokenizer.from_pretrained(other).get_vocab() != AutoTokenizer.from_pretrained(student).get_vocab()
    with pytest.raises(ConfigError, match="made from another teacher tokenizer"):
        _first_loss(tmp_path, other, student, data, loss="forward_kl")


def test_prune_cli_vocab_data_end_to_end(tmp_path, setup):
    """`edgedistill prune --vocab data [--vocab-size N]`: the student, its map and prune.json's vocab figures."""
    from click.testing import CliRunner
    from transformers import AutoTokenizer

    from edgedistill.cli import main
    from edgedistill.vocab_map import load_vocab_map

    teacher, _, data = setup
    out = tmp_path / "student"
    res = CliRunner().invoke(main, ["prune", "--teacher", str(teacher), "--data", str(data), "--out", str(out),
                                    "--vocab", "data"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "prune.json").read_text())
    vocab = report["vocab"]
    vmap = load_vocab_map(out)
    t_tok, s_tok = AutoTokenizer.from_pretrained(teacher), AutoTokenizer.from_pretrained(out)
    assert vocab["kept"] == len(vmap) == len(s_tok) < len(t_tok)
    assert vocab["token_coverage"] == 1.0 and vocab["identical_texts"] == 1.0
    assert report["parameters_after"]["total"] < report["parameters_before"]["total"]
    for line in data.read_text().splitlines():
        rec = json.loads(line)
        for text in (rec["response"], rec["prompt"]):
            assert [vmap.student_to_teacher[i] for i in s_tok(text).input_ids] == t_tok(text).input_ids

    res = CliRunner().invoke(main, ["prune", "--teacher", str(teacher), "--data", str(data), "--out",
                                    str(tmp_path / "bad"), "--vocab", "data", "--vocab-size", "5"])
    assert res.exit_code == 2
    assert "\nerror: vocab_size=5 is smaller than the" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "bad").exists()


def test_the_vocabulary_keeps_every_record_not_only_the_measured_ones(tmp_path, setup):
    """calibration_records limits the activation statistics; the student trains on every record, so
    the vocabulary step keeps every record's tokens."""
    from transformers import AutoTokenizer

    from edgedistill.prune import PruneConfig, prune
    from edgedistill.testing.tiny import CORPUS
    from edgedistill.vocab_map import load_vocab_map

    teacher = setup[0]
    answers = list(CORPUS[:6])  # prose, code, digits: each answer has words the others lack
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": PROMPTS[i], "response": a}) + "\n"
                            for i, a in enumerate(answers)))
    report = prune(PruneConfig(teacher=str(teacher), data=str(data), out=str(tmp_path / "s"), vocab="data",
                               calibration_records=1), log=lambda s: None)
    assert report.calibration_records == 1
    t_tok, s_tok = AutoTokenizer.from_pretrained(teacher), AutoTokenizer.from_pretrained(tmp_path / "s")
    m = load_vocab_map(tmp_path / "s").student_to_teacher
    for text in answers:
        assert [m[i] for i in s_tok(text).input_ids] == t_tok(text).input_ids, text
    # the first record alone would not have kept them: the check above can fail
    prune_vocabulary(teacher, [answers[0]], tmp_path / "first")
    kept_first = set(load_vocab_map(tmp_path / "first").student_to_teacher)
    assert any(not set(t_tok(a, add_special_tokens=False).input_ids) <= kept_first for a in answers[1:])

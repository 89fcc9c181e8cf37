"""Reading distillation data: accepted record shapes, skipped empty answers, clear errors."""

from __future__ import annotations

import json

import pytest

from edgedistill.distill.data import (
    IGNORE,
    collate,
    epoch_order,
    load_examples,
    split_train_val,
    tokenize_examples,
)
from edgedistill.errors import DataError


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_accepts_generate_plain_and_chat_records(tmp_path):
    path = write(tmp_path / "d.jsonl", [
        {"id": "a", "task": "qa", "messages": [{"role": "user", "content": "Hi?"}], "prompt": "Hi?",
         "response": "Hello.", "finish_reason": "stop", "flags": []},
        {"id": "b", "messages": [], "prompt": "x", "response": "", "flags": ["empty"]},
        {"prompt": "Two plus two?", "completion": "Four."},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name?"},
                      {"role": "assistant", "content": "Bob."}]},
    ])
    data = load_examples(path)
    assert data.skipped_empty == 1
    assert [e.response for e in data.examples] == ["Hello.", "Four.", "Bob."]
    assert data.examples[2].messages == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Name?"}]
    assert data.examples[1].messages is None and data.examples[1].prompt == "Two plus two?"


def test_missing_fields_name_file_line_and_fields(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}, "", {"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as exc:
        load_examples(path)
    msg = exc.value.message
    assert f"{path}:3" in msg and "answer, question" in msg


def test_malformed_json_and_empty_dataset(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{not json\n{"prompt": "c", "response": "d"}\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        load_examples(bad)
    empty = write(tmp_path / "empty.jsonl", [{"prompt": "a", "response": "", "flags": ["empty"]}])
    with pytest.raises(DataError, match="no usable examples"):
        load_examples(empty)
    with pytest.raises(DataError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")


def test_tokenize_uses_chat_template_and_masks_prompt(tmp_path, tiny_tokenizer):
    path = write(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "Add 2 and 3"}],
                                         "response": "5"}])
    ex = load_examples(path).examples
    tok = tokenize_examples(tiny_tokenizer, ex, max_length=512).examples[0]
    prompt = tiny_tokenizer.apply_chat_template([{"role": "user", "content": "Add 2 and 3"}],
                                                add_generation_prompt=True, tokenize=True, return_dict=False)
    assert prompt and all(isinstance(i, int) for i in prompt)  # token ids, not a BatchEncoding's keys
    assert tok.input_ids[:len(prompt)] == list(prompt)
    assert tok.labels[:len(prompt)] == [IGNORE] * len(prompt)
    response = tok.labels[len(prompt):]
    assert response[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(response[:-1]) == "5"
    assert tok.n_response == len(response)

    cut = tokenize_examples(tiny_tokenizer, ex, max_length=len(prompt) + 1)
    assert cut.n_truncated == 1 and len(cut.examples[0].input_ids) == len(prompt) + 1
    none_left = tokenize_examples(tiny_tokenizer, ex, max_length=len(prompt))
    assert none_left.n_dropped == 1 and not none_left.examples


def test_collate_right_pads_and_masks():
    from edgedistill.distill.data import TokenizedExample

    batch = collate([TokenizedExample([1, 2, 3], [IGNORE, 2, 3]), TokenizedExample([4, 5], [IGNORE, 5])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [IGNORE, 5, IGNORE]]


def test_split_and_epoch_order_are_seeded():
    train, val = split_train_val(10, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_train_val(10, 0.2, seed=3) == (train, val)
    assert epoch_order(10, 0, 1) == epoch_order(10, 0, 1)
    assert epoch_order(10, 0, 1) != epoch_order(10, 0, 2)
    assert sorted(epoch_order(10, 0, 1)) == list(range(10))


def test_without_chat_template_prompts_are_rendered_as_teacher_and_eval_render_them(tmp_path):
    """A base model (no chat template): the student trains on the very prompt text the teacher answered
    and `edgedistill eval` will ask, i.e. the generate record's messages, blank-line separated."""
    from edgedistill.distill.data import prompt_ids
    from edgedistill.eval.evaluate import PromptFormat
    from edgedistill.tasks import TASKS, render_plain
    from edgedistill.testing.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = None
    record = {"id": "a", "prompt": "The cat sat on the mat."}
    messages = TASKS.get("summarization").build_messages(record)  # task template around the prompt
    path = write(tmp_path / "d.jsonl", [{"id": "a", "messages": messages, "prompt": record["prompt"],
                                         "response": "A cat sat.", "flags": []},
                                        {"prompt": "Two plus two?", "completion": "Four."}])
    generated, plain = load_examples(path).examples
    assert tok.decode(prompt_ids(tok, generated), skip_special_tokens=True) == render_plain(messages)
    assert prompt_ids(tok, generated) == tok(PromptFormat(None, None, None).text(messages))["input_ids"]
    assert len(messages) > 1 or messages[0]["content"] != record["prompt"]  # the template really adds text
    assert prompt_ids(tok, plain) == tok("Two plus two?\n\n")["input_ids"]


def test_the_cue_a_record_was_generated_after_is_part_of_its_prompt(tmp_path):
    """generate records the cue in each line's sampling; the student trains on prompt + cue, exactly the
    text eval asks with the same cue. Records without one (the user's own pairs) get none."""
    from edgedistill.distill.data import prompt_ids
    from edgedistill.eval.evaluate import PromptFormat
    from edgedistill.tasks import render_plain
    from edgedistill.testing.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = None
    messages = [{"role": "user", "content": "Summarize: the cat sat on the mat."}]
    path = write(tmp_path / "d.jsonl", [
        {"id": "a", "messages": messages, "response": " sits.", "sampling": {"plain_cue": "Summary: It"}},
        {"id": "b", "messages": messages, "response": "A cat sat."}])
    cued, plain = load_examples(path).examples
    assert (cued.plain_cue, plain.plain_cue) == ("Summary: It", "")
    assert render_plain(messages, "Summary: It") == render_plain(messages) + "Summary: It"
    assert prompt_ids(tok, cued) == tok(PromptFormat(None, None, None).text(messages, "Summary: It"))["input_ids"]
    assert tok.decode(prompt_ids(tok, cued), skip_special_tokens=True).endswith("\n\nSummary: It")
    assert prompt_ids(tok, plain) == tok(render_plain(messages))["input_ids"]

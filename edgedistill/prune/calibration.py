"""Calibration data for pruning: the same records `generate` reads or writes, rendered as `distill` does.

Two kinds of input:

- `generate` output (or any prompt + response JSONL that `distill` accepts): prompt and teacher answer;
  perplexity is measured on the answer, as `distill` trains on it;
- prompts (any format `generate` reads): the task template makes the messages; a record's reference
  answer (``reference`` / ``answer`` / ``label``) stands in for the teacher's, else perplexity is
  measured on every token.

The prompt is the chat template's rendering when the tokenizer has one, else
:func:`edgedistill.tasks.render_plain` (base models), exactly as teachers, `distill` and `eval` render it.
"""

from __future__ import annotations

from pathlib import Path

from edgedistill.distill.data import Example, load_examples
from edgedistill.errors import DataError
from edgedistill.prune.importance import CalibSequence
from edgedistill.tasks import TASKS, render_plain


def load_calibration(path: str | Path, task: str, limit: int | None) -> list[Example]:
    """The first ``limit`` calibration examples, all with None (``response`` is empty for prompts-only data)."""
    path = Path(path)
    if path.suffix == ".jsonl" and path.is_file():
        try:
            return load_examples(path).examples[:limit]
        except DataError:
            pass  # no responses: prompts only, read below with the loaders `generate` uses
    from edgedistill.data.loading import load_records

    records = load_records(path)[:limit]
    t = TASKS.get(task)
    # prompts only: the student will be trained on answers `generate` writes after the task's cue
    return [Example(id=r["id"], messages=t.build_messages(r), prompt=None, response=r.get("reference") or "",
                    plain_cue=t.plain_cue) for r in records]


def prompt_text(tokenizer, ex: Example) -> str:
    messages = ex.messages or [{"role": "user", "content": ex.prompt}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return render_plain(messages, ex.plain_cue)


def calibration_texts(tokenizer, examples: list[Example]) -> list[str]:
    """Rendered prompt + teacher answer of each example: the text the student will see."""
    return [prompt_text(tokenizer, ex) + ex.response for ex in examples]


def tokenize_calibration(tokenizer, examples: list[Example], max_length: int) -> list[CalibSequence]:
    from edgedistill.distill.data import prompt_ids

    out = []
    for ex in examples:
        p = prompt_ids(tokenizer, ex)
        r = list(tokenizer(ex.response, add_special_tokens=False)["input_ids"]) if ex.response else []
        if r and tokenizer.eos_token_id is not None:
            r.append(tokenizer.eos_token_id)
        ids = (p + r)[:max_length]
        # score the answer; with prompts only, every next token
        scored = ([False] * len(p) + [True] * len(r))[:max_length] if r else [True] * len(ids)
        if len(ids) >= 2:
            out.append(CalibSequence(ids, scored))
    if not out:
        raise DataError("the calibration data have no record of two or more tokens")
    return out

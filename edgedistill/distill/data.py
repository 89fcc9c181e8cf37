"""Training examples for distillation: read JSONL, tokenize prompt + teacher response, batch.

Accepted records (one JSON object per line):

- ``edgedistill generate`` output: ``messages`` (the prompt as chat messages) or ``prompt``, plus
  ``response``; records whose ``flags`` contain ``"empty"`` or whose response is blank are skipped and
  counted (when every response is empty the data is refused).
- plain records: ``prompt`` + ``response`` (or ``completion``);
- chat records: ``messages`` ending with an assistant turn (that turn is the response).

Where the tokenizer has a chat template the prompt is ``template(messages, add_generation_prompt=True)``
and the response is the teacher text followed by EOS; otherwise prompt text + response text + EOS.
Prompt tokens are masked out of the loss (label -100).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgedistill.atomic import read_jsonl_records
from edgedistill.errors import DataError, EdgeDistillError
from edgedistill.tasks import record_plain_cue, render_plain

IGNORE = -100


@dataclass
class Example:
    """One prompt / teacher-response pair (text level)."""

    id: str
    messages: list[dict] | None
    prompt: str | None
    response: str
    #: the cue the answer was generated after, when the prompt was plain text (see tasks.render_plain)
    plain_cue: str = ""


@dataclass
class LoadedData:
    examples: list[Example]
    skipped_empty: int = 0
    source: str = ""


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt positions
    truncated: bool = False

    @property
    def n_response(self) -> int:
        """Positions whose next token is a response token (what the loss and top-k cache cover)."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)


@dataclass
class TokenizedData:
    examples: list[TokenizedExample]
    n_truncated: int = 0
    n_dropped: int = field(default=0)


def _record_to_example(rec, path: Path, line: int) -> Example | None:
    where = f"{path}:{line}"
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "empty" in (rec.get("flags") or []):
        return None
    rid = str(rec.get("id", line))
    messages = rec.get("messages")
    response = rec.get("response", rec.get("completion"))
    if messages is not None:
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                     for m in messages):
            raise DataError(f"{where}: 'messages' must be a list of {{role, content}} objects")
        if response is None and messages and messages[-1]["role"] == "assistant":
            response, messages = messages[-1]["content"], messages[:-1]
        if not messages:
            messages = None
    prompt = rec.get("prompt")
    if response is None or (messages is None and prompt is None):
        raise DataError(
            f"{where}: a training record needs a prompt ('messages' or 'prompt') and a response "
            f"('response', 'completion' or a final assistant message); this one has fields: "
            f"{', '.join(sorted(rec)) or '(none)'}"
        )
    if not isinstance(response, str) or (prompt is not None and not isinstance(prompt, str)):
        raise DataError(f"{where}: 'prompt' and 'response' must be strings")
    if not response.strip():  # nothing to learn from; counted with the flagged-empty ones
        return None
    return Example(id=rid, messages=messages, prompt=prompt, response=response, plain_cue=record_plain_cue(rec))


def load_examples(path: str | Path) -> LoadedData:
    """Read and validate a distillation JSONL file; errors name the file, line and present fields."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training data {path} does not exist", hint="run `edgedistill generate` first")
    try:
        records = read_jsonl_records(path)
    except EdgeDistillError as exc:
        raise DataError(exc.message) from None
    # line numbers for messages: recount non-blank lines
    lines = [i + 1 for i, raw in enumerate(path.read_bytes().split(b"\n")) if raw.strip()]
    out, skipped = [], 0
    for rec, line in zip(records, lines):
        ex = _record_to_example(rec, path, line)
        if ex is None:
            skipped += 1
        else:
            out.append(ex)
    if not out:
        raise DataError(
            f"training data {path} has no usable examples ({len(records)} records, {skipped} with an empty "
            "response)",
            hint="check the generate step's output",
        )
    return LoadedData(out, skipped, str(path))


def prompt_ids(tokenizer, ex: Example) -> list[int]:
    """The prompt as the teacher saw it: its ``messages`` (generate writes the conversation it sent,
    task template included) through the chat template, or rendered as plain text for a tokenizer
    without one, exactly as teachers and ``edgedistill eval`` render it."""
    messages = ex.messages or [{"role": "user", "content": ex.prompt}]
    if getattr(tokenizer, "chat_template", None):
        # transformers 5 returns a BatchEncoding (a Mapping, not a dict) unless return_dict=False
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer(render_plain(messages, ex.plain_cue))["input_ids"])


def tokenize_examples(tokenizer, examples: list[Example], max_length: int) -> TokenizedData:
    """Prompt + response + EOS token ids, prompt masked; cut at ``max_length`` (counted)."""
    out, n_trunc, n_drop = [], 0, 0
    eos = tokenizer.eos_token_id
    for ex in examples:
        p = prompt_ids(tokenizer, ex)
        r = list(tokenizer(ex.response, add_special_tokens=False)["input_ids"])
        if eos is not None:
            r.append(eos)
        ids = p + r
        labels = [IGNORE] * len(p) + r
        truncated = len(ids) > max_length
        if truncated:
            ids, labels = ids[:max_length], labels[:max_length]
            n_trunc += 1
        te = TokenizedExample(ids, labels, truncated)
        if te.n_response == 0:  # the prompt alone fills max_length: nothing to learn from
            n_drop += 1
            continue
        out.append(te)
    return TokenizedData(out, n_trunc, n_drop)


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded split of example indices; at least one validation example when val_fraction > 0."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = min(max(1, n_val), n - 1)
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return train, val


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch: a permutation that depends only on (seed, epoch), so a resumed
    run sees exactly the batches an uninterrupted run would."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def collate(examples: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels (IGNORE on prompt and padding)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def data_fingerprint(examples: list[TokenizedExample]) -> str:
    """A hash of the tokenized data; the top-k cache is only reused for exactly the same tokens."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.input_ids, e.labels]).encode())
    return h.hexdigest()[:16]

"""Stop sequences: an answer ends before the first occurrence of any of them.

The same rule everywhere (every teacher kind, eval's generation in every runtime), so that a teacher's
training answers and every model's eval outputs are cut alike:

- the stop string is looked for in the *generated* text only (never in the prompt);
- the answer is the text before its first occurrence; the stop string itself is dropped;
- generation ends at the token that completes the first stop string, so no tokens are spent after it.

    cut_at_stop("Returns x.\\nMore", ["\\n"])   # -> ("Returns x.", True)

Torch generation (``generate`` with an HF teacher, eval's batched greedy decoding) uses
:func:`stopping_criteria`, which decodes each row's new tokens after every step and marks the rows
whose text contains a stop string as finished (the rest of the batch goes on).
"""

from __future__ import annotations

from typing import Sequence


def cut_at_stop(text: str, stops: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` before the earliest stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops or () if s) if i >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True


def has_stop(text: str, stops: Sequence[str] | None) -> bool:
    return any(s and s in text for s in stops or ())


def stop_token_index(tokens: list[int], decode, stops: Sequence[str] | None) -> int | None:
    """Index of the token whose decoding completes the first stop string, None when none does.

    ``decode(ids) -> str``. The text of the first ``i + 1`` tokens is checked for growing ``i``, so the
    answer is the same whether generation stopped there (streaming) or ran on (a padded batch row)."""
    if not stops or not has_stop(decode(tokens), stops):
        return None
    for i in range(len(tokens)):
        if has_stop(decode(tokens[: i + 1]), stops):
            return i
    return None


def stopping_criteria(tokenizer, stops: Sequence[str] | None, prompt_width: int):
    """A transformers ``StoppingCriteriaList`` ending each row once its new text holds a stop string
    (None when there are no stops). ``prompt_width``: the (padded) prompt length of the batch."""
    stops = [s for s in stops or () if s]
    if not stops:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            # Decoding every row's new tokens each step is cheap next to a decode step of the model
            # (answers are tens of tokens), and exact for any tokenizer, unlike matching token ids.
            done = [has_stop(tokenizer.decode(row[prompt_width:].tolist()), stops) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopStrings()])

"""Task types: how a record becomes the teacher's prompt, and how an answer is read back.

Each :class:`Task` knows

- ``build_messages(record)``: the chat messages sent to the teacher (a template around the
  record's ``prompt``; chat records' ``messages`` are used as they are);
- ``extract_answer(text)``: the final answer in a response (a label, a number, a short answer, or
  the whole text), ``None`` when there is none;
- ``normalize_reference(ref)``: the reference in the same form, so ``extract_answer(response) ==
  normalize_reference(reference)`` is the correctness test for accuracy tasks;
- ``metric``: the primary metric name (``accuracy`` or ``rouge_l``) and ``required_fields``
  (what a record needs to be scored by ``edgedistill eval``);
- ``stop``: the default stop sequences of the task (``generate`` and ``eval`` end an answer before the
  first one unless told otherwise; see edgedistill/stopping.py).

    task = TASKS.get("math")
    task.build_messages({"prompt": "What is 6*7?"})
    task.extract_answer("6*7 = 42\\n#### 42")   # -> "42"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from edgedistill.registry import Registry

NLI_LABELS = ("entailment", "neutral", "contradiction")


def render_plain(messages: list[dict], cue: str = "") -> str:
    """Prompt text for a model without a chat template (a base model): the turns' contents separated
    by blank lines, ending in one, then ``cue`` (the opening of the answer, e.g. ``"Summary: It"``: a
    base model has no end-of-turn marker telling it an answer starts, so it tends to continue the
    prompt instead). Teachers, distillation and evaluation all render with this, so a student trains on
    exactly the prompt text it is later evaluated on."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n" + cue


def record_plain_cue(record: dict, default: str = "") -> str:
    """The cue a record's answer was generated after: ``generate`` records it in every line's
    ``sampling``; a record without one (the user's own pairs, older runs) gets ``default``."""
    sampling = record.get("sampling")
    if isinstance(sampling, dict) and isinstance(sampling.get("plain_cue"), str):
        return sampling["plain_cue"]
    return default


@dataclass(frozen=True)
class Task:
    name: str
    #: "{prompt}" is replaced by the record's prompt text
    template: str
    #: what the answer should look like, for docs and --help
    answer_format: str
    metric: str
    required_fields: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    extractor: Callable[[str], str | None] | None = None
    reference_normalizer: Callable[[str], str | None] | None = None
    #: default stop sequences: the answer ends before the first (``--stop`` overrides)
    stop: tuple[str, ...] = ()
    #: default opening of the answer for models prompted as plain text (see :func:`render_plain`);
    #: models with a chat template never see it (``--plain-cue`` overrides)
    plain_cue: str = ""

    def build_messages(self, record: dict) -> list[dict]:
        """Chat messages for ``record``: its own ``messages`` as given, else the template applied."""
        if record.get("messages"):
            return [dict(m) for m in record["messages"]]
        return [{"role": "user", "content": self.template.replace("{prompt}", record["prompt"])}]

    def extract_answer(self, text: str | None) -> str | None:
        if text is None or not text.strip():
            return None
        if self.extractor is None:
            return text.strip()
        return self.extractor(text)

    def normalize_reference(self, reference) -> str | None:
        if reference is None:
            return None
        ref = str(reference).strip()
        if self.reference_normalizer is not None:
            return self.reference_normalizer(ref)
        return ref or None


TASKS: Registry[Task] = Registry("task")


# --- answer extraction --------------------------------------------------------------------------

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"


def normalize_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '$42.' -> '42', '7.0' -> '7'; None if there is no number."""
    m = re.search(_NUMBER, text)
    if not m:
        return None
    s = m.group(0).replace(",", "").replace("$", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def extract_math_answer(text: str) -> str | None:
    """The final answer of a worked solution.

    Looked for in order: '#### 42' (GSM8K style), 'The final answer is 42', '\\boxed{42}',
    'Answer: 42'; failing those, the last number in the text.
    """
    patterns = [
        rf"####\s*({_NUMBER})",
        rf"final answer is[:\s]*\$?\\?(?:boxed\{{)?\s*({_NUMBER})",
        rf"\\boxed\{{\s*({_NUMBER})",
        rf"answer\s*(?:is|:)\s*({_NUMBER})",
    ]
    for pat in patterns:
        found = re.findall(pat, text, flags=re.IGNORECASE)
        if found:
            return normalize_number(found[-1])
    numbers = re.findall(_NUMBER, text)
    return normalize_number(numbers[-1]) if numbers else None


_NLI_STEMS = {"entail": "entailment", "neutral": "neutral", "contradict": "contradiction"}
# Integer labels as in MNLI / SNLI (0 entailment, 1 neutral, 2 contradiction).
_NLI_INDEX = {str(i): label for i, label in enumerate(NLI_LABELS)}


def extract_nli_label(text: str) -> str | None:
    """The label after 'Label:' / 'Answer:' if present, else the first label word in the text."""
    lowered = text.lower()
    marked = re.findall(r"(?:label|answer)\s*(?:is)?\s*[:\-]?\s*\**\s*([a-z]+)", lowered)
    candidates = marked[-1:]
    candidates.append(lowered)
    for chunk in candidates:
        hits = [(chunk.find(stem), label) for stem, label in _NLI_STEMS.items() if stem in chunk]
        if hits:
            return min(hits)[1]
    return None


def normalize_nli_reference(ref: str) -> str | None:
    if ref in _NLI_INDEX:
        return _NLI_INDEX[ref]
    return extract_nli_label(ref)


def _normalize_short(text: str) -> str:
    text = text.strip().strip(".").strip()
    return re.sub(r"\s+", " ", text).lower()


def extract_short_answer(text: str) -> str | None:
    """The text after the last 'Answer:' if present, else the first non-empty line; lower-cased."""
    found = re.findall(r"answer\s*:\s*(.+)", text, flags=re.IGNORECASE)
    if found:
        ans = found[-1]
    else:
        ans = next((line for line in text.splitlines() if line.strip()), "")
    ans = _normalize_short(ans)
    return ans or None


def normalize_short_reference(ref: str) -> str | None:
    return _normalize_short(ref) or None


# --- the task table -----------------------------------------------------------------------------

TASKS.register(
    "conversation",
    Task(
        name="conversation",
        template="{prompt}",
        answer_format="a helpful free-form reply",
        metric="rouge_l",
    ),
)

TASKS.register(
    "qa",
    Task(
        name="qa",
        template=(
            "Answer the question. Give a short explanation if needed, then the short answer on the last "
            "line as 'Answer: <answer>'.\n\nQuestion: {prompt}"
        ),
        answer_format="last line 'Answer: <short answer>'",
        metric="accuracy",
        required_fields=("reference",),
        extractor=extract_short_answer,
        reference_normalizer=normalize_short_reference,
    ),
)

TASKS.register(
    "nli",
    Task(
        name="nli",
        template=(
            "Decide whether the premise entails the hypothesis, contradicts it, or neither.\n\n"
            "{prompt}\n\n"
            "Reply with one word on the last line as 'Label: <label>', where <label> is entailment, "
            "neutral or contradiction."
        ),
        answer_format="'Label: entailment|neutral|contradiction'",
        metric="accuracy",
        required_fields=("reference",),
        labels=NLI_LABELS,
        extractor=extract_nli_label,
        reference_normalizer=normalize_nli_reference,
    ),
)

TASKS.register(
    "math",
    Task(
        name="math",
        template=(
            "Solve the problem step by step. End with the final numeric answer on its own line as "
            "'#### <number>'.\n\nProblem: {prompt}"
        ),
        answer_format="worked solution ending with '#### <number>'",
        metric="accuracy",
        required_fields=("reference",),
        extractor=extract_math_answer,
        reference_normalizer=extract_math_answer,
    ),
)

TASKS.register(
    "summarization",
    Task(
        name="summarization",
        template="Summarize the following text in two or three sentences.\n\n{prompt}",
        answer_format="a two or three sentence summary",
        metric="rouge_l",
        required_fields=("reference",),
        # A summary is one paragraph; a base model that never emits an end-of-turn token would
        # otherwise ramble on to the token cap (every quickstart answer did). Not the first newline:
        # Gemma 3 270M wraps its one sentence like a docstring ("...a 4-character string into\na
        # 4-character sequence."), so a newline would cut it mid-sentence.
        stop=("\n\n",),
        # Without a cue, Gemma 3 270M (base) copied the prompt's code instead of summarising it in
        # 33 of 40 quickstart test prompts (ROUGE-L 18.5); after "Summary: It" it answered all 40 with
        # a sentence ("returns the base64 encoded string of ...", ROUGE-L 32.4). Other cues tried on
        # the same 40: "TL;DR:" 22.9, "Summary: The" 25.6, "Summary:" 0 (it answers with a blank line).
        plain_cue="Summary: It",
    ),
)

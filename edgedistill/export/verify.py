"""Checking that an exported artifact behaves like the PyTorch model it came from.

Three comparisons, each run through ``edgedistill.runtimes`` exactly as bench and eval load the
artifact (so what is verified is what is later measured):

1. **Next-token logits** on a fixed prompt set, fed the *same* token ids (the Hugging Face tokenizer's)
   so that tokenization cannot hide or cause a difference: max |logit difference| and the mean / max
   over positions of KL(torch || artifact). Exporters may pad or trim the vocabulary (GGUF keeps the
   tokenizer's size, checkpoints often pad to a multiple of 64), so both sides are compared over the
   common range of ids.
2. **Greedy continuation** of ``new_tokens`` tokens from each prompt. ``greedy_match`` (the figure
   ``QuantSpec.min_greedy_match`` applies to) is teacher-forced: at each step of torch's own greedy
   continuation, is the artifact's argmax the token torch chose? That does not cascade, so one
   near-tie early on does not make every later token "wrong". The free-running comparison is reported
   too: ``greedy_prefix_match`` (share of tokens before the first divergence, mean over prompts) and
   ``greedy_free_match`` (share of equal positions overall).
   **Stream consistency**: the artifact's streamed tokens (its KV-cache path, what an app runs) must
   match the argmax of its own full-sequence forward pass (>= :data:`MIN_STREAM_CONSISTENCY`); this
   catches a broken cache independently of quantization noise.
3. **Tokenization identity**: the runtime's own tokenizer must give the Hugging Face tokenizer's ids on
   :data:`TOKENIZER_CORPUS` (scripts, digits, whitespace runs, code, emoji). Any difference fails, since
   an app would otherwise feed the model ids it was never trained on.

Thresholds come from the format's :class:`~edgedistill.export.formats.QuantSpec`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedistill.export.formats import QuantSpec

#: Prompts for the logit and greedy comparisons: prose, chat-like, code, numbers, non-Latin text.
VERIFY_PROMPTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog because",
    "Question: What is 12 plus 30? Answer:",
    "def add(a, b):\n    return",
    "Summarize: The meeting covered the budget, the schedule and the hiring plan.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100",
    "Unicode: café naïve Zürich 東京 Привет",
)

#: Texts on which the artifact's tokenizer must reproduce the Hugging Face tokenizer's ids exactly.
TOKENIZER_CORPUS: tuple[str, ...] = (
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "   three leading spaces and    runs   of whitespace",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\n\nline five",
    "\r\nWindows line ending\r\n",
    "Numbers: 0 7 42 123 1234 12345 3.14159 -273.15 1e10 0x1F",
    "Dates 2026-11-29 and times 06:25:00",
    "Unicode Latin: café naïve Zürich façade São Paulo Łódź",
    "Cyrillic: Привет, как дела?",
    "Greek: Καλημέρα κόσμε",
    "Arabic: مرحبا بالعالم",
    "Hebrew: שלום עולם",
    "Hindi: नमस्ते दुनिया",
    "Chinese: 你好，世界。東京",
    "Japanese: こんにちは世界、カタカナ",
    "Korean: 안녕하세요 세계",
    "Thai: สวัสดีชาวโลก",
    "Emoji: 🙂 👍🏽 🇩🇪 👨‍👩‍👧 ❤️",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n\tprint(i * 2)",
    "if (x != y && z >= 0) { return x->next; }",
    "<html><body class=\"main\">Hi &amp; bye</body></html>",
    'JSON: {"key": [1, 2.5, null, true], "s": "v"}',
    "Punctuation!!! ??? ... --- *** ### @@@ $$$ %%%",
    "MiXeD CaSe and ALLCAPS and snake_case_names and camelCaseNames",
    "URL https://example.com/path?q=1&r=two#frag",
    "Question: What is 12 plus 30? Answer: 42",
)


@dataclass
class Reference:
    """The PyTorch model's behaviour on the verification inputs, computed once per export run."""

    prompt_ids: list[list[int]]
    greedy: list[list[int]]
    """Torch's greedy continuation of each prompt (ends early at EOS)."""
    logits: list[np.ndarray]
    """Torch logits on ``sequences`` (every position)."""
    corpus_ids: list[list[int]]
    new_tokens: int

    @property
    def sequences(self) -> list[list[int]]:
        """Prompt + greedy continuation minus its last token: the rows give every prompt position and
        the distribution each greedy token was chosen from."""
        return [p + g[:-1] for p, g in zip(self.prompt_ids, self.greedy)]


@dataclass
class ArtifactOutputs:
    """What the artifact's runtime produced on the reference's inputs."""

    logits: list[np.ndarray]
    """Logits on ``Reference.sequences``."""
    greedy: list[list[int]]
    """Its own free-running greedy continuation of each prompt (through the KV-cache path)."""
    self_argmax: list[list[int]] | None
    """Argmax of its full-sequence logits along its own continuation (no KV cache); None: not measured."""
    corpus_ids: list[list[int]]


#: Smallest share of the artifact's streamed (KV-cache) greedy tokens that must equal the argmax of
#: its own full-sequence forward pass. Independent of quantization: both paths use the same weights,
#: so a lower share means a broken cache / position handling. Not 1.0 because different kernels for
#: one token and many tokens may flip near-ties.
MIN_STREAM_CONSISTENCY = 0.9


@dataclass
class Verification:
    """Figures, thresholds and verdict for one artifact (stored in its manifest)."""

    passed: bool
    figures: dict
    thresholds: dict
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def build_reference(
    model_dir: Path,
    prompts: tuple[str, ...] | list[str] = VERIFY_PROMPTS,
    new_tokens: int = 16,
    threads: int | None = None,
) -> Reference:
    """Run the PyTorch model (``TorchRuntime``) on the verification prompts."""
    from edgedistill.artifacts import Artifact
    from edgedistill.runtimes.torch_runtime import TorchRuntime

    rt = TorchRuntime(Artifact(Path(model_dir), "hf", Path(model_dir) / "config.json"), threads=threads)
    try:
        prompt_ids = [rt.tokenize(p) for p in prompts]
        # One batch instead of a decode loop per prompt: a decode step of a float32 model is bound by
        # reading its weights, so six prompts cost about what one does (3.0 -> 1.3 s at 113M).
        greedy = rt.greedy_batch(prompt_ids, new_tokens)
        ref = Reference(prompt_ids, greedy, [], [rt.tokenize(t) for t in TOKENIZER_CORPUS], new_tokens)
        ref.logits = [rt.logits(seq) for seq in ref.sequences]
        # Padding changes kernel shapes, so a near-tie may have gone the other way in the batch. Every
        # greedy token must be the argmax of the unpadded full-sequence logits; a prompt where one is
        # not is decoded again on its own.
        for i, (ids, toks) in enumerate(zip(prompt_ids, greedy)):
            if toks and ref.logits[i][len(ids) - 1:].argmax(-1).tolist() != toks:
                ref.greedy[i] = rt.greedy(ids, new_tokens)
                ref.logits[i] = rt.logits(ref.sequences[i])
    finally:
        rt.close()
    return ref


def thresholds_of(spec: QuantSpec) -> dict:
    return {
        "max_kl": spec.max_kl,
        "min_greedy_match": spec.min_greedy_match,
        "max_abs_logit_diff": spec.max_abs_logit_diff,
        "min_stream_consistency": _min_stream(spec),
        "tokenizer_mismatches": 0,
    }


def verify_artifact(artifact_path: Path, spec: QuantSpec, ref: Reference, threads: int | None = None) -> Verification:
    """Load ``artifact_path`` in its runtime and compare it with ``ref`` against ``spec``'s thresholds."""
    from edgedistill.runtimes import open_runtime

    with open_runtime(artifact_path, threads=threads) as rt:
        rows: dict[tuple[int, ...], np.ndarray] = {}  # when the artifact's tokens equal torch's, reuse

        def all_rows(ids: list[int]) -> np.ndarray:
            if tuple(ids) not in rows:
                rows[tuple(ids)] = _all_rows(rt, ids)
            return rows[tuple(ids)]

        logits = [all_rows(seq) for seq in ref.sequences]
        greedy = [rt.greedy(ids, ref.new_tokens) for ids in ref.prompt_ids]
        self_argmax = [
            all_rows(p + g[:-1])[len(p) - 1:].argmax(-1).tolist() if g else []
            for p, g in zip(ref.prompt_ids, greedy)
        ]
        corpus = [rt.tokenize(t) for t in TOKENIZER_CORPUS]
    return judge(compare(ref, ArtifactOutputs(logits, greedy, self_argmax, corpus)), spec)


def unloadable(exc: BaseException, spec: QuantSpec) -> Verification:
    """The verdict for an artifact that its runtime could not load or run."""
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return Verification(
        passed=False, figures={}, thresholds=thresholds_of(spec),
        failures=[f"the runtime could not load or run the artifact: {type(exc).__name__}: {msg}"],
    )


def _all_rows(rt, ids: list[int]) -> np.ndarray:
    """Logits for every position, also from runtimes that only return the last one."""
    import numpy as np  # imported when used: `edgedistill --help` reads ExportConfig, which imports this module

    if rt.full_logits:
        return np.asarray(rt.logits(ids))
    return np.stack([np.asarray(rt.logits(ids[: i + 1]))[-1] for i in range(len(ids))])


def compare(ref: Reference, art: ArtifactOutputs | list[np.ndarray], greedy: list[list[int]] | None = None,
            corpus_ids: list[list[int]] | None = None) -> dict:
    """The verification figures (no verdict) from the artifact's outputs on ``ref``'s inputs.

    Also accepts the older call ``compare(ref, logits_on_prompts, greedy, corpus_ids)``: then only the
    prompt positions are compared, ``greedy_match`` falls back to the free-running share and stream
    consistency is not measured (``None``). :func:`verify_artifact` always does the full comparison.
    """
    import numpy as np

    if not isinstance(art, ArtifactOutputs):
        art = ArtifactOutputs(list(art), greedy or [], None, corpus_ids or [])
    max_abs, kls, top1 = 0.0, [], []
    tf_equal = tf_total = 0
    vocab_torch = ref.logits[0].shape[-1]
    vocab_art = art.logits[0].shape[-1]
    common = min(vocab_torch, vocab_art)
    teacher_forced = True
    for p, g, t_log, a_log in zip(ref.prompt_ids, ref.greedy, ref.logits, art.logits):
        a = np.asarray(a_log, dtype=np.float64)[:, :common]
        t = np.asarray(t_log, dtype=np.float64)[:, :common]
        if a.shape[0] == len(p) < t.shape[0]:  # older call: logits on the prompt only
            t, teacher_forced = t[: len(p)], False
        tf_total += len(g)
        if a.shape != t.shape or not np.all(np.isfinite(a)):
            max_abs = float("inf")
            kls.append(float("inf"))
            continue
        max_abs = max(max_abs, float(np.abs(t - a).max()))
        lp_t, lp_a = _log_softmax(t), _log_softmax(a)
        kls.extend((np.exp(lp_t) * (lp_t - lp_a)).sum(-1).clip(min=0.0).tolist())
        top1.extend((t.argmax(-1) == a.argmax(-1)).tolist())
        # teacher-forced greedy: the artifact's choice at each step of torch's own continuation
        if teacher_forced:
            chosen = np.asarray(a_log)[len(p) - 1:].argmax(-1).tolist()  # full vocab: a padded id may win
            tf_equal += sum(int(x == y) for x, y in zip(chosen, g))

    prefix_shares, free_equal, free_total = [], 0, 0
    for r, a in zip(ref.greedy, art.greedy):
        n = max(len(r), len(a), 1)
        same = [x == y for x, y in zip(r, a)]
        prefix_shares.append(next((i for i, s in enumerate(same) if not s), len(same)) / n)
        free_equal += sum(same)
        free_total += n
    stream_consistency = None
    if art.self_argmax is not None:
        stream_equal = sum(sum(int(x == y) for x, y in zip(g, s)) for g, s in zip(art.greedy, art.self_argmax))
        stream_total = sum(len(g) for g in art.greedy)
        stream_consistency = stream_equal / stream_total if stream_total else 1.0

    mismatches = [
        {"text": text, "expected": list(e), "got": list(g)}
        for text, e, g in zip(TOKENIZER_CORPUS, ref.corpus_ids, art.corpus_ids)
        if list(e) != list(g)
    ]
    return {
        "prompts": len(ref.prompt_ids),
        "positions": len(kls),
        "vocab_torch": int(vocab_torch),
        "vocab_artifact": int(vocab_art),
        "vocab_compared": int(common),
        "max_abs_logit_diff": max_abs,
        "kl_mean": float(np.mean(kls)) if kls else float("inf"),
        "kl_max": float(np.max(kls)) if kls else float("inf"),
        "top1_agreement": float(np.mean(top1)) if top1 else 0.0,
        "greedy_new_tokens": ref.new_tokens,
        "greedy_match": (tf_equal / tf_total if tf_total else 0.0) if teacher_forced
        else (free_equal / free_total if free_total else 0.0),
        "greedy_match_kind": "teacher-forced" if teacher_forced else "free-running",
        "greedy_prefix_match": float(np.mean(prefix_shares)) if prefix_shares else 0.0,
        "greedy_free_match": free_equal / free_total if free_total else 0.0,
        "stream_consistency": stream_consistency,
        "tokenizer_checked": len(TOKENIZER_CORPUS),
        "tokenizer_mismatches": len(mismatches),
        "tokenizer_mismatch_examples": mismatches[:3],
    }


def judge(figures: dict, spec: QuantSpec) -> Verification:
    """Apply ``spec``'s thresholds to ``figures``."""
    th = thresholds_of(spec)
    failures = []
    if not figures["kl_mean"] <= spec.max_kl:
        failures.append(f"mean KL {figures['kl_mean']:.3g} > allowed {spec.max_kl:g}")
    if not figures["greedy_match"] >= spec.min_greedy_match:
        failures.append(
            f"greedy agreement {figures['greedy_match']:.1%} < required {spec.min_greedy_match:.0%} "
            f"({figures.get('greedy_match_kind', 'teacher-forced')})"
        )
    if figures["stream_consistency"] is not None and not figures["stream_consistency"] >= _min_stream(spec):
        failures.append(
            f"streamed greedy tokens agree with the artifact's own full forward pass on only "
            f"{figures['stream_consistency']:.1%} (< {_min_stream(spec):.0%}): KV-cache decoding is broken"
        )
    if spec.max_abs_logit_diff is not None and not figures["max_abs_logit_diff"] <= spec.max_abs_logit_diff:
        failures.append(
            f"max |logit difference| {figures['max_abs_logit_diff']:.3g} > allowed {spec.max_abs_logit_diff:g}"
        )
    if figures["tokenizer_mismatches"]:
        ex = figures["tokenizer_mismatch_examples"][0]
        failures.append(
            f"tokenizer differs on {figures['tokenizer_mismatches']}/{figures['tokenizer_checked']} texts, "
            f"e.g. {ex['text']!r}: expected {ex['expected'][:12]} got {ex['got'][:12]}"
        )
    return Verification(passed=not failures, figures=figures, thresholds=th, failures=failures)


def _min_stream(spec: QuantSpec) -> float:
    """The spec's own stream-consistency floor (onnx:int8's dynamic activation scales), else the default."""
    own = getattr(spec, "min_stream_consistency", None)
    return MIN_STREAM_CONSISTENCY if own is None else own


def _log_softmax(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))

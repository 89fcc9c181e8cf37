"""A ``.gguf`` file as teacher through llama-cpp-python: one prompt at a time, or with ``parallel`` N
several decoded together in one llama.cpp batch (edgedistill/teachers/gguf_batched.py).

Uses the file's own chat template (``create_chat_completion``) when it has one, else plain-text
completion (the turns' contents separated by blank lines, as the HF teacher does for base models).

Log-probabilities are captured with a logits processor, which llama.cpp calls with the raw
next-token logits before sampling; a numpy top-k per step is cheap, whereas llama-cpp-python's own
``logprobs`` needs ``logits_all`` (n_ctx x vocab floats) and sorts the whole vocabulary in Python
for every token.
"""

from __future__ import annotations

from edgedistill.errors import EdgeDistillError
from edgedistill.stopping import cut_at_stop
from edgedistill.teachers.base import Completion, SamplingConfig, Teacher, TeacherConfig, teacher_id
from edgedistill.teachers.llama_batch import top_logprobs
from edgedistill.tasks import render_plain


class _TopKRecorder:
    """A llama-cpp logits processor that records the top-k log-probabilities of every sampling step."""

    def __init__(self, k: int):
        self.k = k
        self.steps: list[list[tuple[int, float]]] = []

    def __call__(self, input_ids, scores):
        self.steps.append(top_logprobs(scores, self.k))
        return scores  # unchanged: recording only


class GGUFTeacher(Teacher):
    preferred_batch = 1

    def __init__(self, config: TeacherConfig):
        try:
            import llama_cpp
        except ImportError:
            raise EdgeDistillError(
                "a .gguf teacher needs llama-cpp-python, which is not installed",
                hint="pip install 'edgedistill[llama]' (or use an HF directory / --teacher-url)",
            ) from None
        self.config = config
        self.id = teacher_id(config)
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(config.path), n_ctx=config.n_ctx, n_threads=config.n_threads, verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise EdgeDistillError(f"llama.cpp could not load the teacher {config.path}: {exc}") from None
        self.has_chat_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        self._processors = llama_cpp.LogitsProcessorList
        self.preferred_batch = config.parallel
        self._decoder = None
        if config.parallel > 1:  # a second context, sized for `parallel` sequences of n_ctx tokens each
            from edgedistill.teachers.llama_batch import ParallelDecoder

            self._decoder = ParallelDecoder(self.llm, config.parallel, config.n_ctx)

    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig) -> list[Completion]:
        if self._decoder is not None:
            from edgedistill.teachers.gguf_batched import generate_batched

            return generate_batched(self, self._decoder, conversations, sampling, self._common(sampling, None))
        return [self._one(c, sampling) for c in conversations]

    def _common(self, sampling: SamplingConfig, recorder) -> dict:
        """The keyword arguments of every completion call."""
        return dict(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            top_k=0,  # llama.cpp defaults to top-k 40 and min-p 0.05; keep sampling as configured
            min_p=0.0,
            seed=sampling.seed,
            stop=list(sampling.stop or []) or None,  # llama.cpp ends at the token completing one, drops it
            logits_processor=self._processors([recorder]) if recorder else None,
        )

    def _one(self, conversation: list[dict], sampling: SamplingConfig) -> Completion:
        recorder = _TopKRecorder(sampling.top_logprobs) if sampling.top_logprobs > 0 else None
        common = self._common(sampling, recorder)
        try:
            if self.has_chat_template:
                resp = self.llm.create_chat_completion(messages=conversation, **common)
                choice = resp["choices"][0]
                text = choice["message"].get("content") or ""
            else:
                resp = self.llm.create_completion(prompt=render_plain(conversation, sampling.plain_cue or ""), **common)
                choice = resp["choices"][0]
                text = choice.get("text") or ""
        except ValueError as exc:  # e.g. "Requested tokens (...) exceed context window"
            return Completion("", "error", error=str(exc))
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        # llama-cpp-python cuts at the first stop *listed* that occurs; the rule is the earliest one.
        text, _ = cut_at_stop(text, sampling.stop)
        top = None
        if recorder is not None:
            # one step per generated token, plus the step that chose the end-of-turn token
            n = resp["usage"]["completion_tokens"] + (1 if finish == "stop" else 0)
            top = [
                [{"token": self._token_text(i), "id": i, "logprob": round(lp, 6)} for i, lp in step]
                for step in recorder.steps[:n]
            ]
        return Completion(text=text, finish_reason=finish, top_logprobs=top)

    def _token_text(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def close(self) -> None:
        if getattr(self, "_decoder", None) is not None:
            self._decoder.close()
            self._decoder = None
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None

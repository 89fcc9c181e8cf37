"""The GGUF teacher's batched path: N prompts decoded together (``TeacherConfig.parallel`` > 1).

Each answer must be what the one-at-a-time path (``Llama.create_completion`` /
``create_chat_completion``) gives, so this module takes from llama-cpp-python itself everything that
path decides before it generates: :class:`_PromptCapture` runs the library's own
``create_chat_completion`` / ``create_completion`` on a stand-in for the ``Llama`` object that stops
them at their call of ``generate`` and records the prompt tokens (BOS/EOS rules, the chat handler's
template), the stop strings (the handler adds its own) and the sampler settings; a prompt too long
for the context raises the same ``ValueError`` there. :class:`_AnswerRule` then applies
``create_completion``'s per-token loop (end-of-generation tokens, incomplete UTF-8, stop strings,
the token cap) to each sequence as :class:`~edgedistill.teachers.llama_batch.ParallelDecoder` feeds it.
"""

from __future__ import annotations

import types

from edgedistill.errors import EdgeDistillError
from edgedistill.stopping import cut_at_stop
from edgedistill.tasks import render_plain
from edgedistill.teachers.base import Completion, SamplingConfig
from edgedistill.teachers.llama_batch import ParallelDecoder, Request


class _Intercept(Exception):
    """Raised by the stand-in's ``generate``: the request is fully prepared."""


class _PromptCapture:
    """Stands in for a ``Llama`` while its own completion methods prepare one request (see module doc)."""

    def __init__(self, llm):
        from llama_cpp import Llama

        self._llm = llm
        self.stop: list[str] = []
        self.tokens: list[int] = []
        self.settings: dict = {}
        # bound to the stand-in, so that the calls they make on ``self`` come back here
        self._create_completion = types.MethodType(Llama._create_completion, self)
        self._create_chat_completion = types.MethodType(Llama.create_chat_completion, self)
        self._create_completion_public = types.MethodType(Llama.create_completion, self)

    def __getattr__(self, name):  # everything else (tokenizer, metadata, context size) is the real one's
        return getattr(self._llm, name)

    def create_completion(self, **kwargs):  # also what a chat handler calls, with its prompt tokens and stops
        stop = kwargs.get("stop") or []
        self.stop = [stop] if isinstance(stop, str) else list(stop)
        return self._create_completion_public(**kwargs)

    def generate(self, tokens, **kwargs):
        self.tokens, self.settings = list(tokens), kwargs
        raise _Intercept

    def prepare(self, conversation: list[dict], common: dict, chat: bool, plain_cue: str) -> None:
        """Run the library's path for ``conversation`` up to generation (ValueError: rejected prompt)."""
        try:
            if chat:
                self._create_chat_completion(messages=conversation, **common)
            else:
                self.create_completion(prompt=render_plain(conversation, plain_cue), **common)
        except _Intercept:
            return
        raise EdgeDistillError("llama-cpp-python generated without calling Llama.generate; the batched GGUF "
                               "teacher does not support this version", hint="use parallel: 1")


class _AnswerRule:
    """``Llama._create_completion``'s loop over sampled tokens (llama-cpp-python 0.3.36) for one sequence."""

    def __init__(self, llm, n_prompt: int, max_tokens: int, stop: list[str]):
        import llama_cpp

        self._llm, self._lib, self._vocab = llm, llama_cpp, llama_cpp.llama_model_get_vocab(llm.model)
        n_ctx = llm.n_ctx()
        self.max_tokens = max_tokens if max_tokens + n_prompt < n_ctx else n_ctx - n_prompt
        self.stop = [s.encode("utf-8") for s in stop]
        self.tokens: list[int] = []
        self.text = b""
        self.finish = "length"
        self._multibyte = 0

    def __call__(self, token: int) -> bool:
        """Take one sampled token; True when the answer is complete."""
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            self.text, self.finish = self._llm.detokenize(self.tokens), "stop"
            return True
        self.tokens.append(token)
        text = self._llm.detokenize(self.tokens)
        # As the library does: after a UTF-8 lead byte, wait for the continuation bytes before checking
        # stops and the cap (so an answer may run a token or three past max_tokens there, as it does).
        for k, char in enumerate(text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    self._multibyte = num - k
        if self._multibyte > 0:
            self._multibyte -= 1
            return False
        hits = [s for s in self.stop if s in text]
        if hits:  # the library cuts at the first stop *listed* that occurs; cut_at_stop fixes that later
            self.text, self.finish = text[: text.index(hits[0])], "stop"
            return True
        if len(self.tokens) >= self.max_tokens:
            self.text, self.finish = text, "length"
            return True
        return False


def sampler_settings(settings: dict, seed: int, last_n: int) -> dict:
    """``sampler_chain`` arguments from the keyword arguments ``create_completion`` passed to ``generate``."""
    if settings.get("mirostat_mode") or settings.get("grammar") is not None:
        raise EdgeDistillError("the batched GGUF teacher does not do mirostat or grammar sampling",
                               hint="use parallel: 1")
    names = ("top_p", "top_k", "min_p", "typical_p", "repeat_penalty", "frequency_penalty", "presence_penalty")
    return dict(temperature=settings["temp"], seed=seed, last_n=last_n, **{n: settings[n] for n in names})


def generate_batched(teacher, decoder: ParallelDecoder, conversations: list[list[dict]],
                     sampling: SamplingConfig, common: dict) -> list[Completion]:
    """Answers of ``teacher`` (a GGUFTeacher) to ``conversations``, decoded ``decoder.n_seq`` at a time.

    ``common``: the keyword arguments the one-at-a-time path passes to the library, without the
    logits processor (the top-k log-probabilities are read from the logits rows here)."""
    llm = teacher.llm
    results: list[Completion | None] = [None] * len(conversations)
    requests, rules = [], []
    for i, conversation in enumerate(conversations):
        capture = _PromptCapture(llm)
        try:
            capture.prepare(conversation, common, teacher.has_chat_template, sampling.plain_cue or "")
        except ValueError as exc:  # e.g. "Requested tokens (...) exceed context window": this prompt alone
            results[i] = Completion("", "error", error=str(exc))
            continue
        rule = _AnswerRule(llm, len(capture.tokens), sampling.max_new_tokens, capture.stop)
        settings = sampler_settings(capture.settings, sampling.seed, llm.last_n_tokens_size)
        requests.append(Request(capture.tokens, rule, settings))
        rules.append((i, rule))
    decoder.run(requests, top_k=sampling.top_logprobs)
    for (i, rule), req in zip(rules, requests):
        text, _ = cut_at_stop(rule.text.decode("utf-8", errors="ignore"), sampling.stop)
        top = None
        if sampling.top_logprobs > 0:
            # as the one-at-a-time path: every sampled token's step, including the end-of-turn one
            n = len(rule.tokens) + (1 if rule.finish == "stop" else 0)
            top = [[{"token": teacher._token_text(t), "id": t, "logprob": round(lp, 6)} for t, lp in step]
                   for step in req.steps[:n]]
        results[i] = Completion(text=text, finish_reason=rule.finish, top_logprobs=top)
    return results

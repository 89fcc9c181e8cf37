"""The GGUF teacher with ``parallel`` > 1 (several prompts in one llama.cpp batch) against the same
teacher one prompt at a time, on the tiny llama GGUF: answers, finish reasons, stop strings,
log-probabilities, sampling, a prompt too long for the context, and `generate` end to end."""

from __future__ import annotations

import pytest

from edgedistill.atomic import read_jsonl_records
from edgedistill.errors import ConfigError
from edgedistill.stopping import cut_at_stop
from edgedistill.teachers import SamplingConfig, TeacherConfig, load_teacher

pytest.importorskip("llama_cpp")

# different lengths (1 to ~40 tokens), more prompts than slots: finished slots are refilled
PROMPTS = ["Hi", "The quick brown fox jumps over the lazy dog, then the teacher answers the prompts.",
           "def add(a, b):", "Numbers 0 1 2 3 4 5", "a", "Summarize: The meeting covered the budget.",
           "Unicode: café naïve 東京 🙂", "Return a list of the words in the string, using sep as the delimiter."]
CONVS = [[{"role": "user", "content": p}] for p in PROMPTS]


def answers(path, parallel: int, sampling: SamplingConfig, convs=CONVS, chat: bool = True, n_ctx: int = 256):
    teacher = load_teacher(TeacherConfig(path=str(path), n_threads=2, n_ctx=n_ctx, parallel=parallel))
    assert teacher.preferred_batch == parallel
    if not chat:  # the plain-completion path, which a base model without a chat template takes
        teacher.has_chat_template = False
    try:
        return teacher.generate(convs, sampling)
    finally:
        teacher.close()


def same_answers(a, b):
    assert [(c.text, c.finish_reason, c.error) for c in a] == [(c.text, c.finish_reason, c.error) for c in b]


@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "plain"])
def test_batched_greedy_answers_equal_sequential(tiny_llama_gguf, chat):
    greedy = SamplingConfig(temperature=0, max_new_tokens=10, stop=[])
    seq = answers(tiny_llama_gguf, 1, greedy, chat=chat)
    assert sum(c.finish_reason == "length" for c in seq) >= 6, [(c.text, c.finish_reason) for c in seq]
    assert len({c.text for c in seq}) >= 6  # mostly distinct answers: a mix-up between sequences would show
    for parallel in (3, 8):
        same_answers(answers(tiny_llama_gguf, parallel, greedy, chat=chat), seq)


def test_batched_sampling_equals_sequential(tiny_llama_gguf):
    # every sequence gets its own sampler chain seeded as the one-at-a-time path seeds each prompt
    sampled = SamplingConfig(temperature=0.9, top_p=0.9, max_new_tokens=8, seed=3, stop=[])
    seq = answers(tiny_llama_gguf, 1, sampled)
    same_answers(answers(tiny_llama_gguf, 4, sampled), seq)
    greedy = answers(tiny_llama_gguf, 1, SamplingConfig(temperature=0, max_new_tokens=8, stop=[]))
    assert [c.text for c in seq] != [c.text for c in greedy]  # it did sample


def test_stop_sequences_end_each_sequence_on_its_own(tiny_llama_gguf):
    free = answers(tiny_llama_gguf, 1, SamplingConfig(temperature=0, max_new_tokens=16, stop=[]))
    stops = ["e", "a"]
    stopped_seq = answers(tiny_llama_gguf, 1, SamplingConfig(temperature=0, max_new_tokens=16, stop=stops))
    stopped = answers(tiny_llama_gguf, 3, SamplingConfig(temperature=0, max_new_tokens=16, stop=stops))
    same_answers(stopped, stopped_seq)
    for f, s in zip(free, stopped):
        cut, found = cut_at_stop(f.text, stops)
        assert s.text == cut and not any(x in s.text for x in stops)
        assert s.finish_reason == ("stop" if found else "length")
    ended = {len(s.text) for s in stopped if s.finish_reason == "stop"}
    assert len(ended) >= 2  # several sequences stopped, at different points, while the others went on
    assert any(s.finish_reason == "length" for s in stopped)


def test_batched_logprobs_match_sequential(tiny_llama_gguf):
    k = 3
    sampling = SamplingConfig(temperature=0, max_new_tokens=6, top_logprobs=k, stop=["e"])
    seq = answers(tiny_llama_gguf, 1, sampling)
    bat = answers(tiny_llama_gguf, 4, sampling)
    same_answers(bat, seq)
    for a, b in zip(seq, bat):
        assert len(a.top_logprobs) == len(b.top_logprobs) >= 1
        for sa, sb in zip(a.top_logprobs, b.top_logprobs):
            assert len(sb) == k and [t["id"] for t in sa] == [t["id"] for t in sb]
            assert [t["token"] for t in sa] == [t["token"] for t in sb]
            # Not bit-equal: a batch of several rows runs other matmul kernels than a single row does.
            # Measured here: most values equal to the 6 printed decimals, the largest difference 1.7e-4
            # (of -3.53); the ids and their order above are exact.
            assert [t["logprob"] for t in sb] == pytest.approx([t["logprob"] for t in sa], abs=1e-3)


def test_a_prompt_too_long_fails_alone(tiny_llama_gguf):
    convs = CONVS[:3] + [[{"role": "user", "content": "word " * 400}]] + CONVS[3:5]
    greedy = SamplingConfig(temperature=0, max_new_tokens=6, stop=[])
    seq = answers(tiny_llama_gguf, 1, greedy, convs=convs)
    bat = answers(tiny_llama_gguf, 3, greedy, convs=convs)
    same_answers(bat, seq)
    assert bat[3].finish_reason == "error" and "exceed context window" in bat[3].error
    assert all(c.finish_reason == "length" and c.text for i, c in enumerate(bat) if i != 3)


def test_parallel_setting_is_validated():
    with pytest.raises(ConfigError, match="'parallel'"):
        TeacherConfig(path="m.gguf", parallel=0)
    assert TeacherConfig(path="m.gguf").parallel == 1  # one prompt at a time unless asked


def test_generate_with_parallel_writes_the_same_file(tmp_path, tiny_llama_gguf):
    import json

    from edgedistill.generate import GenerateConfig, generate

    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    outs = {}
    for parallel in (1, 3):
        out = tmp_path / f"out{parallel}.jsonl"
        cfg = GenerateConfig(data=str(data), out=str(out), task="summarization", progress=False,
                             teacher=TeacherConfig(path=str(tiny_llama_gguf), n_ctx=256, n_threads=2, parallel=parallel),
                             sampling=SamplingConfig(temperature=0, max_new_tokens=8))
        summary = generate(cfg)
        assert summary.generated == len(PROMPTS)
        outs[parallel] = read_jsonl_records(out)
    assert [r["id"] for r in outs[3]] == [f"r{i}" for i in range(len(PROMPTS))]  # input order kept
    assert [(r["response"], r["finish_reason"]) for r in outs[3]] == [(r["response"], r["finish_reason"]) for r in outs[1]]

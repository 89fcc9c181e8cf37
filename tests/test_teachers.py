"""Teachers: settings, the HF teacher on a tiny model, the OpenAI transport against a local fake
server (success, 429 + Retry-After, 5xx, time-out, refused port, bad key, per-record rejection),
and the GGUF teacher on the real Gemma file (slow)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from edgedistill.errors import ConfigError, EdgeDistillError
from edgedistill.teachers import TEACHERS, SamplingConfig, TeacherConfig, load_teacher, teacher_id
from edgedistill.testing.fake_openai import FakeOpenAIServer

HI = [{"role": "user", "content": "Hi there"}]


# --- settings ---------------------------------------------------------------------------------------


def test_registry_has_all_kinds():
    assert TEACHERS.names() == ["gguf", "hf", "openai"]


def test_kind_is_inferred(tmp_path):
    assert TeacherConfig(path="m").kind == "hf"
    assert TeacherConfig(path="m.GGUF").kind == "gguf"
    assert TeacherConfig(url="http://h/v1", model="x").kind == "openai"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "give a model path"),
        ({"url": "http://h/v1"}, "'model'"),
        ({"url": "ftp://h", "model": "m"}, "not an http"),
        ({"path": "m", "concurrency": 0}, "'concurrency'"),
        ({"path": "m", "kind": "vllm"}, "'kind'"),
    ],
)
def test_teacher_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TeacherConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens"),
     ({"top_logprobs": 50}, "top_logprobs")],
)
def test_sampling_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SamplingConfig(**kwargs)


def test_sampling_defaults():
    s = SamplingConfig()
    assert (s.temperature, s.top_p, s.max_new_tokens, s.seed, s.top_logprobs) == (0.7, 0.95, 256, 0, 0)


def test_teacher_id_errors(tmp_path):
    with pytest.raises(EdgeDistillError, match="does not exist"):
        teacher_id(TeacherConfig(path=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeDistillError, match="no config.json"):
        teacher_id(TeacherConfig(path=str(tmp_path / "empty")))


# --- HF teacher ------------------------------------------------------------------------------------


def test_hf_teacher_batched_greedy(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama), batch_size=4))
    assert teacher.id.startswith("hf:") and teacher.id == teacher_id(TeacherConfig(path=str(tiny_llama)))
    convs = [HI, [{"role": "user", "content": "A much longer prompt so that padding is needed here."}]]
    greedy = SamplingConfig(temperature=0, max_new_tokens=6, top_logprobs=3)
    batch = teacher.generate(convs, greedy)
    assert len(batch) == 2
    for c in batch:
        assert c.finish_reason in ("stop", "length")
        assert c.top_logprobs and all(len(step) == 3 for step in c.top_logprobs)
        step = c.top_logprobs[0]
        assert [e["logprob"] for e in step] == sorted((e["logprob"] for e in step), reverse=True)
        assert all(e["logprob"] <= 0 and isinstance(e["token"], str) for e in step)
        if c.finish_reason == "length":
            assert len(c.top_logprobs) == 6
    # left padding: answering alone gives the same greedy text as in the batch
    [alone] = teacher.generate([convs[1]], greedy)
    assert alone.text == batch[1].text


def test_hf_teacher_sampling_and_length(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama)))
    [c] = teacher.generate([HI], SamplingConfig(temperature=1.0, max_new_tokens=3, seed=1))
    assert c.top_logprobs is None
    assert c.finish_reason in ("stop", "length")


def test_hf_teacher_prompt_too_long_is_a_per_record_error(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama)))
    long = [{"role": "user", "content": "word " * 600}]
    out = teacher.generate([HI, long], SamplingConfig(temperature=0, max_new_tokens=2))
    assert out[1].finish_reason == "error" and "positions" in out[1].error
    assert out[0].finish_reason in ("stop", "length")


def test_render_plain_without_chat_template(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama)))
    teacher.tok.chat_template = None
    assert teacher.render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]) == "S\n\nU\n\n"
    assert teacher.render([{"role": "user", "content": "U"}], "Summary: It") == "U\n\nSummary: It"


def test_a_chat_template_never_sees_the_plain_cue(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama)))
    assert teacher.tok.chat_template
    conv = [{"role": "user", "content": "U"}]
    assert teacher.render(conv, "Summary: It") == teacher.render(conv) and "Summary" not in teacher.render(conv)


# --- OpenAI-compatible transport -------------------------------------------------------------------


def openai_teacher(url, **kw):
    sleeps = []
    kw.setdefault("max_retries", 3)
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("backoff_s", 0.01)
    cfg = TeacherConfig(url=url, model="fake-model", **kw)
    from edgedistill.teachers.openai import OpenAITeacher

    return OpenAITeacher(cfg, sleep=lambda s: sleeps.append(s)), sleeps


def test_openai_success_concurrency_and_logprobs(monkeypatch):
    monkeypatch.setenv("EDGE_TEST_KEY", "sk-secret-123")
    with FakeOpenAIServer() as server:
        teacher, _ = openai_teacher(server.url, concurrency=3, api_key_env="EDGE_TEST_KEY")
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
        out = teacher.generate(convs, SamplingConfig(top_logprobs=2, max_new_tokens=9, seed=3))
        teacher.close()
    assert [c.text for c in out] == [f"echo: q{i}" for i in range(5)]  # order kept despite the pool
    assert out[0].top_logprobs[0] == [{"token": "echo:", "logprob": -0.1}, {"token": "alt0", "logprob": -2.0}]
    body = server.requests[0]
    assert (body["model"], body["max_tokens"], body["seed"], body["temperature"]) == ("fake-model", 9, 3, 0.7)
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert teacher.id == f"openai:fake-model@{server.url}"


def test_openai_429_honours_retry_after_then_succeeds():
    with FakeOpenAIServer() as server:
        server.script = [("status", 429, {"Retry-After": "0.5"}), ("status", 503), ("ok",)]
        teacher, sleeps = openai_teacher(server.url)
        [c] = teacher.generate([HI], SamplingConfig())
    assert c.text == "echo: Hi there" and c.finish_reason == "stop"
    assert sleeps == [0.5, 0.02]  # Retry-After, then the exponential back-off (0.01 * 2**1)
    assert len(server.requests) == 3


def test_openai_backoff_is_exponential_and_capped():
    with FakeOpenAIServer() as server:
        server.script = [("status", 500)] * 4
        teacher, sleeps = openai_teacher(server.url, max_retries=3, backoff_s=1.0, max_backoff_s=3.0)
        with pytest.raises(EdgeDistillError, match=r"HTTP 500.*gave up after 4 attempt"):
            teacher.generate([HI], SamplingConfig())
    assert sleeps == [1.0, 2.0, 3.0]


def test_openai_timeout_past_retries():
    with FakeOpenAIServer() as server:
        server.script = [("hang", 1.5), ("hang", 1.5)]
        teacher, sleeps = openai_teacher(server.url, timeout_s=0.3, max_retries=1)
        with pytest.raises(EdgeDistillError, match=r"no reply within 0.3 s; gave up after 2 attempt"):
            teacher.generate([HI], SamplingConfig())
    assert len(sleeps) == 1


def test_openai_timeout_then_recovers():
    with FakeOpenAIServer() as server:
        server.script = [("hang", 1.0)]
        teacher, _ = openai_teacher(server.url, timeout_s=0.3)
        [c] = teacher.generate([HI], SamplingConfig())
    assert c.text == "echo: Hi there"


def test_openai_refused_connection():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    teacher, sleeps = openai_teacher(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(EdgeDistillError, match=r"connection failed.*gave up after 3 attempt"):
        teacher.generate([HI], SamplingConfig())
    assert len(sleeps) == 2


def test_openai_bad_key_stops_and_never_shows_it(monkeypatch):
    monkeypatch.setenv("EDGE_TEST_KEY", "sk-very-secret")
    with FakeOpenAIServer() as server:
        server.script = [("status", 401)]
        teacher, sleeps = openai_teacher(server.url, api_key_env="EDGE_TEST_KEY")
        with pytest.raises(EdgeDistillError) as info:
            teacher.generate([HI], SamplingConfig())
    assert "HTTP 401" in str(info.value) and "EDGE_TEST_KEY" in str(info.value)
    assert "sk-very-secret" not in str(info.value)
    assert sleeps == []


def test_openai_wrong_path_is_fatal():
    with FakeOpenAIServer() as server:
        teacher, _ = openai_teacher(server.url.replace("/v1", "/v2"))
        with pytest.raises(EdgeDistillError, match="HTTP 404"):
            teacher.generate([HI], SamplingConfig())


def test_openai_400_is_a_per_record_error():
    with FakeOpenAIServer() as server:
        server.script = [("status", 400)]
        teacher, _ = openai_teacher(server.url, concurrency=1)
        out = teacher.generate([HI, HI], SamplingConfig())
    assert out[0].finish_reason == "error" and "HTTP 400" in out[0].error
    assert out[1].text == "echo: Hi there"


def test_openai_length_finish_reason():
    with FakeOpenAIServer(reply=lambda body: ("cut", "length")) as server:
        teacher, _ = openai_teacher(server.url)
        [c] = teacher.generate([HI], SamplingConfig())
    assert c.finish_reason == "length" and c.top_logprobs is None


def test_parse_retry_after():
    from edgedistill.teachers.openai import parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0 + 1e-9  # a past date: no wait


# --- GGUF teacher (real model) ---------------------------------------------------------------------


GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def check_gguf_answers(out, greedy_text_equals_top1: bool):
    assert len(out) == 2
    for c in out:
        assert c.finish_reason in ("stop", "length")
        assert c.text.strip()
        assert c.top_logprobs and all(len(step) == 2 for step in c.top_logprobs)
        for step in c.top_logprobs:
            assert step[0]["logprob"] >= step[1]["logprob"] and step[0]["logprob"] <= 0
        if greedy_text_equals_top1 and c.finish_reason == "length":
            # greedy: the most likely token of every step is the token that was generated
            assert "".join(step[0]["token"] for step in c.top_logprobs) == c.text


@pytest.mark.slow
def test_gguf_teacher_on_gemma_plain_completion(gemma_gguf):
    teacher = load_teacher(TeacherConfig(path=str(gemma_gguf), n_threads=2, n_ctx=512))
    assert teacher.id.startswith("gguf:gemma-3-270m-q4_k_m.gguf@")
    assert not teacher.has_chat_template  # the base model file has none: plain completion
    convs = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "user", "content": "Name a colour."}]]
    out = teacher.generate(convs, SamplingConfig(temperature=0, max_new_tokens=12, top_logprobs=2))
    teacher.close()
    check_gguf_answers(out, greedy_text_equals_top1=True)
    assert "paris" in out[0].text.lower()


@pytest.mark.slow
def test_gguf_teacher_uses_the_files_chat_template(gemma_gguf, tmp_path):
    chat_gguf = tmp_path / "gemma-chat.gguf"
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--chat-template", GEMMA_CHAT_TEMPLATE,
         str(gemma_gguf), str(chat_gguf), "--force"],
        check=True, capture_output=True,
    )
    teacher = load_teacher(TeacherConfig(path=str(chat_gguf), n_threads=2, n_ctx=512))
    assert teacher.has_chat_template
    convs = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]]
    out = teacher.generate(convs, SamplingConfig(temperature=0.7, max_new_tokens=8, top_logprobs=2, seed=1))
    teacher.close()
    check_gguf_answers(out, greedy_text_equals_top1=False)


def test_openai_teacher_id_drops_credentials_in_url():
    cfg = TeacherConfig(url="https://user:pw@api.example.com/v1/", model="big")
    assert teacher_id(cfg) == "openai:big@https://api.example.com/v1"


def test_openai_error_body_echoing_the_key_is_scrubbed(monkeypatch):
    monkeypatch.setenv("EDGE_TEST_KEY", "sk-echoed")

    with FakeOpenAIServer() as server:
        server.script = [("status", 404)]
        teacher, _ = openai_teacher(server.url, api_key_env="EDGE_TEST_KEY")
        # make the server's error body contain the key, as a careless proxy might
        import edgedistill.teachers.openai as mod

        real = mod._error_detail
        monkeypatch.setattr(mod, "_error_detail", lambda exc: real(exc) + " Bearer sk-echoed")
        with pytest.raises(EdgeDistillError) as info:
            teacher.generate([HI], SamplingConfig())
    assert "sk-echoed" not in str(info.value) and "***" in str(info.value)

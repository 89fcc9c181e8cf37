"""Stop sequences: the rule (edgedistill/stopping.py), task defaults, settings, and every teacher kind
(HF on a tiny model, GGUF through llama.cpp on a tiny file, an OpenAI-compatible server) ending its
answers before the first stop string."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgedistill.atomic import read_jsonl_records
from edgedistill.cli import main
from edgedistill.errors import ConfigError
from edgedistill.generate import GenerateConfig
from edgedistill.stopping import cut_at_stop, stop_token_index
from edgedistill.tasks import TASKS
from edgedistill.teachers import SamplingConfig, TeacherConfig, load_teacher
from edgedistill.testing.fake_openai import FakeOpenAIServer

CONVS = [[{"role": "user", "content": "Hi there"}],
         [{"role": "user", "content": "A much longer prompt so that padding is needed here."}]]


# --- the rule ---------------------------------------------------------------------------------------


def test_cut_at_the_earliest_stop_and_drop_it():
    assert cut_at_stop("Returns x.\nMore. END", ["END", "\n"]) == ("Returns x.", True)
    assert cut_at_stop("no stop here", ["\n"]) == ("no stop here", False)
    assert cut_at_stop("a\nb", []) == ("a\nb", False)
    assert cut_at_stop("a\nb", None) == ("a\nb", False)


def test_stop_token_index_is_the_token_completing_the_stop():
    pieces = ["Ret", "urns", " x", ".\n", "More"]

    def decode(ids):
        return "".join(pieces[i] for i in ids)

    assert stop_token_index([0, 1, 2, 3, 4], decode, ["\n"]) == 3
    assert stop_token_index([0, 1, 2, 3, 4], decode, ["x."]) == 3  # completed by the token ".\n"
    assert stop_token_index([0, 1, 2], decode, ["\n"]) is None
    assert stop_token_index([0, 1, 2, 3], decode, []) is None


def test_tasks_declare_their_default_stops():
    assert TASKS.get("summarization").stop == ("\n\n",)
    assert all(TASKS.get(t).stop == () for t in ("conversation", "qa", "nli", "math"))


@pytest.mark.parametrize("stop, match", [([""], "non-empty"), (["a", "b", "c", "d", "e"], "at most 4")])
def test_bad_stop_settings_are_named(stop, match):
    with pytest.raises(ConfigError, match=match):
        SamplingConfig(stop=stop)


def test_generate_config_takes_the_task_default_unless_told():
    teacher = TeacherConfig(url="http://x/v1", model="m")
    cfg = GenerateConfig(data="d.jsonl", out="o.jsonl", teacher=teacher, task="summarization")
    assert cfg.sampling.stop == ["\n\n"]
    cfg = GenerateConfig(data="d.jsonl", out="o.jsonl", teacher=teacher, task="summarization",
                         sampling={"stop": []})
    assert cfg.sampling.stop == []
    cfg = GenerateConfig(data="d.jsonl", out="o.jsonl", teacher=teacher, task="qa", sampling={"stop": "END"})
    assert cfg.sampling.stop == ["END"]


# --- local teachers: a stop string taken from the teacher's own unstopped answer --------------------


def _stop_inside(text: str) -> str:
    """Two characters from the middle of ``text``: the teacher is sure to produce them."""
    body = text.strip()
    assert len(body) >= 6, f"answer too short to cut: {text!r}"
    mid = len(body) // 2
    return body[mid: mid + 2]


def _check_stopped(teacher, convs, max_new_tokens=24):
    free = teacher.generate(convs, SamplingConfig(temperature=0, max_new_tokens=max_new_tokens, stop=[]))
    stops = [_stop_inside(c.text) for c in free]
    for conv, full, stop in zip(convs, free, stops):
        [c] = teacher.generate([conv], SamplingConfig(temperature=0, max_new_tokens=max_new_tokens, stop=[stop]))
        assert c.finish_reason == "stop"
        assert stop not in c.text
        assert c.text == cut_at_stop(full.text, [stop])[0]
    return stops


def test_hf_teacher_stops_each_row_of_a_batch(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama), batch_size=4))
    stops = _check_stopped(teacher, CONVS)
    # in one padded batch, each row ends at its own stop; the other row is not cut by it
    free = teacher.generate(CONVS, SamplingConfig(temperature=0, max_new_tokens=24, stop=[]))
    both = teacher.generate(CONVS, SamplingConfig(temperature=0, max_new_tokens=24, stop=[stops[0]]))
    assert [c.text for c in both] == [cut_at_stop(f.text, [stops[0]])[0] for f in free]


def test_hf_teacher_logprobs_end_with_the_stop_token(tiny_llama):
    teacher = load_teacher(TeacherConfig(path=str(tiny_llama)))
    [free] = teacher.generate(CONVS[:1], SamplingConfig(temperature=0, max_new_tokens=24, stop=[], top_logprobs=2))
    stop = _stop_inside(free.text)
    [c] = teacher.generate(CONVS[:1], SamplingConfig(temperature=0, max_new_tokens=24, stop=[stop], top_logprobs=2))
    tokens = [s[0]["token"] for s in c.top_logprobs]  # greedy: the top-1 of each step was generated
    assert stop in "".join(tokens) and stop not in "".join(tokens[:-1])  # the last step completes it
    assert len(c.top_logprobs) < len(free.top_logprobs)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama_gguf):
    return tiny_llama_gguf


def test_gguf_teacher_stops(tiny_gguf):
    teacher = load_teacher(TeacherConfig(path=str(tiny_gguf), n_threads=2, n_ctx=256))
    try:
        _check_stopped(teacher, CONVS)
    finally:
        teacher.close()


# --- OpenAI-compatible servers ------------------------------------------------------------------------


def _openai(url):
    from edgedistill.teachers.openai import OpenAITeacher

    return OpenAITeacher(TeacherConfig(url=url, model="fake", max_retries=0, timeout_s=2.0))


def _long_reply(body):
    return "First sentence,\nwrapped.\n\nSecond paragraph rambles on", "length"


def test_openai_sends_stop_and_gets_the_cut_answer():
    with FakeOpenAIServer(reply=_long_reply) as server:
        [c] = _openai(server.url).generate(CONVS[:1], SamplingConfig(stop=["\n\n"]))
        assert server.requests[0]["stop"] == ["\n\n"]
    assert (c.text, c.finish_reason) == ("First sentence,\nwrapped.", "stop")


def test_openai_server_ignoring_stop_is_cut_by_the_client():
    with FakeOpenAIServer(reply=_long_reply, honour_stop=False) as server:
        [c] = _openai(server.url).generate(CONVS[:1], SamplingConfig(stop=["\n"]))
        [free] = _openai(server.url).generate(CONVS[:1], SamplingConfig(stop=[]))
        assert "stop" not in server.requests[1]
    assert (c.text, c.finish_reason) == ("First sentence,", "stop")
    assert free.finish_reason == "length" and "\n" in free.text


def test_cli_generate_stop_options_and_summary(tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"p{i}", "reference": "r"}) + "\n" for i in range(3)))
    with FakeOpenAIServer(reply=_long_reply) as server:
        base = ["generate", "--teacher-url", server.url, "--teacher-model", "fake", "--data", str(data),
                "--no-progress", "--task", "summarization"]
        res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "default.jsonl")])
        assert res.exit_code == 0, res.output
        assert "stop sequences ['\\n\\n']" in res.output and "0 truncated" in res.output
        recs = read_jsonl_records(tmp_path / "default.jsonl")
        assert [r["response"] for r in recs] == ["First sentence,\nwrapped."] * 3
        assert all(r["sampling"]["stop"] == ["\n\n"] and r["flags"] == [] for r in recs)

        res = CliRunner().invoke(main, [*base, "--no-stop", "--out", str(tmp_path / "none.jsonl")])
        assert res.exit_code == 0, res.output
        assert "3 truncated" in res.output  # cap-hit answers are still counted
        assert all("truncated" in r["flags"] for r in read_jsonl_records(tmp_path / "none.jsonl"))

        res = CliRunner().invoke(main, [*base, "--stop", "rambles", "--out", str(tmp_path / "word.jsonl")])
        assert res.exit_code == 0, res.output
        assert read_jsonl_records(tmp_path / "word.jsonl")[0]["response"] == "First sentence,\nwrapped.\n\nSecond paragraph "

        res = CliRunner().invoke(main, [*base, "--stop", "\\n", "--out", str(tmp_path / "escaped.jsonl")])
        assert read_jsonl_records(tmp_path / "escaped.jsonl")[0]["sampling"]["stop"] == ["\n"]

        res = CliRunner().invoke(main, [*base, "--stop", "x", "--no-stop", "--out", str(tmp_path / "bad.jsonl")])
        assert res.exit_code != 0 and "error: --stop and --no-stop" in res.output
        assert "Traceback" not in res.output

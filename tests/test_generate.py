"""edgedistill generate end to end: output records, closing summary, resume (torn line, kill -9),
settings-change refusal, and every bad-input case through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgedistill.atomic import read_jsonl_records
from edgedistill.cli import main
from edgedistill.errors import ConfigError
from edgedistill.generate import GenerateConfig, generate
from edgedistill.teachers import SamplingConfig, TeacherConfig
from edgedistill.testing.fake_openai import FakeOpenAIServer

REQUIRED_KEYS = {"id", "task", "messages", "prompt", "response", "finish_reason", "teacher", "sampling", "flags"}


def write_prompts(path: Path, n: int, **extra) -> Path:
    rows = [{"prompt": f"What is {i} plus {i}?", "reference": str(2 * i), **extra} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def server_config(tmp_path, url, n=6, **kw) -> GenerateConfig:
    teacher = TeacherConfig(url=url, model="fake", max_retries=kw.pop("max_retries", 1), backoff_s=0.01,
                            timeout_s=2.0, concurrency=kw.pop("concurrency", 2))
    return GenerateConfig(data=str(write_prompts(tmp_path / "p.jsonl", n)), out=str(tmp_path / "out.jsonl"),
                          teacher=teacher, progress=False, **kw)


def run_cli(args):
    result = CliRunner().invoke(main, ["generate", *args, "--no-progress"])
    return result


# --- library -----------------------------------------------------------------------------------------


def test_hf_teacher_end_to_end(tmp_path, tiny_llama):
    config = GenerateConfig(
        data=str(write_prompts(tmp_path / "p.jsonl", 5)), out=str(tmp_path / "o.jsonl"),
        teacher=TeacherConfig(path=str(tiny_llama), batch_size=2), task="math",
        sampling=SamplingConfig(max_new_tokens=5, top_logprobs=2), progress=False,
    )
    summary = generate(config)
    recs = read_jsonl_records(tmp_path / "o.jsonl")
    assert summary.generated == len(recs) == 5 and summary.already_done == 0
    for rec in recs:
        assert REQUIRED_KEYS <= set(rec)
        assert rec["task"] == "math" and rec["teacher"] == summary.teacher
        assert rec["sampling"] == {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 5, "seed": 0,
                                   "top_logprobs": 2, "stop": [], "plain_cue": ""}  # math: no default stop or cue
        assert rec["messages"][-1]["role"] == "user"  # the prompt only, never the answer
        assert rec["prompt"] in rec["messages"][-1]["content"] and rec["prompt"].startswith("What is")
        assert rec["finish_reason"] in ("stop", "length")
        assert ("truncated" in rec["flags"]) == (rec["finish_reason"] == "length")
        assert len(rec["top_logprobs"]) >= 1 and len(rec["top_logprobs"][0]) == 2
        assert "answer" in rec
    assert summary.truncated == sum("truncated" in r["flags"] for r in recs)
    assert summary.empty == sum("empty" in r["flags"] for r in recs)


def test_the_task_cue_is_recorded_in_every_line_and_can_be_overridden(tmp_path, tiny_llama):
    """A summarization run records the cue its base-model teacher answered after; distill reads it back."""
    from edgedistill.tasks import TASKS

    def run(out, **sampling):
        generate(GenerateConfig(data=str(write_prompts(tmp_path / "p.jsonl", 2)), out=str(tmp_path / out),
                                teacher=TeacherConfig(path=str(tiny_llama)), task="summarization",
                                sampling=SamplingConfig(max_new_tokens=2, **sampling), progress=False))
        return [r["sampling"]["plain_cue"] for r in read_jsonl_records(tmp_path / out)]

    assert TASKS.get("summarization").plain_cue
    assert run("a.jsonl") == [TASKS.get("summarization").plain_cue] * 2
    assert run("b.jsonl", plain_cue="") == ["", ""]


def test_summary_counts_empty_truncated_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written")
    def reply(body):
        text = body["messages"][-1]["content"]
        if "What is 1 " in text:
            return "   ", "stop"
        if "What is 2 " in text:
            return "2 + 2 is", "length"
        return "The final answer is 42", "stop"

    with FakeOpenAIServer(reply=reply) as server:
        server.script = [("status", 422)]  # the first request is rejected: a per-record error
        summary = generate(server_config(tmp_path, server.url, n=5, task="math", concurrency=1))
    recs = {r["prompt"]: r for r in read_jsonl_records(tmp_path / "out.jsonl")}
    assert recs["What is 0 plus 0?"]["flags"] == ["error", "empty"] and recs["What is 0 plus 0?"]["finish_reason"] == "error"
    assert recs["What is 1 plus 1?"]["flags"] == ["empty"]
    assert recs["What is 2 plus 2?"]["flags"] == ["truncated"] and recs["What is 2 plus 2?"]["answer"] == "2"
    assert recs["What is 3 plus 3?"]["flags"] == [] and recs["What is 3 plus 3?"]["answer"] == "42"
    assert (summary.generated, summary.empty, summary.truncated, summary.errors) == (5, 2, 1, 1)
    text = "\n".join(summary.lines())
    assert "2 empty, 1 truncated, 1 error(s)" in text and "wrote 5 record(s)" in text
    assert server.headers[-1]["Authorization"] == "Bearer sk-never-written"  # sent ...
    assert b"sk-never-written" not in (tmp_path / "out.jsonl").read_bytes()  # ... never written


def test_resume_after_torn_line_has_no_duplicates(tmp_path):
    with FakeOpenAIServer() as server:
        first = generate(server_config(tmp_path, server.url, n=8, limit=3))
        assert first.generated == 3
        out = tmp_path / "out.jsonl"
        with open(out, "ab") as fh:  # what a kill in the middle of a write could leave
            fh.write(b'{"id": "torn", "task": "conv')
        second = generate(server_config(tmp_path, server.url, n=8))
        n_requests = len(server.requests)
    assert (second.already_done, second.generated) == (3, 5)
    assert n_requests == 8  # the three finished records were not asked again
    raw = out.read_bytes()
    assert raw.endswith(b"\n") and b"torn" not in raw
    ids = [r["id"] for r in read_jsonl_records(out)]
    assert len(ids) == len(set(ids)) == 8
    from edgedistill.data import load_records

    assert set(ids) == {r["id"] for r in load_records(tmp_path / "p.jsonl")}
    third = generate(server_config(tmp_path, server.url, n=8))
    assert (third.already_done, third.generated) == (8, 0)


def test_changed_settings_are_refused_unless_overwrite(tmp_path):
    with FakeOpenAIServer() as server:
        generate(server_config(tmp_path, server.url, n=2))
        before = (tmp_path / "out.jsonl").read_bytes()
        changed = server_config(tmp_path, server.url, n=2, sampling=SamplingConfig(temperature=0.2))
        with pytest.raises(ConfigError, match=r"made with other settings.*sampling") as info:
            generate(changed)
        assert "--overwrite" in str(info.value)
        assert (tmp_path / "out.jsonl").read_bytes() == before  # nothing lost
        with pytest.raises(ConfigError, match=r"task 'conversation', this run uses 'qa'"):
            generate(server_config(tmp_path, server.url, n=2, task="qa"))
        changed.overwrite = True
        summary = generate(changed)
    recs = read_jsonl_records(tmp_path / "out.jsonl")
    assert summary.generated == 2 and len(recs) == 2
    assert all(r["sampling"]["temperature"] == 0.2 for r in recs)


def test_generate_config_from_dict():
    from edgedistill.config import from_dict

    cfg = from_dict(GenerateConfig, {"data": "p.jsonl", "out": "o.jsonl", "task": "nli",
                                     "teacher": {"path": "m.gguf", "n_threads": 2},
                                     "sampling": {"temperature": 0.0, "top_logprobs": 5}}, where="recipe.yaml")
    assert cfg.teacher.kind == "gguf" and cfg.sampling.top_logprobs == 5
    with pytest.raises(ConfigError, match=r"recipe.yaml: invalid setting 'task'.*valid: conversation"):
        from_dict(GenerateConfig, {"data": "p", "out": "o", "task": "chat", "teacher": {"path": "m"}},
                  where="recipe.yaml")


def test_out_equal_to_data_is_refused(tmp_path):
    data = write_prompts(tmp_path / "p.jsonl", 2)
    with pytest.raises(ConfigError, match="is the input file"):
        generate(GenerateConfig(data=str(data), out=str(data), teacher=TeacherConfig(url="http://x/v1", model="m")))


# --- CLI: a normal run and every bad-input case ---------------------------------------------------


def test_cli_run_prints_summary(tmp_path, tiny_llama):
    data = write_prompts(tmp_path / "p.jsonl", 3)
    out = tmp_path / "o.jsonl"
    result = run_cli(["--teacher", str(tiny_llama), "--data", str(data), "--out", str(out), "--task", "qa",
                      "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 record(s)" in result.output and "flagged:" in result.output
    assert len(read_jsonl_records(out)) == 3
    # with the progress bar (on stderr): it shows the rate
    more = write_prompts(tmp_path / "p2.jsonl", 4)
    shown = CliRunner().invoke(main, ["generate", "--teacher", str(tiny_llama), "--data", str(more), "--out",
                                      str(tmp_path / "o2.jsonl"), "--max-new-tokens", "2"])
    assert shown.exit_code == 0, shown.output
    assert "rec/s" in shown.stderr and "4/4" in shown.stderr


def assert_clean_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a friendly exit, not a crash
    assert "error:" in result.output
    for frag in fragments:
        assert frag in result.output, result.output


def test_cli_malformed_jsonl(tmp_path, tiny_llama):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n', encoding="utf-8")
    result = run_cli(["--teacher", str(tiny_llama), "--data", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert_clean_error(result, "bad.jsonl:2: malformed JSON")


def test_cli_missing_fields(tmp_path, tiny_llama):
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "why?", "answer": "because"}\n', encoding="utf-8")
    result = run_cli(["--teacher", str(tiny_llama), "--data", str(data), "--out", str(tmp_path / "o.jsonl")])
    assert_clean_error(result, "q.jsonl:1", "answer, question", "--prompt-field")
    ok = run_cli(["--teacher", str(tiny_llama), "--data", str(data), "--out", str(tmp_path / "o.jsonl"),
                  "--prompt-field", "question", "--max-new-tokens", "2"])
    assert ok.exit_code == 0, ok.output


def test_cli_empty_dataset(tmp_path, tiny_llama):
    data = tmp_path / "empty.jsonl"
    data.write_text("", encoding="utf-8")
    result = run_cli(["--teacher", str(tiny_llama), "--data", str(data), "--out", str(tmp_path / "o.jsonl")])
    assert_clean_error(result, "empty")
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_unknown_task(tmp_path, tiny_llama):
    data = write_prompts(tmp_path / "p.jsonl", 1)
    result = run_cli(["--teacher", str(tiny_llama), "--data", str(data), "--out", str(tmp_path / "o.jsonl"),
                      "--task", "chat"])
    assert_clean_error(result, "unknown task 'chat'", "conversation, math, nli, qa, summarization")


def test_cli_missing_model_path(tmp_path):
    data = write_prompts(tmp_path / "p.jsonl", 1)
    result = run_cli(["--teacher", str(tmp_path / "no-model"), "--data", str(data), "--out", str(tmp_path / "o.jsonl")])
    assert_clean_error(result, "no-model", "does not exist")


def test_cli_no_teacher(tmp_path):
    data = write_prompts(tmp_path / "p.jsonl", 1)
    result = run_cli(["--data", str(data), "--out", str(tmp_path / "o.jsonl")])
    assert_clean_error(result, "--teacher-url")


def test_cli_refused_endpoint_keeps_written_records(tmp_path):
    with FakeOpenAIServer() as server:
        config = server_config(tmp_path, server.url, n=4, limit=2)
        generate(config)
    before = (tmp_path / "out.jsonl").read_bytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # same teacher id needs the same URL; a refused URL with a fresh output file
    result = run_cli(["--teacher-url", f"http://127.0.0.1:{port}/v1", "--teacher-model", "fake", "--data",
                      config.data, "--out", str(tmp_path / "o2.jsonl"), "--max-retries", "1", "--timeout", "1"])
    assert_clean_error(result, "connection failed", "gave up after 2 attempt", "rerun the same command")
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert not (tmp_path / "o2.jsonl").exists()  # no empty output file left behind


def test_cli_server_times_out_after_partial_output(tmp_path):
    with FakeOpenAIServer() as server:
        config = server_config(tmp_path, server.url, n=4, limit=2)
        generate(config)
        server.script = [("hang", 1.5)] * 3
        result = run_cli(["--teacher-url", server.url, "--teacher-model", "fake", "--data", config.data,
                          "--out", config.out, "--max-retries", "1", "--timeout", "0.3", "--concurrency", "2"])
        assert_clean_error(result, "no reply within 0.3 s")
    ids = [r["id"] for r in read_jsonl_records(config.out)]
    assert len(ids) == len(set(ids)) >= 2  # the two earlier records are still there


def test_cli_help():
    result = CliRunner().invoke(main, ["generate", "--help"])
    assert result.exit_code == 0
    for opt in ("--teacher-url", "--api-key-env", "--logprobs", "--concurrency", "--overwrite", "Example:"):
        assert opt in result.output


# --- kill -9 in the middle --------------------------------------------------------------------------


@pytest.mark.integration
def test_kill_9_mid_run_then_resume(tmp_path):
    def slow_reply(body):
        time.sleep(0.05)
        return "answer " * 20, "stop"

    n = 120
    data = write_prompts(tmp_path / "p.jsonl", n)
    out = tmp_path / "o.jsonl"
    with FakeOpenAIServer(reply=slow_reply) as server:
        cmd = [sys.executable, "-m", "edgedistill.cli", "generate", "--teacher-url", server.url, "--teacher-model",
               "fake", "--data", str(data), "--out", str(out), "--concurrency", "1", "--no-progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 10):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        partial = read_jsonl_records(out)
        assert 10 <= len(partial) < n
        for line in out.read_bytes().split(b"\n")[:-1]:
            json.loads(line)  # every complete line is valid JSON
        resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(partial)} already there" in resumed.stdout
    ids = [r["id"] for r in read_jsonl_records(out)]
    assert len(ids) == len(set(ids)) == n

"""Issue 9: nothing a user owns is lost, nothing a file contains runs, every failure is one clear line.

Each test here failed on the code before the fix (see docs/promises.md for the promises themselves).
"""

from __future__ import annotations

import json
import os
import pickle
import stat

import pytest
from click.testing import CliRunner

from edgedistill.atomic import atomic_dir, atomic_write_text
from edgedistill.cli import main
from edgedistill.distill import DistillConfig, distill
from edgedistill.errors import DataError, EdgeDistillError

from test_distill_train import make_data


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(res, *needles, code=2):
    """One `error: ...` line (no traceback) with the given exit code and words."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output and not isinstance(res.exception, (OSError, AttributeError, TypeError))
    first = res.output.strip().splitlines()[0]
    assert first.startswith("error: "), res.output
    for n in needles:
        assert n in res.output, (n, res.output)


# --- nothing a user owns is lost -------------------------------------------------------------------


def test_distill_refuses_an_out_dir_holding_the_users_files(tmp_path, tiny_llama):
    out = tmp_path / "out2"
    out.mkdir()
    data = make_data(out / "train.jsonl")  # `--data out2/train.jsonl --out out2`, as in the issue
    (out / "notes.txt").write_text("my notes")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces edgedistill outputs only
        res = run_cli("distill", "--student", tiny_llama, "--data", data, "--out", out, "--max-steps", "1", *extra)
        assert_clean_error(res, str(out), "not an earlier edgedistill output")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "train.jsonl"]
    assert (out / "notes.txt").read_text() == "my notes"


def test_distill_reruns_replace_its_own_output_and_other_settings_need_overwrite(tmp_path, tiny_llama):
    data = make_data(tmp_path / "d.jsonl")
    out = tmp_path / "student"
    args = ["distill", "--student", tiny_llama, "--data", data, "--out", out, "--max-steps", "1"]
    assert run_cli(*args).exit_code == 0
    assert run_cli(*args).exit_code == 0  # the same run again: its own output is replaced
    res = run_cli(*args, "--lr", "1e-3")
    assert_clean_error(res, "earlier edgedistill output", "--overwrite")
    assert (out / "distill_summary.json").exists()
    assert run_cli(*args, "--lr", "1e-3", "--overwrite").exit_code == 0
    assert json.loads((out / "distill_config.json").read_text())["learning_rate"] == 1e-3


def test_atomic_dir_never_replaces_a_directory_it_did_not_write(tmp_path):
    final = tmp_path / "x"
    final.mkdir()
    (final / "mine.txt").write_text("keep")
    with pytest.raises(EdgeDistillError, match="not an earlier edgedistill output"):
        with atomic_dir(final, overwrite=True, made_by=("manifest.json",)) as tmp:
            (tmp / "manifest.json").write_text("{}")
    assert (final / "mine.txt").read_text() == "keep"
    (final / "manifest.json").write_text("{}")  # now it is one of ours: replaced with overwrite
    with atomic_dir(final, overwrite=True, made_by=("manifest.json",)) as tmp:
        (tmp / "manifest.json").write_text('{"new": 1}')
    assert sorted(p.name for p in final.iterdir()) == ["manifest.json"]


def test_import_gguf_overwrite_refuses_a_users_directory(tmp_path, tiny_llama):
    from gguf_import_helpers import write_gguf_from_hf

    gguf = write_gguf_from_hf(tiny_llama, tmp_path / "m.gguf")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    res = run_cli("import-gguf", gguf, "--out", out, "--overwrite")
    assert_clean_error(res, "not an earlier edgedistill output")
    assert (out / "thesis.tex").read_text() == "years of work"


def test_export_overwrite_refuses_a_non_artifact_directory(tmp_path, tiny_llama):
    out = tmp_path / "artifacts"
    victim = out / f"{tiny_llama.name}-gguf-f32"
    victim.mkdir(parents=True)
    (victim / "plan.md").write_text("keep")
    res = run_cli("export", tiny_llama, "--artifact", "gguf:f32", "--out", out, "--overwrite", "--no-verify")
    assert_clean_error(res, "not an earlier edgedistill output")
    assert (victim / "plan.md").read_text() == "keep"


def test_a_stale_topk_cache_dir_loses_only_the_caches_own_files(tmp_path, tiny_llama):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text('{"built": "for other data"}')
    (cache / "notes.txt").write_text("keep")
    distill(DistillConfig(student=str(tiny_llama), teacher=str(tiny_llama), data=str(make_data(tmp_path / "d.jsonl")),
                          out=str(tmp_path / "o"), loss="forward_kl", teacher_topk=4, topk_cache_dir=str(cache),
                          max_steps=1))
    assert (cache / "notes.txt").read_text() == "keep"
    assert json.loads((cache / "meta.json").read_text())["k"] == 4  # rebuilt for this data


def test_outputs_follow_the_umask(tmp_path):
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            atomic_write_text(tmp / "w.bin", "x")
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))  # safetensors itself writes 0600
        atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    for f in ("d/w.bin", "d/model.safetensors", "f.json"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o644, f


# --- nothing a file contains runs ------------------------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _stopped_run(tmp_path, student):
    data = make_data(tmp_path / "d.jsonl")
    common = dict(student=str(student), data=str(data), out=str(tmp_path / "o"), max_steps=4, save_every=1)
    first = distill(DistillConfig(stop_at_step=2, **common))
    assert not first.completed
    ckpts = sorted((tmp_path / "o.work" / "checkpoints").glob("step-*"))
    assert [c.name for c in ckpts] == ["step-0000001", "step-0000002"]
    return common, ckpts


def _state_files(ckpt):
    return [p for p in ckpt.iterdir() if p.suffix == ".pt"]


def test_resume_never_unpickles_a_checkpoint(tmp_path, tiny_llama):
    common, ckpts = _stopped_run(tmp_path, tiny_llama)
    marker = tmp_path / "pwned"
    for f in _state_files(ckpts[-1]):  # whatever the newest checkpoint's tensors file is called
        f.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    summary = distill(DistillConfig(resume=True, **common))
    assert not marker.exists(), "the pickled payload ran"
    assert summary.completed and summary.resumed_from_step == 1  # fell back to the checkpoint that loads


def test_resume_refuses_a_legacy_pickled_checkpoint(tmp_path, tiny_llama, capsys):
    common, ckpts = _stopped_run(tmp_path, tiny_llama)
    marker = tmp_path / "pwned"
    for c in ckpts:  # the layout of earlier versions: one pickled state.pt
        for f in c.iterdir():
            f.unlink()
        (c / "state.pt").write_bytes(pickle.dumps({"step": 2, "config": {}, "model": _Payload(marker)}))
    with pytest.raises(EdgeDistillError, match="no checkpoint .* loads"):
        distill(DistillConfig(resume=True, **common))
    assert not marker.exists(), "the pickled payload ran"
    assert "never loaded" in capsys.readouterr().out


def test_resume_falls_back_when_the_newest_checkpoint_is_truncated(tmp_path, tiny_llama, capsys):
    common, ckpts = _stopped_run(tmp_path, tiny_llama)
    for f in _state_files(ckpts[-1]):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])  # a full disk / kill mid-write elsewhere
    summary = distill(DistillConfig(resume=True, **common))
    assert summary.completed and summary.resumed_from_step == 1
    assert "resuming from step-0000001" in capsys.readouterr().out


# --- credentials are never printed -------------------------------------------------------------------


def test_teacher_url_credentials_are_sent_as_basic_auth_and_never_printed(tmp_path):
    from edgedistill.testing.fake_openai import FakeOpenAIServer

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    with FakeOpenAIServer() as srv:
        url = srv.url.replace("http://", "http://alice:s3cret@")
        res = run_cli("generate", "--teacher-url", url, "--teacher-model", "m", "--data", data,
                      "--out", tmp_path / "o.jsonl", "--no-progress")
        assert res.exit_code == 0, res.output
        assert srv.headers[0]["Authorization"] == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret
        dead = f"http://alice:s3cret@127.0.0.1:{srv.port + 1 if srv.port < 65535 else 1}/v1"
    res = run_cli("generate", "--teacher-url", dead, "--teacher-model", "m", "--data", data,
                  "--out", tmp_path / "o2.jsonl", "--max-retries", "0", "--no-progress")
    assert_clean_error(res)
    assert "s3cret" not in res.output
    assert "s3cret" not in (tmp_path / "o.jsonl").read_text()
    res = run_cli("generate", "--teacher-url", "ftp://alice:s3cret@h/v1", "--teacher-model", "m", "--data", data,
                  "--out", tmp_path / "o3.jsonl")
    assert_clean_error(res, "alice:***@")
    assert "s3cret" not in res.output


# --- a clear error instead of a traceback --------------------------------------------------------------


def test_generate_out_that_cannot_be_written_fails_before_the_teacher_loads(tmp_path, tiny_llama, monkeypatch):
    import edgedistill.generate as G

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    blocker = tmp_path / "afile"
    blocker.write_text("x")

    def no_load(cfg):
        raise AssertionError("the teacher was loaded before --out was checked")

    monkeypatch.setattr(G, "load_teacher", no_load)
    res = run_cli("generate", "--teacher", tiny_llama, "--data", data, "--out", blocker / "o.jsonl")
    assert_clean_error(res, "cannot be written", str(blocker))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_generate_out_in_a_read_only_directory(tmp_path, tiny_llama):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res = run_cli("generate", "--teacher", tiny_llama, "--data", data, "--out", ro / "o.jsonl")
    finally:
        ro.chmod(0o700)
    assert_clean_error(res, "cannot be written")


def test_eval_out_naming_an_existing_file(tmp_path, tiny_llama):
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi", "reference": "hello"}) + "\n")
    out = tmp_path / "report.txt"
    out.write_text("not a directory")
    res = run_cli("eval", tiny_llama, "--data", data, "--task", "qa", "--out", out)
    assert_clean_error(res, str(out), "not a directory")
    assert out.read_text() == "not a directory"


def test_import_gguf_with_a_merge_outside_the_vocabulary(tmp_path, tiny_llama, monkeypatch):
    import gguf as gguf_lib
    from gguf_import_helpers import write_gguf_from_hf
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(tiny_llama).get_vocab()
    chars = sorted(t for t in vocab if len(t) == 1)
    bad = next(f"{a} {b}" for a in chars for b in chars if a + b not in vocab)
    real = gguf_lib.GGUFWriter.add_token_merges
    monkeypatch.setattr(gguf_lib.GGUFWriter, "add_token_merges", lambda self, m: real(self, [bad, *m]))
    path = write_gguf_from_hf(tiny_llama, tmp_path / "bad.gguf")
    res = run_cli("import-gguf", path, "--out", tmp_path / "hf")
    assert_clean_error(res, str(path), "tokenizer.ggml.merges[0]", repr(bad))
    assert not (tmp_path / "hf").exists()


# --- should be right ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [["a", "b"], 42])
def test_a_prompt_that_is_not_text_is_refused_with_its_line(tmp_path, value):
    from edgedistill.data import load_records

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "ok", "prompt": "fine"}) + "\n" + json.dumps({"id": "x", "prompt": value}) + "\n")
    with pytest.raises(DataError, match=r"p\.jsonl:2: field 'prompt' is a"):
        load_records(data)


def test_chat_messages_in_the_prompt_field_are_the_chat_form(tmp_path):
    from edgedistill.data import load_records

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "c", "prompt": [{"role": "user", "content": "hi"}]}) + "\n")
    assert load_records(data)[0]["messages"] == [{"role": "user", "content": "hi"}]


def test_distill_refuses_data_whose_responses_are_all_empty(tmp_path, tiny_llama):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "response": " " * i}) + "\n" for i in range(3)))
    res = run_cli("distill", "--student", tiny_llama, "--data", data, "--out", tmp_path / "o")
    assert_clean_error(res, "no usable examples", "3 with an empty response")


def _tampered_artifact(tmp_path, tiny_llama):
    """A real GGUF export of the tiny model with one weight byte changed afterwards (same size)."""
    from edgedistill.export import ExportConfig, export

    art = export(ExportConfig(model=str(tiny_llama), artifacts=["gguf:f32"], out_dir=str(tmp_path / "a"),
                              verify=False)).artifacts[0].path
    model = art / "model.gguf"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # only the hash can tell
    model.write_bytes(bytes(data))
    return art


def test_inspect_exits_non_zero_on_a_hash_mismatch(tmp_path, tiny_llama):
    res = run_cli("inspect", _tampered_artifact(tmp_path, tiny_llama))
    assert res.exit_code == 3 and "sha256 differs" in res.output
    assert "error: " in res.output


def test_bench_and_eval_check_manifest_hashes_before_measuring(tmp_path, tiny_llama):
    art = _tampered_artifact(tmp_path, tiny_llama)
    res = run_cli("bench", art, "--out", tmp_path / "b", "--gen-len", "2", "--prompt-len", "4", "--min-reps", "1",
                  "--max-reps", "1", "--min-duration", "0", "--warmup", "0")
    assert_clean_error(res, "do not match its manifest", "--no-verify-hashes", code=3)
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi", "reference": "hello"}) + "\n")
    res = run_cli("eval", art, "--data", data, "--task", "qa")
    assert_clean_error(res, "do not match its manifest", code=3)


def test_a_failed_recipe_stage_is_recorded(tmp_path, tiny_llama, monkeypatch):
    import yaml

    from edgedistill import recipe as R

    def fail(plan, log):
        raise DataError("p.jsonl:1: a clean error")

    monkeypatch.setattr(R.STAGE_REGISTRY.get("generate"), "run", fail)
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    out = tmp_path / "run"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "out_dir": str(out), "task": "qa", "teacher": str(tiny_llama),
        "student": {"path": str(tiny_llama)}, "data": {"train": str(tmp_path / "p.jsonl")}, "stages": ["generate"],
    }))
    with pytest.raises(DataError):
        R.run_recipe(path, log=lambda s: None)
    stage = json.loads((out / "state.json").read_text())["stages"]["generate"]
    assert stage["status"] == "failed" and stage["error"] == "p.jsonl:1: a clean error"


def test_no_code_path_can_unpickle_or_run_remote_code():
    """A static guard: every torch.load is weights_only=True and no unpickling / remote-code call exists."""
    import re
    from pathlib import Path

    import edgedistill

    banned = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|trust_remote_code\s*=\s*True|allow_pickle\s*=\s*True"
                        r"|yaml\.(unsafe_)?load\(|yaml\.Loader|marshal\.loads?\(|dill\.|joblib\.load")
    found = []
    for f in Path(edgedistill.__file__).parent.rglob("*.py"):
        text = f.read_text()
        found += [f"{f.name}: {m.group(0)}" for m in banned.finditer(text)]
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                found.append(f"{f.name}: torch.load without weights_only=True")
    assert not found, found

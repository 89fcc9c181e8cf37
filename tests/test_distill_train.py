"""End-to-end distillation runs on tiny models: every loss, top-k cache, resume, vocab checks, CLI errors."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from edgedistill.atomic import read_jsonl_records
from edgedistill.cli import main
from edgedistill.distill import DistillConfig, distill
from edgedistill.distill.data import collate, load_examples, tokenize_examples
from edgedistill.distill.losses import LOSSES
from edgedistill.distill.trainer import StudentWithLoss
from edgedistill.errors import ConfigError


def make_data(path, n=10):
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({
                "id": str(i), "task": "qa", "messages": [{"role": "user", "content": f"What is {i} plus 30?"}],
                "prompt": f"What is {i} plus 30?", "response": f"The answer is {i + 30}.",
                "finish_reason": "stop", "flags": [],
            }) + "\n")
        fh.write(json.dumps({"id": "e", "prompt": "x", "response": "", "flags": ["empty"]}) + "\n")
    return path


@pytest.fixture()
def models(tiny_model_factory):
    return tiny_model_factory("llama"), tiny_model_factory("llama", hidden_size=96, num_layers=3)


@pytest.fixture()
def data(tmp_path):
    return make_data(tmp_path / "data.jsonl")


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_loss_trains_and_writes_a_student(tmp_path, models, data, loss):
    student, teacher = models
    cfg = DistillConfig(student=str(student), teacher=str(teacher), data=str(data), out=str(tmp_path / "out"),
                        loss=loss, max_steps=3, val_fraction=0.2, eval_every=2, loss_chunk_tokens=16,
                        learning_rate=1e-3, temperature=2.0)
    summary = distill(cfg)
    assert summary.completed and summary.steps == 3
    assert summary.skipped_empty == 1 and summary.train_examples == 8 and summary.val_examples == 2
    assert summary.final_eval_loss is not None and summary.tokens_per_s > 0 and summary.peak_memory_mb > 0
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json",
                 "train_log.jsonl", "distill_summary.json"):
        assert (out / name).exists(), name
    steps = [r for r in read_jsonl_records(out / "train_log.jsonl") if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["lr"] >= 0 and r["tokens_per_s"] > 0 for r in steps)
    assert "eval_loss" in steps[1] and "eval_loss" in steps[2]
    before = load_file(str(student / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not list(tmp_path.glob(".*.partial"))


def test_loss_goes_down_when_learning(tmp_path, models, data):
    student, teacher = models
    summary = distill(DistillConfig(student=str(student), teacher=str(teacher), data=str(data),
                                    out=str(tmp_path / "o"), loss="forward_kl", alpha=1.0, epochs=4,
                                    learning_rate=3e-3, warmup_ratio=0.0))
    log = [r["loss"] for r in read_jsonl_records(tmp_path / "o" / "train_log.jsonl") if "step" in r]
    assert len(log) == summary.steps == 20
    assert sum(log[-5:]) / 5 < 0.7 * sum(log[:5]) / 5


def test_only_response_positions_enter_the_loss(tmp_path, models, data, tiny_tokenizer):
    """Chunked hidden-state loss == cross-entropy from the model's own full logits on masked labels."""
    student_dir, _ = models
    ex = tokenize_examples(tiny_tokenizer, load_examples(data).examples[:3], 512).examples
    batch = collate(ex, tiny_tokenizer.pad_token_id)
    student = AutoModelForCausalLM.from_pretrained(student_dir)
    cfg = DistillConfig(student="s", data="d", out="o", loss="sft", loss_chunk_tokens=5)
    mod = StudentWithLoss(student, LOSSES.get("sft"), 384, cfg)
    out = mod(**batch)
    logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             batch["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                             reduction="sum")
    assert torch.allclose(out["loss"], want, rtol=1e-4)
    assert int(out["n"]) == sum(e.n_response for e in ex)


def test_resume_repeats_an_uninterrupted_run(tmp_path, models, data):
    student, teacher = models
    common = dict(student=str(student), teacher=str(teacher), data=str(data), loss="forward_kl", max_steps=6,
                  learning_rate=2e-3, batch_size=2, gradient_accumulation_steps=2, val_fraction=0.2)
    distill(DistillConfig(out=str(tmp_path / "straight"), **common))
    first = distill(DistillConfig(out=str(tmp_path / "resumed"), stop_at_step=3, **common))
    assert not first.completed and not (tmp_path / "resumed").exists()
    assert (tmp_path / "resumed.work" / "checkpoints" / "step-0000003" / "train_state.pt").exists()
    with pytest.raises(ConfigError, match="learning_rate differ"):
        distill(DistillConfig(out=str(tmp_path / "resumed"), resume=True, **{**common, "learning_rate": 1e-3}))
    second = distill(DistillConfig(out=str(tmp_path / "resumed"), resume=True, **common))
    assert second.completed and second.resumed_from_step == 3
    assert not (tmp_path / "resumed.work" / "checkpoints").exists()  # removed once the output is written

    def losses(name):
        return [(r["step"], r["loss"]) for r in read_jsonl_records(tmp_path / name / "train_log.jsonl")
                if "step" in r]

    a, b = losses("straight"), losses("resumed")
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3, 4, 5, 6]
    assert all(abs(x - y) < 1e-5 for (_, x), (_, y) in zip(a, b))
    wa = load_file(str(tmp_path / "straight" / "model.safetensors"))
    wb = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_topk_cache_trains_without_teacher_and_is_reused(tmp_path, models, data):
    student, teacher = models
    cache = tmp_path / "cache"
    common = dict(student=str(student), data=str(data), loss="forward_kl", teacher_topk=8, max_steps=2,
                  topk_cache_dir=str(cache))
    s1 = distill(DistillConfig(teacher=str(teacher), out=str(tmp_path / "a"), **common))
    shards = sorted(cache.glob("shard-*.safetensors"))
    assert shards and (cache / "meta.json").exists()
    stored = load_file(str(shards[0]))
    assert stored["logp"].dtype == torch.float16 and stored["index"].dtype == torch.int32
    assert stored["logp"].shape[1] == 8
    mtime = shards[0].stat().st_mtime_ns
    # second run: no teacher at all, the cache alone serves the KD targets
    s2 = distill(DistillConfig(teacher=None, out=str(tmp_path / "b"), **common))
    assert shards[0].stat().st_mtime_ns == mtime
    assert s1.final_train_loss == pytest.approx(s2.final_train_loss, rel=1e-5)


def test_padded_vocab_rows_are_handled(tmp_path, tiny_model_factory, data):
    student = tiny_model_factory("llama")  # 384 rows
    # same tokenizer, 64 padded rows (not qwen2: transformers 5 gives that type Qwen2's own pre-tokenizer)
    teacher = tiny_model_factory("qwen3", hidden_size=96, vocab_size=448)
    s = distill(DistillConfig(student=str(student), teacher=str(teacher), data=str(data), out=str(tmp_path / "o"),
                              loss="reverse_kl", max_steps=2))
    start = read_jsonl_records(tmp_path / "o" / "train_log.jsonl")[0]
    assert start["n_vocab"] == 384 and s.completed


def test_vocab_mismatch_names_both_tokenizers_before_training(tmp_path, tiny_model_factory, data):
    from edgedistill.testing.tiny import build_tiny_model, build_tokenizer

    other = build_tiny_model("llama", tmp_path / "other", tokenizer=build_tokenizer(vocab_size=320))
    student = tiny_model_factory("llama")
    with pytest.raises(ConfigError) as exc:
        distill(DistillConfig(student=str(student), teacher=str(other), data=str(data), out=str(tmp_path / "o"),
                              loss="forward_kl", max_steps=1))
    assert str(student) in exc.value.message and str(other) in exc.value.message
    assert "--loss sft" in exc.value.hint
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.work" / "train_log.jsonl").exists()


def test_init_from_teacher_and_lora_via_cli(tmp_path, tiny_model_factory, data):
    teacher = tiny_model_factory("llama", hidden_size=96, num_layers=3)
    result = CliRunner().invoke(main, [
        "distill", "--teacher", str(teacher), "--init-from-teacher", "--keep-layers", "0,2", "--data", str(data),
        "--out", str(tmp_path / "o"), "--loss", "jsd", "--max-steps", "2", "--lora-r", "4",
    ])
    assert result.exit_code == 0, result.output
    assert "student written to" in result.output and "peak memory" in result.output
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "o")
    assert model.config.num_hidden_layers == 2
    keys = load_file(str(tmp_path / "o" / "model.safetensors")).keys()
    assert not any("lora" in k for k in keys)  # merged


@pytest.mark.parametrize("case", ["missing_student", "empty_dataset", "unknown_loss", "vocab_mismatch"])
def test_cli_bad_input_is_a_clear_error(tmp_path, tiny_model_factory, data, case):
    from edgedistill.testing.tiny import build_tiny_model, build_tokenizer

    student = str(tiny_model_factory("llama"))
    args = ["distill", "--student", student, "--data", str(data), "--out", str(tmp_path / "o")]
    expect = ""
    if case == "missing_student":
        args[2] = str(tmp_path / "nope")
        expect = "does not exist"
    elif case == "empty_dataset":
        empty = tmp_path / "empty.jsonl"
        empty.write_text(json.dumps({"prompt": "a", "response": "", "flags": ["empty"]}) + "\n")
        args[4] = str(empty)
        expect = "no usable examples"
    elif case == "unknown_loss":
        args += ["--loss", "kl"]
        expect = "valid: forward_kl, jsd, reverse_kl, sft"
    else:
        other = build_tiny_model("llama", tmp_path / "other", tokenizer=build_tokenizer(vocab_size=320))
        args += ["--loss", "forward_kl", "--teacher", str(other)]
        expect = "different vocabularies"
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and expect in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


BF16_TOPK = (None, 8)


@pytest.fixture(scope="module")
def bf16_runs(tmp_path_factory, tiny_model_factory):
    """Both bf16 CLI runs (teacher in memory; top-k cache) in ONE subprocess: accelerate fixes the precision
    once per process (this one runs fp32), and one interpreter start (torch, transformers, accelerate:
    about 4 CPU-s) serves both. -> (the subprocess, {topk: its output directory})."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("bf16")
    data = make_data(tmp / "data.jsonl")
    student, teacher = tiny_model_factory("llama"), tiny_model_factory("llama", hidden_size=96, num_layers=3)
    outs, runs = {topk: tmp / f"o-{topk}" for topk in BF16_TOPK}, []
    for topk, out in outs.items():
        runs.append(["distill", "--student", str(student), "--teacher", str(teacher), "--data", str(data),
                     "--out", str(out), "--loss", "forward_kl", "--alpha", "1.0", "--epochs", "3", "--lr", "3e-3",
                     "--warmup-ratio", "0", "--mixed-precision", "bf16"] + (["--teacher-topk", str(topk)] if topk else []))
    code = f"from edgedistill.cli import main\nfor args in {runs!r}:\n    main(args, standalone_mode=False)\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600), outs


@pytest.mark.parametrize("topk", BF16_TOPK)
def test_bf16_autocast_path_runs_on_cpu(bf16_runs, topk):
    """The CUDA default (bf16 autocast) exercised on the CPU: the same code path through accelerate's
    autocast, teacher hidden states in bf16, losses in fp32; the saved student stays fp32 and learns."""
    proc, outs = bf16_runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = outs[topk]
    start = next(r for r in read_jsonl_records(out / "train_log.jsonl") if r.get("event") == "start")
    assert start["config"]["mixed_precision"] == "bf16"
    assert start["config"]["teacher_topk"] == topk
    log = [r["loss"] for r in read_jsonl_records(out / "train_log.jsonl") if "step" in r]
    assert all(torch.isfinite(torch.tensor(log))) and sum(log[-3:]) / 3 < sum(log[:3]) / 3
    saved = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}


def test_a_second_precision_in_one_process_is_a_clear_error(tmp_path, models, data):
    student, teacher = models
    distill(DistillConfig(student=str(student), data=str(data), out=str(tmp_path / "a"), loss="sft", max_steps=1))
    with pytest.raises(ConfigError, match="mixed_precision='bf16' differs from an earlier distillation"):
        distill(DistillConfig(student=str(student), data=str(data), out=str(tmp_path / "b"), loss="sft",
                              max_steps=1, mixed_precision="bf16"))
    assert not (tmp_path / "b" / "model.safetensors").exists()

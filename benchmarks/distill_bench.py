"""Distillation throughput and peak memory: edgedistill's losses beside TRL's GKD trainer.

Part 1 (same models, same data, same run): a ~50M-parameter student and a ~3x larger teacher
(Llama-shaped, 32k vocabulary), off-policy distillation:

    edgedistill sft                      cross-entropy on the teacher's text (no teacher in memory)
    edgedistill forward_kl               teacher in memory, chunked LM head + loss over response tokens
    edgedistill forward_kl --teacher-topk 64   student only; the top-k cache is built beforehand
    TRL GKDTrainer (lmbda=0, beta=0)     off-policy; beta=0 is forward KL(teacher || student) in TRL's
                                         generalized_jsd_loss

Part 2: a 262,144-token vocabulary (Gemma 3 size): forward_kl with the teacher in memory vs the same
student trained from a top-k cache (built in its own process first).

Every configuration runs in its own subprocess so its peak RSS (VmHWM) is its own. Tokens/s counts all
non-padding input tokens (prompt + response) of the measured steps (after warm-up steps).

    .venv/bin/python benchmarks/distill_bench.py            # writes benchmarks/results/distill_bench.{json,md}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WARMUP, MEASURED = 1, 3


# --- fixtures -----------------------------------------------------------------------------------------


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly ``vocab_size`` tokens (w0, w1, ...), chat template included,
    so the models' vocabularies are real tokens end to end."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from edgedistill.testing.tiny import SPECIAL_TOKENS

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for i in range(vocab_size - len(vocab)):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return _with_chat_template(tok)


def _with_chat_template(tok):
    """The transformers tokenizer of a ``tokenizers.Tokenizer``: the tiny models' special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    from edgedistill.testing.tiny import CHAT_TEMPLATE

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", pad_token="<pad>",
                                   unk_token="<unk>",
                                   additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "</s>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def letter_words(vocab_size: int) -> list[str]:
    """Two-letter words that :func:`bpe_word_tokenizer` makes single tokens, as many as ``vocab_size`` holds."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    room = (vocab_size - 8 - 256 - len(letters)) // 2  # specials, bytes, "Ġa".."Ġz"; each word with and without Ġ
    return [a + b for a in letters for b in letters][:room]


def bpe_word_tokenizer(vocab_size: int):
    """A byte-level BPE in which every :func:`letter_words` word is one token (with or without its leading
    space), chat template included. transformers 5 loads a qwen2 directory's tokenizer as ``Qwen2Tokenizer``
    whatever it was saved as, rebuilding a BPE from tokenizer.json's vocab and merges: a WordLevel
    vocabulary loses every word there, so qwen2 pairs need words that merges produce."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from edgedistill.testing.tiny import SPECIAL_TOKENS

    words = letter_words(vocab_size)
    tokens = [*SPECIAL_TOKENS, *sorted(pre_tokenizers.ByteLevel.alphabet()),
              *(f"Ġ{c}" for c in sorted({w[0] for w in words})), *(f"Ġ{w}" for w in words), *words]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    # rank order matters: "Ġ"+first letter, then that + second letter, then bare pairs
    merges = ([("Ġ", c) for c in sorted({w[0] for w in words})] + [(f"Ġ{w[0]}", w[1]) for w in words]
              + [(w[0], w[1]) for w in words])
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return _with_chat_template(tok)


def build_fixtures(root: Path, vocab: int, student_shape: dict, teacher_shape: dict, arch: str, n_examples: int,
                   prompt_words: int, response_words: int) -> dict:
    from edgedistill.testing.tiny import build_tiny_model

    root.mkdir(parents=True, exist_ok=True)
    tok = word_tokenizer(vocab)
    paths = {"student": root / "student", "teacher": root / "teacher", "data": root / "data.jsonl"}
    if not (paths["student"] / "config.json").exists():
        build_tiny_model(arch, paths["student"], tokenizer=tok, vocab_size=vocab, **student_shape)
        build_tiny_model(arch, paths["teacher"], tokenizer=tok, vocab_size=vocab, **teacher_shape, seed=1)
    write_word_data(paths["data"], vocab, n_examples, prompt_words, response_words)
    return {k: str(v) for k, v in paths.items()}


def write_word_data(path: Path, vocab: int, n_examples: int, prompt_words: int, response_words: int,
                    words: list[str] | None = None) -> None:
    """Random prompts and responses of ``word_tokenizer`` words (or ``words``): one token per word, so
    lengths are exact."""
    rng = random.Random(0)
    words = words or [f"w{i}" for i in range(vocab - 8)]
    with open(path, "w") as fh:
        for i in range(n_examples):
            prompt = " ".join(rng.choice(words) for _ in range(prompt_words))
            response = " ".join(rng.choice(words) for _ in range(response_words))
            fh.write(json.dumps({"id": str(i), "messages": [{"role": "user", "content": prompt}], "prompt": prompt,
                                 "response": response, "flags": []}) + "\n")


def n_params(path: str) -> int:
    import math

    from safetensors import safe_open

    with safe_open(str(Path(path) / "model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def cuda_peak_mb() -> float | None:
    """torch.cuda.max_memory_allocated in MiB where CUDA is in use (None on a CPU run)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- one configuration per subprocess ------------------------------------------------------------------


def run_edgedistill(spec: dict) -> dict:
    from edgedistill.atomic import read_jsonl_records
    from edgedistill.distill import DistillConfig, distill

    cfg = DistillConfig(**spec["config"])
    summary = distill(cfg)
    steps = [r for r in read_jsonl_records(Path(cfg.out) / "train_log.jsonl") if "step" in r]
    measured = [r for r in steps if r["step"] > spec.get("warmup", WARMUP)]
    tokens = sum(r["tokens"] for r in measured)
    seconds = sum(r["tokens"] / r["tokens_per_s"] for r in measured)
    return {"tokens_per_s": tokens / seconds, "measured_steps": len(measured), "peak_rss_mb": vmhwm_mb(),
            "peak_cuda_mb": cuda_peak_mb(), "final_loss": summary.final_train_loss}


def build_cache(spec: dict) -> dict:
    """The top-k first pass on its own (teacher in memory), so the training run's RSS excludes it."""
    import torch
    from transformers import AutoModelForCausalLM

    from edgedistill.distill.data import data_fingerprint, load_examples, tokenize_examples
    from edgedistill.distill.topk_cache import build_topk_cache
    from edgedistill.models import load_tokenizer

    c = spec["config"]
    tok = load_tokenizer(c["student"])
    ex = tokenize_examples(tok, load_examples(c["data"]).examples, c.get("max_length", 1024)).examples
    device = "cuda" if torch.cuda.is_available() and not c.get("cpu") else "cpu"
    teacher = AutoModelForCausalLM.from_pretrained(c["teacher"], dtype=torch.float32).to(device).eval()
    t0 = time.perf_counter()
    build_topk_cache(teacher, ex, c["topk_cache_dir"], c["teacher_topk"], c.get("temperature", 1.0), len(tok),
                     {"teacher": str(Path(c["teacher"])), "data": data_fingerprint(ex)}, tok.pad_token_id,
                     batch_size=max(c.get("batch_size", 4), 4), chunk=c.get("loss_chunk_tokens", 256),
                     progress=False, device=device,
                     autocast_dtype=torch.bfloat16 if c.get("mixed_precision") == "bf16" else None)
    dt = time.perf_counter() - t0
    n_tok = sum(len(e.input_ids) for e in ex)
    return {"tokens_per_s": n_tok / dt, "peak_rss_mb": vmhwm_mb(), "peak_cuda_mb": cuda_peak_mb(), "seconds": dt}


def run_trl_gkd(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer
    from trl.experimental.utils import DataCollatorForChatML

    from edgedistill.models import load_tokenizer

    c = spec["config"]
    tok = load_tokenizer(c["student"])
    rows = [json.loads(line) for line in open(c["data"])]
    ds = Dataset.from_list([{"messages": r["messages"] + [{"role": "assistant", "content": r["response"]}]}
                            for r in rows])
    student = AutoModelForCausalLM.from_pretrained(c["student"], dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(c["teacher"], dtype=torch.float32)
    base_collator = DataCollatorForChatML(tokenizer=tok, max_length=c.get("max_length", 1024))
    counts: list[int] = []

    def collator(examples):
        batch = base_collator(examples)
        counts.append(int(batch["attention_mask"].sum()))
        return batch

    times: list[float] = []

    sync = torch.cuda.synchronize if torch.cuda.is_available() and not c.get("cpu") else (lambda: None)

    class Timer(TrainerCallback):  # CUDA runs asynchronously: a step ends when its kernels have
        def on_step_begin(self, args, state, control, **kw):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            times.append(time.perf_counter() - self.t0)

    # transformers 5 dropped warmup_ratio: a float warmup_steps below 1 is the ratio there
    ratio = ({"warmup_ratio": 0.03} if "warmup_ratio" in {f.name for f in dataclasses.fields(GKDConfig)}
             else {"warmup_steps": 0.03})
    args = GKDConfig(output_dir=str(Path(c["out"])), per_device_train_batch_size=c["batch_size"],
                     learning_rate=c["learning_rate"], max_steps=c["max_steps"], lmbda=0.0, beta=0.0,
                     temperature=1.0, use_cpu=c.get("cpu", True), report_to=[], logging_steps=1,
                     save_strategy="no", max_length=c.get("max_length", 1024),
                     bf16=c.get("mixed_precision") == "bf16", fp16=False, lr_scheduler_type="cosine",
                     dataloader_num_workers=0, seed=0, **ratio)
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=ds, processing_class=tok,
                         data_collator=collator, callbacks=[Timer()])
    trainer.train()
    # the dataloader may prefetch a batch: step i used counts[i]
    warmup = spec.get("warmup", WARMUP)
    measured_t = times[warmup:]
    measured_tok = counts[warmup:warmup + len(measured_t)]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens_per_s": sum(measured_tok) / sum(measured_t), "measured_steps": len(measured_t),
            "peak_rss_mb": vmhwm_mb(), "peak_cuda_mb": cuda_peak_mb(), "final_loss": losses[-1] if losses else None}


RUNNERS = {"edgedistill": run_edgedistill, "topk_cache": build_cache, "trl_gkd": run_trl_gkd}


def child(spec_file: str) -> None:
    import torch

    spec = json.loads(Path(spec_file).read_text())
    torch.manual_seed(0)
    result = RUNNERS[spec["runner"]](spec)
    print("RESULT " + json.dumps(result), flush=True)


def in_subprocess(name: str, spec: dict, work: Path, timeout: int = 900) -> dict:
    spec_file = work / f"{name}.spec.json"
    spec_file.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(spec_file)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    wall = time.perf_counter() - t0
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"  {name}: FAILED\n{proc.stderr[-2000:]}")
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc={proc.returncode}",
                "wall_s": wall}
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = wall
    print(f"  {name}: {result}")
    return result


# --- the two parts ---------------------------------------------------------------------------------------


def part1(work: Path, steps: int) -> dict:
    fx = build_fixtures(work / "p1", vocab=32768, arch="llama",
                        student_shape=dict(hidden_size=512, num_layers=8, num_heads=8),
                        teacher_shape=dict(hidden_size=768, num_layers=18, num_heads=12),
                        n_examples=2 * steps, prompt_words=16, response_words=48)
    common = dict(student=fx["student"], data=fx["data"], batch_size=2, max_steps=steps, learning_rate=2e-5,
                  alpha=1.0, max_length=256, seed=0)
    cache = str(work / "p1" / "topk-cache")
    shutil.rmtree(cache, ignore_errors=True)  # the first pass must really build it
    runs = {
        "edgedistill sft": {"runner": "edgedistill", "config": {**common, "loss": "sft", "out": str(work / "p1/o-sft")}},
        "edgedistill forward_kl (teacher in memory)": {
            "runner": "edgedistill",
            "config": {**common, "loss": "forward_kl", "teacher": fx["teacher"], "out": str(work / "p1/o-fkl")}},
        "top-k cache first pass (k=64, teacher only)": {
            "runner": "topk_cache",
            "config": {**common, "loss": "forward_kl", "teacher": fx["teacher"], "teacher_topk": 64,
                       "topk_cache_dir": cache}},
        "edgedistill forward_kl --teacher-topk 64": {
            "runner": "edgedistill",
            "config": {**common, "loss": "forward_kl", "teacher_topk": 64, "topk_cache_dir": cache,
                       "out": str(work / "p1/o-topk")}},
        "TRL GKDTrainer (lmbda=0, beta=0: forward KL)": {
            "runner": "trl_gkd",
            "config": {**common, "teacher": fx["teacher"], "out": str(work / "p1/o-trl")}},
    }
    results = {name: in_subprocess(name.split(" (")[0].replace(" ", "_").replace("/", ""), spec, work)
               for name, spec in runs.items()}
    return {"student_params": n_params(fx["student"]), "teacher_params": n_params(fx["teacher"]), "vocab": 32768,
            "steps": steps, "results": results}


def part2(work: Path, steps: int) -> dict:
    vocab = 262144
    fx = build_fixtures(work / "p2", vocab=vocab, arch="gemma3",
                        student_shape=dict(hidden_size=128, num_layers=2, num_heads=2),
                        teacher_shape=dict(hidden_size=1536, num_layers=4, num_heads=12),
                        n_examples=2 * steps, prompt_words=16, response_words=32)
    common = dict(student=fx["student"], data=fx["data"], batch_size=2, max_steps=steps, learning_rate=2e-5,
                  alpha=1.0, max_length=128, loss="forward_kl", seed=0, loss_chunk_tokens=64)
    cache = str(work / "p2" / "topk-cache")
    shutil.rmtree(cache, ignore_errors=True)  # the first pass must really build it
    runs = {
        "forward_kl, teacher in memory": {"runner": "edgedistill",
                                          "config": {**common, "teacher": fx["teacher"], "out": str(work / "p2/o-full")}},
        "top-k first pass (k=64)": {"runner": "topk_cache",
                                    "config": {**common, "teacher": fx["teacher"], "teacher_topk": 64,
                                               "topk_cache_dir": cache}},
        "forward_kl --teacher-topk 64 (student only)": {
            "runner": "edgedistill",
            "config": {**common, "teacher_topk": 64, "topk_cache_dir": cache, "out": str(work / "p2/o-topk")}},
    }
    results = {name: in_subprocess("p2_" + name.split(",")[0].split(" (")[0].replace(" ", "_"), spec, work)
               for name, spec in runs.items()}
    full = results["forward_kl, teacher in memory"].get("peak_rss_mb")
    topk = results["forward_kl --teacher-topk 64 (student only)"].get("peak_rss_mb")
    return {"student_params": n_params(fx["student"]), "teacher_params": n_params(fx["teacher"]), "vocab": vocab,
            "steps": steps, "results": results,
            "topk_peak_fraction_of_full": (topk / full) if full and topk else None}


def _conditions(part: dict) -> str:
    load = part.get("load_average_at_end")
    return (f"Measured {part.get('measured_at', '(time not recorded)')}, load average at the end "
            f"{'/'.join(map(str, load)) if load else '(not recorded)'}.")


def write_markdown(report: dict) -> str:
    p1, p2 = report["part1"], report["part2"]
    lines = [
        "# Distillation benchmark", "",
        f"Machine: {report['machine']}. {report['note']}", "",
        f"## Part 1: ~{p1['student_params'] / 1e6:.0f}M student, {p1['teacher_params'] / 1e6:.0f}M teacher, "
        f"{p1['vocab']} vocab, batch 2, {p1['steps']} steps ({WARMUP} warm-up not measured)", "",
        _conditions(p1), "",
        "| configuration | tokens/s | peak RSS (MiB) | final loss |", "|---|---:|---:|---:|",
    ]
    for name, r in p1["results"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | |")
        else:
            fl = r.get("final_loss")
            lines.append(f"| {name} | {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                         f"{'' if fl is None else f'{fl:.3f}'} |")
    ours = p1["results"].get("edgedistill forward_kl (teacher in memory)", {}).get("tokens_per_s")
    trl = p1["results"].get("TRL GKDTrainer (lmbda=0, beta=0: forward KL)", {}).get("tokens_per_s")
    if ours and trl:
        lines += ["", f"forward_kl with the teacher in memory runs at {ours / trl:.2f} x TRL GKD's tokens/s "
                      f"({'meets' if ours >= trl else 'MISSES'} the >= 1.0 target)."]
    lines += ["", "Final loss: sft is cross-entropy; the forward-KL rows are the mean per-token KL(teacher || "
                  "student) — edgedistill (teacher in memory) and TRL report the same value on the same batches; "
                  "the top-k row is the k+1-bin approximation of it (see docs/distill.md).", "",
              f"## Part 2: {p2['vocab']:,}-token vocabulary (Gemma 3 size), "
              f"{p2['student_params'] / 1e6:.0f}M student, {p2['teacher_params'] / 1e6:.0f}M teacher", "",
              _conditions(p2), "",
              "| configuration | tokens/s | peak RSS (MiB) |", "|---|---:|---:|"]
    for name, r in p2["results"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | |")
        else:
            lines.append(f"| {name} | {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    frac = p2.get("topk_peak_fraction_of_full")
    if frac is not None:
        verdict = "meets" if frac <= 0.5 else "MISSES"
        lines += ["", f"Top-k training peak RSS = {frac:.2f} x the teacher-in-memory run ({verdict} the <= 0.5 "
                      "target). The first pass (its own process) still needs the teacher once."]
    prev = RESULTS / "distill_bench_part2_teacher306M.json"
    if prev.exists():
        p = json.loads(prev.read_text())["part2"]
        lines += ["", f"An earlier run of part 2 with a smaller teacher ({p['teacher_params'] / 1e6:.0f}M) measured "
                      f"{p['topk_peak_fraction_of_full']:.2f} (just above 0.5): the saving grows with the teacher's "
                      f"size, which the top-k run never loads ({prev.name})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="/tmp/edgedistill-distill-bench")
    ap.add_argument("--part", choices=["1", "2", "all"], default="all")
    ap.add_argument("--steps", type=int, default=WARMUP + MEASURED)
    ap.add_argument("--part2-steps", type=int, default=WARMUP + 1)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the recorded .json")
    args = ap.parse_args()
    if args.markdown_only:
        (RESULTS / "distill_bench.md").write_text(write_markdown(json.loads((RESULTS / "distill_bench.json").read_text())))
        return
    if args.child:
        child(args.child)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    # Parts can run as separate invocations (--part 1 / --part 2); each updates its key of the JSON.
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / "distill_bench.json"
    t0 = time.time()
    new = {}
    if args.part in ("1", "all"):
        print("part 1: throughput and memory beside TRL GKD")
        new["part1"] = part1(work, args.steps)
        new["part1"]["seconds"] = time.time() - t0
    if args.part in ("2", "all"):
        t2 = time.time()
        print("part 2: 262k vocabulary, top-k cache memory")
        new["part2"] = part2(work, args.part2_steps)
        new["part2"]["seconds"] = time.time() - t2
    for part in new.values():  # the conditions of each part's own measurement
        part["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
        part["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report = json.loads(out_json.read_text()) if out_json.exists() and args.part != "all" else {}
    report.update(new)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, CPU fp32"
    report["note"] = ("Each row ran in its own subprocess, one after the other within a part; each part "
                      "records when it ran and the load average at its end (other jobs on the 2 cores lower "
                      "every tokens/s figure).")
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    if "part1" in report and "part2" in report:
        md = write_markdown(report)
        (RESULTS / "distill_bench.md").write_text(md)
        print(md)


if __name__ == "__main__":
    main()

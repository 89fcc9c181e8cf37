"""The distillation training loop: `edgedistill.distill.distill(DistillConfig) -> DistillSummary`.

One linear loop, run through ``accelerate.Accelerator`` so the same code runs single-process, under
``accelerate launch`` or under ``torchrun`` (data-parallel; each process takes its slice of every
global batch). Order of work:

1. read + validate data, resolve models (HF dir or .gguf), check the tokenizers agree (logit KD)
2. tokenize (chat template where the tokenizer has one), seeded train/validation split
3. optionally build the teacher top-k cache (first pass) or load the teacher
4. student (given, or a layer-pruned teacher copy), LoRA or full fine-tuning, AdamW, warm-up + cosine
5. train: per step, ``gradient_accumulation_steps`` micro-batches; the loss is computed chunk by chunk
   over response positions only; log, evaluate and checkpoint every N steps
6. save the student atomically (merged if LoRA) with its tokenizer, training log and summary

Resuming: the data order of every epoch is a permutation seeded by (seed, epoch), and a checkpoint holds
the weights, the optimizer and scheduler states and the RNG states, so a resumed run repeats the batches
and the loss curve of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from edgedistill.atomic import (
    JsonlAppender,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    read_jsonl_records,
)
from edgedistill.config import to_dict
from edgedistill.distill.checkpoint import (
    DISTILL_MARKERS,
    is_same_run,
    load_newest_checkpoint,
    remove_checkpoints,
    rng_state_json,
    save_checkpoint_dir,
    set_rng_state_json,
)
from edgedistill.distill.config import DistillConfig, loss_chunk_positions
from edgedistill.distill.data import (
    IGNORE,
    TokenizedExample,
    collate,
    data_fingerprint,
    epoch_order,
    load_examples,
    split_train_val,
    tokenize_examples,
)
from edgedistill.distill.losses import LOSSES, FullTeacher, LossSpec, TopKTeacher, chunked_response_loss
from edgedistill.distill.qat import QatPhase
from edgedistill.distill.student import add_lora, decoder_of, head_of, prune_layers, softcap_of
from edgedistill.distill.vocab_teacher import MappedTeacher, check_mapped_vocab
from edgedistill.errors import ConfigError, DataError
from edgedistill.models import load_tokenizer, resolve_model_dir
from edgedistill.vocab_map import load_vocab_map


@dataclass
class DistillSummary:
    """What a distillation run did; printed by the CLI and saved as distill_summary.json."""

    out: str
    completed: bool
    steps: int
    total_steps: int
    train_examples: int
    val_examples: int
    skipped_empty: int
    truncated: int
    train_tokens: int
    tokens_per_s: float
    final_train_loss: float | None
    final_eval_loss: float | None
    peak_memory_mb: float
    peak_memory_kind: str
    log_path: str
    resumed_from_step: int | None
    seconds: float

    def describe(self) -> str:
        ev = "-" if self.final_eval_loss is None else f"{self.final_eval_loss:.4f}"
        tr = "-" if self.final_train_loss is None else f"{self.final_train_loss:.4f}"
        head = "student written to" if self.completed else "stopped early; checkpoint in"
        return (
            f"{head} {self.out}\n"
            f"  steps {self.steps}/{self.total_steps}, {self.train_examples} train / {self.val_examples} val "
            f"examples ({self.skipped_empty} skipped as empty, {self.truncated} truncated)\n"
            f"  final train loss {tr}, eval loss {ev}\n"
            f"  {self.tokens_per_s:.1f} tokens/s over {self.train_tokens} tokens, {self.seconds:.1f} s\n"
            f"  peak memory {self.peak_memory_mb:.0f} MiB ({self.peak_memory_kind})\n"
            f"  training log {self.log_path}"
        )


# --- helpers -------------------------------------------------------------------------------------------


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """CUDA max_memory_allocated on GPU; the process's peak resident set (VmHWM) on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "process VmHWM"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process ru_maxrss"


def _describe_tokenizer(tok, where: Path) -> str:
    return f"{type(tok).__name__} from {where} ({len(tok)} tokens)"


def check_shared_vocab(student_dir: Path, teacher_dir: Path, s_tok, t_tok, sample_texts: list[str]) -> int:
    """Number of logit rows to compare: the tokenizer's real tokens, provided both tokenizers agree.

    Padded rows (e.g. 152,064 vs 151,936 in Qwen checkpoints) are never compared. A real mismatch
    (other vocabularies, or the same text tokenized differently) is an error naming both tokenizers.
    """
    from transformers import AutoConfig

    s_vocab, t_vocab = s_tok.get_vocab(), t_tok.get_vocab()
    hint = "logit KD needs one vocabulary; use --loss sft (learns from the teacher's text) or a matching student"
    if s_vocab != t_vocab:
        only_s = sorted(set(s_vocab.items()) - set(t_vocab.items()))[:3]
        raise ConfigError(
            f"student tokenizer {_describe_tokenizer(s_tok, student_dir)} and teacher tokenizer "
            f"{_describe_tokenizer(t_tok, teacher_dir)} have different vocabularies "
            f"(e.g. student-only entries {only_s})",
            hint=hint,
        )
    for text in sample_texts:
        a = s_tok(text, add_special_tokens=False)["input_ids"]
        b = t_tok(text, add_special_tokens=False)["input_ids"]
        if a != b:
            raise ConfigError(
                f"student tokenizer {_describe_tokenizer(s_tok, student_dir)} and teacher tokenizer "
                f"{_describe_tokenizer(t_tok, teacher_dir)} tokenize the data differently "
                f"(text {text[:40]!r}: {a[:8]} vs {b[:8]})",
                hint=hint,
            )
    n_real = len(s_tok)
    rows = {}
    for name, d in (("student", student_dir), ("teacher", teacher_dir)):
        cfg = AutoConfig.from_pretrained(d)
        cfg = getattr(cfg, "text_config", None) or cfg
        rows[name] = cfg.vocab_size
    if n_real > min(rows.values()):
        raise ConfigError(
            f"the tokenizer has {n_real} tokens but the student has {rows['student']} and the teacher "
            f"{rows['teacher']} logit rows",
            hint=hint,
        )
    return n_real


class StudentWithLoss(torch.nn.Module):
    """The module that is data-parallel wrapped: forward = student hidden states + chunked loss.

    Keeping the LM head and the loss inside forward() lets DDP see every parameter use. The teacher
    is held outside the module tree so DDP neither wraps nor syncs it.
    """

    def __init__(self, student, spec: LossSpec, n_vocab: int, cfg: DistillConfig, teacher=None):
        super().__init__()
        self.student = student
        self.spec = spec
        self.n_vocab = n_vocab
        self.cfg = cfg
        self._teacher = [teacher]  # a list, so it is not registered as a submodule

    def forward(self, input_ids, attention_mask, labels, teacher_hidden=None, topk_logp=None, topk_index=None):
        hidden = decoder_of(self.student)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = labels[:, 1:] != IGNORE
        h = hidden[:, :-1][mask]
        targets = labels[:, 1:][mask]
        teacher = None
        if teacher_hidden is not None:
            teacher = FullTeacher(teacher_hidden, head_of(self._teacher[0]))
        elif topk_logp is not None:
            teacher = TopKTeacher(topk_logp, topk_index)
        cfg = self.cfg
        return chunked_response_loss(
            self.spec, h, head_of(self.student), targets, self.n_vocab, teacher,
            temperature=cfg.temperature, alpha=cfg.alpha, beta=cfg.beta,
            chunk=loss_chunk_positions(cfg, self.n_vocab),
            student_softcap=softcap_of(self.student),
            teacher_softcap=softcap_of(self._teacher[0]) if self._teacher[0] is not None else None,
        )


# Settings that may differ between an interrupted run and its resumption (they do not change the result).
RESUME_MAY_CHANGE = {"resume", "stop_at_step", "out", "work_dir", "rank_checksums", "eval_every", "save_every",
                     "log_every", "cpu", "overwrite"}


def build_plan(train_idx: list[int], cfg: DistillConfig, world: int) -> list[list[list[int]]]:
    """steps -> micro-batches -> global example indices (each process takes its slice)."""
    global_batch = cfg.batch_size * world
    steps: list[list[list[int]]] = []
    epoch = 0
    while True:
        order = [train_idx[j] for j in epoch_order(len(train_idx), cfg.seed, epoch)]
        micro = [order[i:i + global_batch] for i in range(0, len(order), global_batch)]
        for i in range(0, len(micro), cfg.gradient_accumulation_steps):
            steps.append(micro[i:i + cfg.gradient_accumulation_steps])
            if cfg.max_steps is not None and len(steps) >= cfg.max_steps:
                return steps
        epoch += 1
        if cfg.max_steps is None and epoch >= cfg.epochs:
            return steps


def rank_slice(global_batch: list[int], rank: int, world: int) -> list[int]:
    """This process's share of a global micro-batch (wrapping around so no process is left empty)."""
    if len(global_batch) < world:
        global_batch = (global_batch * world)[:world]
    return global_batch[rank::world]


def latest_checkpoint(work: Path) -> Path | None:
    ckpts = sorted((work / "checkpoints").glob("step-*"))
    return ckpts[-1] if ckpts else None


def _fused_adamw_ok(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused AdamW kernel (CPU and CUDA, torch >= 2.4) can update these parameters.

    It updates each tensor in one pass instead of a dozen elementwise ops: on 2 CPU cores a 59M-parameter
    step took 34 ms instead of 196 ms, a fifth of a whole distillation step at batch 2. (HF Trainer's
    default optimizer, adamw_torch_fused, is the same kernel.)
    """
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def params_checksum(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- the run -------------------------------------------------------------------------------------------


def distill(config: DistillConfig) -> DistillSummary:
    """Train a student on teacher outputs as ``config`` says; returns a :class:`DistillSummary`."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

    cfg = config
    started = time.perf_counter()
    spec = LOSSES.get(cfg.loss)
    out = Path(cfg.out)
    work = Path(cfg.work_dir) if cfg.work_dir else out.with_name(out.name + ".work")

    # 1. inputs, all checked before anything heavy happens
    same_run = is_same_run(out, to_dict(cfg), RESUME_MAY_CHANGE)  # an earlier finish of this run is redone
    check_output_dir(out, DISTILL_MARKERS, cfg.overwrite, same_run)  # never replace a user's directory
    loaded = load_examples(cfg.data)
    # the teacher is only opened when something needs it (a .gguf teacher is imported on first use)
    needs_teacher_dir = cfg.teacher and (spec.uses_teacher_logits or cfg.init_from_teacher)
    teacher_dir = resolve_model_dir(cfg.teacher, "teacher") if needs_teacher_dir else None
    if not cfg.init_from_teacher:
        student_dir = resolve_model_dir(cfg.student, "student")

    use_cuda = torch.cuda.is_available() and not cfg.cpu
    mp = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if use_cuda else "no")
    try:
        accelerator = Accelerator(mixed_precision=mp, cpu=not use_cuda)
    except ValueError as exc:  # accelerate's process-wide state was set up differently by an earlier run
        if "already been initialized" not in str(exc):
            raise
        raise ConfigError(
            f"mixed_precision={mp!r} differs from an earlier distillation in this Python process; "
            "accelerate fixes it once per process",
            hint="run each distillation with a different precision in its own process (e.g. one CLI call each)",
        ) from None
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    is_main = accelerator.is_main_process
    set_seed(cfg.seed)

    if cfg.init_from_teacher:
        student_dir = work / "student-init"
        if is_main and not (student_dir / "config.json").exists():
            prune_layers(teacher_dir, cfg.keep_layers, student_dir)
        accelerator.wait_for_everyone()

    tokenizer = load_tokenizer(student_dir, "student")
    pad_id = tokenizer.pad_token_id
    n_vocab = len(tokenizer)
    vmap = load_vocab_map(student_dir)  # a vocabulary-pruned student: the teacher is seen through the map
    needs_teacher_logits = spec.uses_teacher_logits
    if needs_teacher_logits and teacher_dir is not None:
        t_tok = load_tokenizer(teacher_dir, "teacher")
        samples = [e.response for e in loaded.examples[:64]] + [e.prompt or "" for e in loaded.examples[:16]]
        n_vocab = (check_mapped_vocab(student_dir, teacher_dir, tokenizer, t_tok, vmap) if vmap is not None
                   else check_shared_vocab(student_dir, teacher_dir, tokenizer, t_tok, samples))

    # 2. tokens and split
    tok_data = tokenize_examples(tokenizer, loaded.examples, cfg.max_length)
    if not tok_data.examples:
        raise DataError(f"{cfg.data}: every example's prompt fills max_length={cfg.max_length}; nothing to learn",
                        hint="raise --max-length")
    examples: list[TokenizedExample] = tok_data.examples
    train_idx, val_idx = split_train_val(len(examples), cfg.val_fraction, cfg.seed)
    if not train_idx:
        raise DataError(f"{cfg.data}: no training examples left after the validation split")

    work.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(work) if cfg.resume else None
    if cfg.resume and ckpt is None and is_main:
        print(f"note: no checkpoint in {work / 'checkpoints'}; starting from step 0")
    if ckpt is None and is_main:  # a fresh run: forget old checkpoints and log
        remove_checkpoints(work)
        (work / "train_log.jsonl").unlink(missing_ok=True)
    accelerator.wait_for_everyone()

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)

    # 3. teacher: top-k cache (first pass, then the teacher leaves memory) or in memory
    teacher, topk = None, None
    if needs_teacher_logits and cfg.teacher_topk:
        from edgedistill.distill.topk_cache import TopKCache, build_topk_cache, cache_is_complete

        cache_dir = Path(cfg.topk_cache_dir) if cfg.topk_cache_dir else work / "teacher-topk"
        meta_extra = {"teacher": str(teacher_dir) if teacher_dir else None, "data": data_fingerprint(examples)}
        if vmap is not None:  # a cache built through another id map is rebuilt
            meta_extra["vocab_map"] = vmap.fingerprint()
        if is_main:
            expected = {"k": min(cfg.teacher_topk, n_vocab), "temperature": cfg.temperature, "n_vocab": n_vocab,
                        "n_examples": len(examples), "shard_size": 64, **meta_extra}
            if not cache_is_complete(cache_dir, expected):
                if teacher_dir is None:
                    raise ConfigError(f"top-k cache {cache_dir} is missing or was built for other data; "
                                      "give --teacher to (re)build it")
                t_model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).to(device).eval()
                t_model = MappedTeacher(t_model, vmap) if vmap is not None else t_model
                build_topk_cache(t_model, examples, cache_dir, cfg.teacher_topk, cfg.temperature, n_vocab,
                                 meta_extra, pad_id, batch_size=max(cfg.batch_size, 4),
                                 chunk=loss_chunk_positions(cfg, n_vocab), device=device,
                                 autocast_dtype=autocast_dtype)
                del t_model
        accelerator.wait_for_everyone()
        topk = TopKCache(cache_dir)
    elif needs_teacher_logits:
        teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher = MappedTeacher(teacher, vmap) if vmap is not None else teacher

    # 4. student, optimizer, schedule
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    if cfg.lora_r > 0:
        student = add_lora(student, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    student.train()
    model = StudentWithLoss(student, spec, n_vocab, cfg, teacher)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  fused=_fused_adamw_ok(params))
    plan = build_plan(train_idx, cfg, world)
    total_steps = len(plan)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)

    start_step, resumed_from = 0, None
    if ckpt is not None:
        ckpt, state = load_newest_checkpoint(work, note=print if is_main else None)
        changed = [k for k, v in state.get("config", {}).items()
                   if k not in RESUME_MAY_CHANGE and v != getattr(cfg, k, v)]
        if changed:
            raise ConfigError(
                f"cannot resume from {ckpt}: setting(s) {', '.join(changed)} differ from the interrupted run",
                hint="rerun with the same settings, or without --resume to start over",
            )
        inner.student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state_json(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        start_step = resumed_from = state["step"]
        if is_main:  # drop log lines past the checkpoint (they are redone)
            kept = [r for r in read_jsonl_records(work / "train_log.jsonl") if r.get("step", 0) <= start_step]
            atomic_write_text(work / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        accelerator.wait_for_everyone()

    log = JsonlAppender(work / "train_log.jsonl") if is_main else None
    if is_main and start_step == 0:
        log.write({"event": "start", "config": to_dict(cfg), "world_size": world, "train_examples": len(train_idx),
                   "val_examples": len(val_idx), "total_steps": total_steps, "n_vocab": n_vocab})

    def teacher_inputs(batch: dict, idx: list[int]) -> dict:
        if topk is not None:
            logp, index = topk.batch(idx)
            if logp.shape[0] != int((batch["labels"][:, 1:] != IGNORE).sum()):
                raise DataError(f"top-k cache {topk.dir} does not match the tokenized data; delete it and rerun")
            return {"topk_logp": logp.to(device), "topk_index": index.to(device)}
        if teacher is not None:
            with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                h = decoder_of(teacher)(input_ids=batch["input_ids"],
                                        attention_mask=batch["attention_mask"]).last_hidden_state
            return {"teacher_hidden": h[:, :-1][batch["labels"][:, 1:] != IGNORE]}
        return {}

    def run_batch(idx: list[int], module=None) -> dict:
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], pad_id).items()}
        return (module or model)(**batch, **teacher_inputs(batch, idx)), int(batch["attention_mask"].sum())

    @torch.no_grad()
    def evaluate() -> float | None:
        if not val_idx:
            return None
        model.eval()
        sums = torch.zeros(2, device=device)
        mine = val_idx[rank::world]
        for i in range(0, len(mine), cfg.batch_size):
            # the unwrapped module: DDP's forward may sync buffers, and ranks can hold unequal val shares
            with accelerator.autocast():
                res, _ = run_batch(mine[i:i + cfg.batch_size], module=inner)
            sums += torch.stack([res["loss"].float(), res["n"].float().to(device)])
        sums = accelerator.reduce(sums, "sum")
        model.train()
        return float(sums[0] / sums[1].clamp(min=1))

    def save_checkpoint(step: int) -> None:
        rng = rng_state_json()
        rngs = accelerator.gather_for_metrics([rng], use_gather_object=True) if world > 1 else [rng]
        if is_main:  # tensors-only state (loads with weights_only=True) + JSON: nothing that unpickles code
            save_checkpoint_dir(work / "checkpoints" / f"step-{step:07d}", step, to_dict(cfg),
                                {"model": inner.student.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict()}, rngs)
            for old in sorted((work / "checkpoints").glob("step-*"))[:-2]:  # keep the newest two
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    # 5. train
    train_time, train_tokens = 0.0, 0
    last_loss, last_eval = None, None
    steps_per_epoch = max(1, math.ceil(len(train_idx) / (cfg.batch_size * world) / cfg.gradient_accumulation_steps))
    bar = tqdm(total=total_steps, initial=start_step, desc="distill", unit="step", disable=not is_main)
    step = start_step
    stopped_early = False
    qat = QatPhase(cfg.qat, cfg.qat_fraction, total_steps) if cfg.qat else None  # quantization-aware last phase
    for step in range(start_step + 1, total_steps + 1):
        if qat is not None:
            qat.at_step(inner.student, step)
        micro = plan[step - 1]
        t0 = time.perf_counter()
        step_loss = torch.zeros((), device=device)
        tokens = 0
        lr = scheduler.get_last_lr()[0]
        for m, global_batch in enumerate(micro):
            sync = m == len(micro) - 1
            with contextlib.nullcontext() if sync or world == 1 else accelerator.no_sync(model):
                res, n_tok = run_batch(rank_slice(global_batch, rank, world))
                loss = res["loss"] / res["n"].clamp(min=1).to(device) / len(micro)
                accelerator.backward(loss)
            step_loss += loss.detach().float()
            tokens += n_tok
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = float(accelerator.reduce(step_loss, "mean"))
        tokens = int(accelerator.reduce(torch.tensor(tokens, device=device), "sum"))
        dt = time.perf_counter() - t0
        train_time += dt
        train_tokens += tokens
        last_loss = step_loss
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")

        record = {"step": step, "epoch": (step - 1) // steps_per_epoch, "loss": step_loss, "lr": lr,
                  "tokens": tokens, "tokens_per_s": tokens / dt if dt > 0 else None}
        at_epoch_end = step % steps_per_epoch == 0 or step == total_steps
        if val_idx and ((cfg.eval_every and step % cfg.eval_every == 0) or (not cfg.eval_every and at_epoch_end)
                        or step == total_steps):
            last_eval = evaluate()
            record["eval_loss"] = last_eval
        if is_main and (step % cfg.log_every == 0 or "eval_loss" in record or step == total_steps):
            log.write(record)
        if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
            save_checkpoint(step)
        if cfg.stop_at_step is not None and step >= cfg.stop_at_step and step < total_steps:
            if not (cfg.save_every and step % cfg.save_every == 0):
                save_checkpoint(step)
            stopped_early = True
            break
    bar.close()

    # 6. save
    if cfg.rank_checksums:
        atomic_write_text(work / f"rank-{rank}.sha256", params_checksum(inner.student) + "\n")
    peak, peak_kind = peak_memory_mb(device)
    summary = DistillSummary(
        out=str(work / "checkpoints") if stopped_early else str(out), completed=not stopped_early, steps=step,
        total_steps=total_steps, train_examples=len(train_idx), val_examples=len(val_idx),
        skipped_empty=loaded.skipped_empty, truncated=tok_data.n_truncated, train_tokens=train_tokens,
        tokens_per_s=train_tokens / train_time if train_time > 0 else 0.0, final_train_loss=last_loss,
        final_eval_loss=last_eval, peak_memory_mb=peak, peak_memory_kind=peak_kind,
        log_path=str(work / "train_log.jsonl" if stopped_early else out / "train_log.jsonl"),
        resumed_from_step=resumed_from, seconds=time.perf_counter() - started,
    )
    if is_main:
        log.write({"event": "end", **asdict(summary)})
        log.close()
    if not stopped_early:
        final = inner.student
        if cfg.lora_r > 0:
            final = final.merge_and_unload()
        if is_main:
            with atomic_dir(out, cfg.overwrite, DISTILL_MARKERS, same_run) as tmp:
                final.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                shutil.copyfile(work / "train_log.jsonl", tmp / "train_log.jsonl")
                atomic_write_json(tmp / "distill_config.json", to_dict(cfg))
                atomic_write_json(tmp / "distill_summary.json", asdict(summary))
            # checkpoints only serve interrupted runs; the finished model is in `out`
            remove_checkpoints(work)
        accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary

"""The distillation training loop: `edgedistill.distill.distill(DistillConfig) -> DistillSummary`.

A small recipe class in the torchtune manner, run through ``accelerate.Accelerator`` so the same code
runs single-process, under ``accelerate launch`` or under ``torchrun`` (data-parallel; each process
takes its slice of every global batch). ``DistillRecipe.setup()`` does, in order:

1. read + validate data, resolve models (HF dir or .gguf), check the tokenizers agree (logit KD)
2. tokenize (chat template where the tokenizer has one), seeded train/validation split
3. optionally build the teacher top-k cache (first pass) or load the teacher
4. student (given, or a layer-pruned teacher copy), LoRA or full fine-tuning, AdamW, warm-up + cosine

then ``train()`` is the loop: per step (``train_step``), ``gradient_accumulation_steps`` micro-batches,
the loss computed chunk by chunk over response positions only; log, ``evaluate`` and
``save_checkpoint`` every N steps. ``finish()`` saves the student atomically (merged if LoRA) with its
tokenizer, training log and summary.

Resuming: the data order of every epoch is a permutation seeded by (seed, epoch), and a checkpoint holds
the weights, the optimizer and scheduler states and the RNG states, so a resumed run repeats the batches
and the loss curve of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
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
    list_checkpoints,
    load_newest_checkpoint,
    remove_checkpoints,
    rng_state_json,
    save_checkpoint_dir,
    set_rng_state_json,
)
from edgedistill.distill.config import DistillConfig, loss_chunk_positions
from edgedistill.distill.data import (
    IGNORE,
    collate,
    data_fingerprint,
    load_examples,
    split_train_val,
    tokenize_examples,
)
from edgedistill.distill.loop_helpers import (
    build_plan,
    check_shared_vocab,
    fused_adamw_ok,
    params_checksum,
    peak_memory_mb,
    rank_slice,
)
from edgedistill.distill.losses import LOSSES, FullTeacher, LossSpec, TopKTeacher, chunked_response_loss
from edgedistill.distill.qat import QatPhase
from edgedistill.distill.student import add_lora, decoder_of, head_of, prune_layers, softcap_of
from edgedistill.distill.vocab_teacher import MappedTeacher, check_mapped_vocab
from edgedistill.errors import ConfigError, DataError
from edgedistill.models import load_tokenizer, resolve_model_dir
from edgedistill.vocab_map import load_vocab_map

# Settings that may differ between an interrupted run and its resumption (they do not change the result).
RESUME_MAY_CHANGE = {"resume", "stop_at_step", "out", "work_dir", "rank_checksums", "eval_every", "save_every",
                     "log_every", "cpu", "overwrite"}

# Checkpoints kept on disk: the newest can be cut short (full disk, a kill while writing), and resuming
# then falls back to the one before it (checkpoint.load_newest_checkpoint); more would only cost disk,
# each holding the weights and AdamW's two moments (about 3x the student).
KEEP_CHECKPOINTS = 2

# Texts tokenized by both tokenizers before logit KD: enough of the data to catch a tokenizer that splits
# the same vocabulary differently, without tokenizing a large data set twice before training starts.
VOCAB_CHECK_RESPONSES = 64
VOCAB_CHECK_PROMPTS = 16

# The top-k first pass runs the teacher forward only (no activations kept for a backward pass), so it
# batches at least this many examples even when training uses micro-batches of 1 or 2.
TOPK_PASS_MIN_BATCH = 4


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



# --- the run -------------------------------------------------------------------------------------------


class DistillRecipe:
    """One distillation run: ``setup()``, ``train()``, ``finish()``; ``distill(config)`` calls the three.

    What the loop's steps share lives on the instance: the accelerator and this process's rank, the
    tokenized examples and their split, the teacher (in memory) or its top-k cache, the wrapped model,
    optimizer, scheduler and step plan, and the running totals the summary reports.
    """

    def __init__(self, cfg: DistillConfig):
        self.cfg = cfg
        self.started = time.perf_counter()
        self.spec: LossSpec = LOSSES.get(cfg.loss)
        self.out = Path(cfg.out)
        self.work = Path(cfg.work_dir) if cfg.work_dir else self.out.with_name(self.out.name + ".work")
        self.teacher = None  # the teacher in memory (logit losses without a top-k cache)
        self.topk = None  # or its top-k cache
        self.start_step, self.resumed_from = 0, None
        self.step, self.train_time, self.train_tokens = 0, 0.0, 0
        self.last_loss: float | None = None
        self.last_eval: float | None = None

    # --- set-up ----------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Everything before the first step; all input checks come before anything heavy."""
        self._check_inputs()
        self._setup_accelerator()
        self._setup_vocab()
        self._setup_data()
        resuming = self._prepare_work_dir()
        self._setup_teacher()
        self._setup_student()
        if resuming:
            self.load_checkpoint()
        self._open_log()

    def _check_inputs(self) -> None:
        cfg = self.cfg
        self.same_run = is_same_run(self.out, to_dict(cfg), RESUME_MAY_CHANGE)  # an earlier finish is redone
        check_output_dir(self.out, DISTILL_MARKERS, cfg.overwrite, self.same_run)  # never replace a user's dir
        self.loaded = load_examples(cfg.data)
        # the teacher is only opened when something needs it (a .gguf teacher is imported on first use)
        needs_teacher_dir = cfg.teacher and (self.spec.uses_teacher_logits or cfg.init_from_teacher)
        self.teacher_dir = resolve_model_dir(cfg.teacher, "teacher") if needs_teacher_dir else None
        self.student_dir = None if cfg.init_from_teacher else resolve_model_dir(cfg.student, "student")

    def _setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        use_cuda = torch.cuda.is_available() and not self.cfg.cpu
        mp = self.cfg.mixed_precision if self.cfg.mixed_precision != "auto" else ("bf16" if use_cuda else "no")
        try:
            self.accelerator = Accelerator(mixed_precision=mp, cpu=not use_cuda)
        except ValueError as exc:  # accelerate's process-wide state was set up differently by an earlier run
            if "already been initialized" not in str(exc):
                raise
            raise ConfigError(
                f"mixed_precision={mp!r} differs from an earlier distillation in this Python process; "
                "accelerate fixes it once per process",
                hint="run each distillation with a different precision in its own process (e.g. one CLI call each)",
            ) from None
        acc = self.accelerator
        self.device, self.rank, self.world = acc.device, acc.process_index, acc.num_processes
        self.is_main = acc.is_main_process
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)
        set_seed(self.cfg.seed)

    def _setup_vocab(self) -> None:
        """The student's directory and tokenizer, and how many logit rows the losses compare."""
        cfg = self.cfg
        if cfg.init_from_teacher:
            self.student_dir = self.work / "student-init"
            if self.is_main and not (self.student_dir / "config.json").exists():
                prune_layers(self.teacher_dir, cfg.keep_layers, self.student_dir)
            self.accelerator.wait_for_everyone()
        self.tokenizer = load_tokenizer(self.student_dir, "student")
        self.n_vocab = len(self.tokenizer)
        self.vmap = load_vocab_map(self.student_dir)  # a vocabulary-pruned student sees the teacher via the map
        if self.spec.uses_teacher_logits and self.teacher_dir is not None:
            t_tok = load_tokenizer(self.teacher_dir, "teacher")
            ex = self.loaded.examples
            samples = [e.response for e in ex[:VOCAB_CHECK_RESPONSES]] + [e.prompt or ""
                                                                          for e in ex[:VOCAB_CHECK_PROMPTS]]
            self.n_vocab = (
                check_mapped_vocab(self.student_dir, self.teacher_dir, self.tokenizer, t_tok, self.vmap)
                if self.vmap is not None
                else check_shared_vocab(self.student_dir, self.teacher_dir, self.tokenizer, t_tok, samples))

    def _setup_data(self) -> None:
        cfg = self.cfg
        tok_data = tokenize_examples(self.tokenizer, self.loaded.examples, cfg.max_length)
        if not tok_data.examples:
            raise DataError(f"{cfg.data}: every example's prompt fills max_length={cfg.max_length}; nothing to learn",
                            hint="raise --max-length")
        self.examples, self.n_truncated = tok_data.examples, tok_data.n_truncated
        self.train_idx, self.val_idx = split_train_val(len(self.examples), cfg.val_fraction, cfg.seed)
        if not self.train_idx:
            raise DataError(f"{cfg.data}: no training examples left after the validation split")

    def _prepare_work_dir(self) -> bool:
        """Whether this run resumes from a checkpoint; a fresh run forgets old checkpoints and log."""
        self.work.mkdir(parents=True, exist_ok=True)
        resuming = self.cfg.resume and bool(list_checkpoints(self.work))
        if self.cfg.resume and not resuming and self.is_main:
            print(f"note: no checkpoint in {self.work / 'checkpoints'}; starting from step 0")
        if not resuming and self.is_main:
            remove_checkpoints(self.work)
            (self.work / "train_log.jsonl").unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()
        return resuming

    def _setup_teacher(self) -> None:
        """A top-k cache (first pass, then the teacher leaves memory) or the teacher in memory."""
        if not self.spec.uses_teacher_logits:
            return
        if self.cfg.teacher_topk:
            self.topk = self._topk_cache()
            return
        self.teacher = self._load_teacher()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _load_teacher(self):
        from transformers import AutoModelForCausalLM

        teacher = AutoModelForCausalLM.from_pretrained(self.teacher_dir, dtype=torch.float32).to(self.device).eval()
        return MappedTeacher(teacher, self.vmap) if self.vmap is not None else teacher

    def _topk_cache(self):
        from edgedistill.distill.topk_cache import SHARD_EXAMPLES, TopKCache, build_topk_cache, cache_is_complete

        cfg, n_vocab = self.cfg, self.n_vocab
        cache_dir = Path(cfg.topk_cache_dir) if cfg.topk_cache_dir else self.work / "teacher-topk"
        meta_extra = {"teacher": str(self.teacher_dir) if self.teacher_dir else None,
                      "data": data_fingerprint(self.examples)}
        if self.vmap is not None:  # a cache built through another id map is rebuilt
            meta_extra["vocab_map"] = self.vmap.fingerprint()
        if self.is_main:
            expected = {"k": min(cfg.teacher_topk, n_vocab), "temperature": cfg.temperature, "n_vocab": n_vocab,
                        "n_examples": len(self.examples), "shard_size": SHARD_EXAMPLES, **meta_extra}
            if not cache_is_complete(cache_dir, expected):
                if self.teacher_dir is None:
                    raise ConfigError(f"top-k cache {cache_dir} is missing or was built for other data; "
                                      "give --teacher to (re)build it")
                build_topk_cache(self._load_teacher(), self.examples, cache_dir, cfg.teacher_topk, cfg.temperature,
                                 n_vocab, meta_extra, self.tokenizer.pad_token_id,
                                 batch_size=max(cfg.batch_size, TOPK_PASS_MIN_BATCH), shard_size=SHARD_EXAMPLES,
                                 chunk=loss_chunk_positions(cfg, n_vocab), device=self.device,
                                 autocast_dtype=self.autocast_dtype)
        self.accelerator.wait_for_everyone()
        return TopKCache(cache_dir)

    def _setup_student(self) -> None:
        """Student (+ LoRA), loss wrapper, AdamW, warm-up + cosine schedule, step plan; then accelerate."""
        from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

        cfg = self.cfg
        student = AutoModelForCausalLM.from_pretrained(self.student_dir, dtype=torch.float32)
        if cfg.lora_r > 0:
            student = add_lora(student, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        student.train()
        model = StudentWithLoss(student, self.spec, self.n_vocab, cfg, self.teacher)
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                      fused=fused_adamw_ok(self.params))
        self.plan = build_plan(self.train_idx, cfg, self.world)
        self.total_steps = len(self.plan)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_idx) / (cfg.batch_size * self.world)
                                                / cfg.gradient_accumulation_steps))
        warmup = math.ceil(cfg.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, self.total_steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.inner = self.accelerator.unwrap_model(self.model)
        # quantization-aware last phase
        self.qat = QatPhase(cfg.qat, cfg.qat_fraction, self.total_steps) if cfg.qat else None

    def _open_log(self) -> None:
        self.log = JsonlAppender(self.work / "train_log.jsonl") if self.is_main else None
        if self.is_main and self.start_step == 0:
            self.log.write({"event": "start", "config": to_dict(self.cfg), "world_size": self.world,
                            "train_examples": len(self.train_idx), "val_examples": len(self.val_idx),
                            "total_steps": self.total_steps, "n_vocab": self.n_vocab})

    # --- checkpoints -----------------------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> None:
        rng = rng_state_json()
        rngs = self.accelerator.gather_for_metrics([rng], use_gather_object=True) if self.world > 1 else [rng]
        if self.is_main:  # tensors-only state (loads with weights_only=True) + JSON: nothing that unpickles code
            save_checkpoint_dir(self.work / "checkpoints" / f"step-{step:07d}", step, to_dict(self.cfg),
                                {"model": self.inner.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "scheduler": self.scheduler.state_dict()}, rngs)
            for old in list_checkpoints(self.work)[:-KEEP_CHECKPOINTS]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self) -> None:
        """Weights, optimizer, scheduler and RNG from the newest checkpoint that loads; the log is cut there."""
        ckpt, state = load_newest_checkpoint(self.work, note=print if self.is_main else None)
        changed = [k for k, v in state.get("config", {}).items()
                   if k not in RESUME_MAY_CHANGE and v != getattr(self.cfg, k, v)]
        if changed:
            raise ConfigError(
                f"cannot resume from {ckpt}: setting(s) {', '.join(changed)} differ from the interrupted run",
                hint="rerun with the same settings, or without --resume to start over",
            )
        self.inner.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        set_rng_state_json(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.start_step = self.resumed_from = self.step = state["step"]
        if self.is_main:  # drop log lines past the checkpoint (they are redone)
            log_file = self.work / "train_log.jsonl"
            kept = [r for r in read_jsonl_records(log_file) if r.get("step", 0) <= self.start_step]
            atomic_write_text(log_file, "".join(json.dumps(r) + "\n" for r in kept))
        self.accelerator.wait_for_everyone()

    # --- one batch, one step, evaluation ---------------------------------------------------------------

    def teacher_inputs(self, batch: dict, idx: list[int]) -> dict:
        """The teacher's side of the loss for this batch: top-k log-probs, or its response hidden states."""
        if self.topk is not None:
            logp, index = self.topk.batch(idx)
            if logp.shape[0] != int((batch["labels"][:, 1:] != IGNORE).sum()):
                raise DataError(f"top-k cache {self.topk.dir} does not match the tokenized data; delete it and rerun")
            return {"topk_logp": logp.to(self.device), "topk_index": index.to(self.device)}
        if self.teacher is not None:
            dtype = self.autocast_dtype
            with torch.no_grad(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                h = decoder_of(self.teacher)(input_ids=batch["input_ids"],
                                             attention_mask=batch["attention_mask"]).last_hidden_state
            return {"teacher_hidden": h[:, :-1][batch["labels"][:, 1:] != IGNORE]}
        return {}

    def run_batch(self, idx: list[int], module=None) -> tuple[dict, int]:
        """The loss of examples ``idx`` (summed over response tokens) and their number of tokens."""
        pad_id = self.tokenizer.pad_token_id
        batch = {k: v.to(self.device) for k, v in collate([self.examples[i] for i in idx], pad_id).items()}
        return (module or self.model)(**batch, **self.teacher_inputs(batch, idx)), int(batch["attention_mask"].sum())

    def train_step(self, step: int) -> dict:
        """One optimizer step over its micro-batches; returns the step's training-log record."""
        acc, device = self.accelerator, self.device
        if self.qat is not None:
            self.qat.at_step(self.inner.student, step)
        micro = self.plan[step - 1]
        t0 = time.perf_counter()
        step_loss = torch.zeros((), device=device)
        tokens = 0
        lr = self.scheduler.get_last_lr()[0]
        for m, global_batch in enumerate(micro):
            sync = m == len(micro) - 1  # DDP all-reduces gradients only after the last micro-batch
            with contextlib.nullcontext() if sync or self.world == 1 else acc.no_sync(self.model):
                res, n_tok = self.run_batch(rank_slice(global_batch, self.rank, self.world))
                loss = res["loss"] / res["n"].clamp(min=1).to(device) / len(micro)
                acc.backward(loss)
            step_loss += loss.detach().float()
            tokens += n_tok
        if self.cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = float(acc.reduce(step_loss, "mean"))
        tokens = int(acc.reduce(torch.tensor(tokens, device=device), "sum"))
        dt = time.perf_counter() - t0
        self.train_time += dt
        self.train_tokens += tokens
        self.last_loss = step_loss
        return {"step": step, "epoch": (step - 1) // self.steps_per_epoch, "loss": step_loss, "lr": lr,
                "tokens": tokens, "tokens_per_s": tokens / dt if dt > 0 else None}

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean loss per response token over the validation split (all processes' shares)."""
        if not self.val_idx:
            return None
        self.model.eval()
        sums = torch.zeros(2, device=self.device)
        mine = self.val_idx[self.rank::self.world]
        for i in range(0, len(mine), self.cfg.batch_size):
            # the unwrapped module: DDP's forward may sync buffers, and ranks can hold unequal val shares
            with self.accelerator.autocast():
                res, _ = self.run_batch(mine[i:i + self.cfg.batch_size], module=self.inner)
            sums += torch.stack([res["loss"].float(), res["n"].float().to(self.device)])
        sums = self.accelerator.reduce(sums, "sum")
        self.model.train()
        return float(sums[0] / sums[1].clamp(min=1))

    # --- the loop --------------------------------------------------------------------------------------

    def train(self) -> bool:
        """Steps from the start (or the checkpoint) to the end; True when it stopped early at stop_at_step."""
        from tqdm.auto import tqdm

        cfg, total = self.cfg, self.total_steps
        bar = tqdm(total=total, initial=self.start_step, desc="distill", unit="step", disable=not self.is_main)
        stopped_early = False
        for step in range(self.start_step + 1, total + 1):
            self.step = step
            record = self.train_step(step)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if self._eval_due(step):
                self.last_eval = record["eval_loss"] = self.evaluate()
            if self.is_main and (step % cfg.log_every == 0 or "eval_loss" in record or step == total):
                self.log.write(record)
            if self._save_due(step):
                self.save_checkpoint(step)
            if cfg.stop_at_step is not None and cfg.stop_at_step <= step < total:
                if not self._save_due(step):  # a time-boxed job ends with a checkpoint to resume from
                    self.save_checkpoint(step)
                stopped_early = True
                break
        bar.close()
        return stopped_early

    def _eval_due(self, step: int) -> bool:
        """Every eval_every steps (or at each epoch's end when 0), and always at the last step."""
        if not self.val_idx:
            return False
        every = self.cfg.eval_every
        at_epoch_end = step % self.steps_per_epoch == 0
        return step == self.total_steps or (step % every == 0 if every else at_epoch_end)

    def _save_due(self, step: int) -> bool:
        every = self.cfg.save_every
        return bool(every) and step % every == 0 and step < self.total_steps

    # --- the end -----------------------------------------------------------------------------------------

    def finish(self, stopped_early: bool) -> DistillSummary:
        """Summary and training log; the student saved to ``out`` unless the run stopped early."""
        cfg, work = self.cfg, self.work
        if cfg.rank_checksums:
            atomic_write_text(work / f"rank-{self.rank}.sha256", params_checksum(self.inner.student) + "\n")
        peak, peak_kind = peak_memory_mb(self.device)
        summary = DistillSummary(
            out=str(work / "checkpoints") if stopped_early else str(self.out), completed=not stopped_early,
            steps=self.step, total_steps=self.total_steps, train_examples=len(self.train_idx),
            val_examples=len(self.val_idx), skipped_empty=self.loaded.skipped_empty, truncated=self.n_truncated,
            train_tokens=self.train_tokens,
            tokens_per_s=self.train_tokens / self.train_time if self.train_time > 0 else 0.0,
            final_train_loss=self.last_loss, final_eval_loss=self.last_eval, peak_memory_mb=peak,
            peak_memory_kind=peak_kind,
            log_path=str(work / "train_log.jsonl" if stopped_early else self.out / "train_log.jsonl"),
            resumed_from_step=self.resumed_from, seconds=time.perf_counter() - self.started,
        )
        if self.is_main:
            self.log.write({"event": "end", **asdict(summary)})
            self.log.close()
        if not stopped_early:
            self._save_student(summary)
        self.accelerator.end_training()
        return summary

    def _save_student(self, summary: DistillSummary) -> None:
        cfg = self.cfg
        final = self.inner.student
        if cfg.lora_r > 0:
            final = final.merge_and_unload()
        if self.is_main:
            with atomic_dir(self.out, cfg.overwrite, DISTILL_MARKERS, self.same_run) as tmp:
                final.save_pretrained(tmp, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
                if self.vmap is not None:  # its ids -> the teacher's, for export, eval and resuming KD
                    self.vmap.write(tmp)
                shutil.copyfile(self.work / "train_log.jsonl", tmp / "train_log.jsonl")
                atomic_write_json(tmp / "distill_config.json", to_dict(cfg))
                atomic_write_json(tmp / "distill_summary.json", asdict(summary))
            # checkpoints only serve interrupted runs; the finished model is in `out`
            remove_checkpoints(self.work)
        self.accelerator.wait_for_everyone()


def distill(config: DistillConfig) -> DistillSummary:
    """Train a student on teacher outputs as ``config`` says; returns a :class:`DistillSummary`."""
    recipe = DistillRecipe(config)
    recipe.setup()
    stopped_early = recipe.train()
    return recipe.finish(stopped_early)

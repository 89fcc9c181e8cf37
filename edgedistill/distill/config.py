"""Settings of the distill stage (`edgedistill distill`, the `distill:` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgedistill.config import registered, require

# Losses that compare the student's distribution with the teacher's, so they need teacher logits
# (the teacher in memory) or a top-k cache. `sft` only needs the teacher's text.
LOGIT_LOSSES = ("forward_kl", "reverse_kl", "jsd")


@dataclass
class DistillConfig:
    """Everything one distillation run needs. Defaults follow Azure AI Foundry's distillation
    defaults (learning rate 2e-5, batch size 2, 3 epochs)."""

    student: str | None = field(
        default=None,
        metadata={"help": "Student model: a Hugging Face causal-LM directory or a .gguf file. "
                          "Leave empty with init_from_teacher=true."},
    )
    data: str = field(default="", metadata={"help": "Training data: JSONL written by `edgedistill generate` "
                                                    "(or records with prompt+response / chat messages)."})
    out: str = field(default="", metadata={"help": "Output directory of the trained student (save_pretrained layout, "
                                                   "written atomically)."})
    teacher: str | None = field(
        default=None,
        metadata={"help": "Teacher model (HF directory or .gguf); needed by logit losses and init_from_teacher."},
    )
    loss: str = field(default="sft", metadata={"help": "Loss: sft, forward_kl, reverse_kl or jsd."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of logit KD; the KD term "
                                                               "is multiplied by T^2."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the KD term; (1 - alpha) goes to cross-entropy "
                                                         "on the teacher's response. Ignored by sft."})
    beta: float = field(default=0.5, metadata={"help": "Mixture weight of the jsd loss: M = beta*P_teacher + "
                                                        "(1-beta)*P_student."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (AdamW)."})
    batch_size: int = field(default=2, metadata={"help": "Examples per micro-batch per process."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    epochs: int = field(default=3, metadata={"help": "Passes over the training split."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps "
                                                                   "(overrides epochs when set)."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Fraction of steps of linear warm-up before the "
                                                                 "cosine decay."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    max_length: int = field(default=1024, metadata={"help": "Longest prompt+response in tokens; longer examples "
                                                             "are cut at the end."})
    loss_chunk_tokens: int | None = field(
        default=None, metadata={"help": "Response positions per chunk when applying the LM head + loss (bounds "
                                        "logits memory). Unset (the default): as many as fit 64M logits (256 MB in fp32): 256 "
                                        "positions for a 262k vocabulary, 2048 for 32k."})
    teacher_topk: int | None = field(
        default=None,
        metadata={"help": "Cache the teacher's top-k log-probs on disk in a first pass and train without the "
                          "teacher in memory (KD over top-k + one remainder bucket)."},
    )
    topk_cache_dir: str | None = field(default=None, metadata={"help": "Where the top-k cache lives "
                                                                        "(default: <work_dir>/teacher-topk)."})
    init_from_teacher: bool = field(default=False, metadata={"help": "Build the student as a layer-pruned copy "
                                                                     "of the teacher."})
    keep_layers: list[int] | None = field(default=None, metadata={"help": "Teacher layers kept by "
                                                                          "init_from_teacher, e.g. 0,3,6 (a YAML "
                                                                          "list or a comma-separated string)."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0 = full fine-tuning). The saved model is "
                                                     "merged."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "Module names LoRA adapts "
                                                                                  "(default: all linear layers "
                                                                                  "except the LM head)."})
    val_fraction: float = field(default=0.0, metadata={"help": "Fraction of examples held out for eval loss."})
    eval_every: int = field(default=0, metadata={"help": "Eval loss every N optimizer steps (0 = at the end of "
                                                         "each epoch only)."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N optimizer steps (0 = never)."})
    stop_at_step: int | None = field(default=None, metadata={"help": "Stop after this optimizer step with a "
                                                                      "checkpoint, as a time-boxed job would; rerun "
                                                                      "with resume=true to continue."})
    resume: bool = field(default=False, metadata={"help": "Continue from the newest checkpoint in work_dir."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing out that is an earlier distill "
                                                             "output with other settings (a directory of other "
                                                             "files is never replaced)."})
    work_dir: str | None = field(default=None, metadata={"help": "Checkpoints, training log and caches "
                                                                 "(default: <out>.work next to out)."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, data order and dropout."})
    log_every: int = field(default=1, metadata={"help": "Write a training-log line every N optimizer steps."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on CUDA, fp32 on CPU), bf16, "
                                                                   "fp16 or no."})
    cpu: bool = field(default=False, metadata={"help": "Train on the CPU even where CUDA is available."})
    rank_checksums: bool = field(default=False, metadata={"help": "Each process writes a checksum of its trained "
                                                                  "parameters to work_dir (multi-process check)."})
    qat: str | None = field(default=None, metadata={"help": "FORMAT:QUANT (e.g. gguf:q4_k_m, onnx:int4): train the "
                                                            "last qat_fraction of the steps with the linear weights "
                                                            "fake-quantized to that grid (distill/qat.py)."})
    qat_fraction: float = field(default=0.25, metadata={"help": "Share of the steps, at the end, trained "
                                                                "quantization-aware (with qat)."})

    def __post_init__(self):
        from edgedistill.distill.losses import LOSSES

        registered(self.loss, "loss", LOSSES)
        require(bool(self.data), "data", "give the training data JSONL (--data)")
        require(bool(self.out), "out", "give an output directory (--out)")
        require(0.0 <= self.alpha <= 1.0, "alpha", f"must be within [0, 1], got {self.alpha}")
        require(0.0 <= self.beta <= 1.0, "beta", f"must be within [0, 1], got {self.beta}")
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        for name in ("batch_size", "gradient_accumulation_steps", "epochs", "max_length", "log_every"):
            require(int(getattr(self, name)) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.loss_chunk_tokens is None or int(self.loss_chunk_tokens) >= 1, "loss_chunk_tokens",
                f"must be >= 1 when set, got {self.loss_chunk_tokens}")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be >= 1 when set")
        require(self.stop_at_step is None or self.stop_at_step >= 1, "stop_at_step", "must be >= 1 when set")
        require(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be within [0, 1)")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be within [0, 1)")
        require(self.eval_every >= 0 and self.save_every >= 0, "eval_every/save_every", "must be >= 0")
        require(self.lora_r >= 0, "lora_r", "must be >= 0 (0 = full fine-tuning)")
        require(self.mixed_precision in ("auto", "bf16", "fp16", "no"), "mixed_precision",
                f"{self.mixed_precision!r} is not one of auto, bf16, fp16, no")
        if self.teacher_topk is not None:
            require(self.teacher_topk >= 1, "teacher_topk", "must be >= 1")
            require(self.loss in LOGIT_LOSSES, "teacher_topk",
                    f"a top-k cache only serves logit losses ({', '.join(LOGIT_LOSSES)}), not {self.loss!r}")
        if self.loss in LOGIT_LOSSES:
            require(self.teacher is not None or self.teacher_topk is not None, "teacher",
                    f"loss {self.loss!r} compares logits: give --teacher (and optionally --teacher-topk)")
        if self.keep_layers is not None:
            require(self.init_from_teacher, "keep_layers", "only meaningful with init_from_teacher=true")
            if isinstance(self.keep_layers, str):  # "0,3,6" from a YAML string
                self.keep_layers = parse_layer_list(self.keep_layers)
            require(len(self.keep_layers) >= 1 and all(int(i) >= 0 for i in self.keep_layers), "keep_layers",
                    "give at least one non-negative layer index")
            require(len(set(self.keep_layers)) == len(self.keep_layers), "keep_layers", "indices repeat")
            self.keep_layers = [int(i) for i in self.keep_layers]
        if self.init_from_teacher:
            require(self.teacher is not None, "init_from_teacher", "needs --teacher (the model to prune)")
            require(self.keep_layers is not None, "init_from_teacher", "needs keep_layers, e.g. --keep-layers 0,3,6")
            require(self.student is None, "student", "give either --student or --init-from-teacher, not both")
        else:
            require(self.student is not None, "student", "give --student PATH (or --init-from-teacher)")
        require(0.0 < self.qat_fraction <= 1.0, "qat_fraction", f"must be within (0, 1], got {self.qat_fraction}")
        if self.qat is not None:
            from edgedistill.distill.qat import grid_for

            grid_for(self.qat)
            require(self.lora_r == 0, "qat", "needs full fine-tuning (lora_r 0): LoRA's merged weights are not "
                                             "the ones trained against the grid")


def parse_layer_list(text: str) -> list[int]:
    """'0,3,6' -> [0, 3, 6], with an error naming the bad entry."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        require(part.lstrip("-").isdigit(), "keep_layers", f"{part!r} is not a layer index")
        out.append(int(part))
    return out


LOGITS_PER_CHUNK = 64 * 2**20
"""Default logits budget of one loss chunk, in elements (see ``loss_chunk_tokens``)."""


def loss_chunk_positions(cfg: "DistillConfig", n_vocab: int) -> int:
    """Positions per loss chunk: the configured number, or as many as fit LOGITS_PER_CHUNK logits."""
    if cfg.loss_chunk_tokens:
        return int(cfg.loss_chunk_tokens)
    return max(16, LOGITS_PER_CHUNK // max(1, n_vocab))

"""Settings of `edgedistill prune`: which teacher, which calibration data, and the student's shape.

Every shape option left unset keeps the teacher's value, so ``PruneConfig(teacher=..., data=...,
out=..., num_layers=6)`` is depth pruning only. Checks that need the teacher's config (a hidden size
the head count does not divide, more layers than the teacher has) are made in :func:`check_against`,
once the teacher is known, and name the option and the teacher's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgedistill.config import one_of, registered, require
from edgedistill.errors import ConfigError

VOCAB_MODES = ("full", "data")


def _positive(value, name: str) -> None:
    if value is not None:
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0, name,
                f"must be a positive integer, got {value!r}")


@dataclass
class PruneConfig:
    """Build a small student from the teacher: depth, width and vocabulary pruning."""

    teacher: str = field(metadata={"help": "Teacher: HF directory, .gguf file or package:NAME."})
    data: str = field(metadata={"help": "Calibration data: `generate` output (prompts + teacher answers) or "
                                        "prompts (.jsonl, .json, .csv, .parquet, datasets dir)."})
    out: str = field(metadata={"help": "Output student directory (Hugging Face layout + prune.json)."})
    task: str = field(default="conversation", metadata={
        "help": "Task whose template turns plain prompts into messages (as `generate` does)."})
    keep_layers: list[int] | None = field(default=None, metadata={
        "help": "Teacher blocks to keep, in order, e.g. 0,1,5,11,16,17 (a YAML list or a comma-separated string)."})
    num_layers: int | None = field(default=None, metadata={
        "help": "Keep this many blocks, chosen by block influence on the calibration data."})
    hidden_size: int | None = field(default=None, metadata={
        "help": "Embedding channels to keep (width pruning, ranked by activation on the data)."})
    intermediate_size: int | None = field(default=None, metadata={"help": "MLP channels to keep per block."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Query heads to keep per block."})
    num_key_value_heads: int | None = field(default=None, metadata={
        "help": "Key/value heads (GQA groups) to keep per block; must divide num_attention_heads."})
    vocab: str = field(default="full", metadata={
        "help": "full: keep the teacher's vocabulary; data: keep the tokens the calibration data need.",
        "choices": VOCAB_MODES})
    vocab_size: int | None = field(default=None, metadata={
        "help": "With vocab=data: cap the vocabulary at N tokens (most frequent first)."})
    calibration_records: int = field(default=64, metadata={
        "help": "Calibration records measured for the rankings and perplexities (the first N); vocab=data "
                "keeps the tokens of every record."})
    max_length: int = field(default=256, metadata={"help": "Longest calibration sequence in tokens."})
    seed: int = field(default=0, metadata={"help": "Random seed (ties in the rankings are broken by index)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace an earlier prune output in out (a directory holding prune.json)."})

    def __post_init__(self):
        require(bool(self.teacher), "teacher", "give the teacher (HF directory, .gguf file or package:NAME)")
        require(bool(self.data), "data", "give the calibration data file")
        require(bool(self.out), "out", "give the output directory")
        for name in ("num_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                     "num_key_value_heads", "vocab_size", "calibration_records", "max_length"):
            _positive(getattr(self, name), name)
        if self.keep_layers is not None:
            if isinstance(self.keep_layers, str):
                from edgedistill.distill.config import parse_layer_list

                self.keep_layers = parse_layer_list(self.keep_layers)
            require(isinstance(self.keep_layers, list) and len(self.keep_layers) > 0
                    and all(isinstance(i, int) and i >= 0 for i in self.keep_layers), "keep_layers",
                    "give at least one non-negative layer index")
            require(len(set(self.keep_layers)) == len(self.keep_layers), "keep_layers", "indices repeat")
            require(self.num_layers is None, "num_layers", "give either keep_layers or num_layers, not both")
        one_of(self.vocab, "vocab", VOCAB_MODES)
        if self.vocab_size is not None:
            require(self.vocab == "data", "vocab_size", "only meaningful with vocab=data (--vocab data)")
        if self.num_attention_heads and self.num_key_value_heads:
            require(self.num_attention_heads % self.num_key_value_heads == 0, "num_key_value_heads",
                    f"{self.num_key_value_heads} does not divide num_attention_heads={self.num_attention_heads}")
        from edgedistill.tasks import TASKS

        registered(self.task, "task", TASKS)

    @property
    def prunes_width(self) -> bool:
        return any(v is not None for v in (self.hidden_size, self.intermediate_size, self.num_attention_heads,
                                           self.num_key_value_heads))


def check_against(cfg: PruneConfig, teacher_config) -> None:
    """The checks that need the teacher's config; errors name the option and the teacher's value."""
    t = teacher_config
    n_layers = t.num_hidden_layers
    if cfg.num_layers is not None and cfg.num_layers > n_layers:
        raise ConfigError(f"invalid setting 'num_layers': {cfg.num_layers} is more than the teacher's "
                          f"{n_layers} layers")
    if cfg.keep_layers is not None:
        bad = [i for i in cfg.keep_layers if i >= n_layers]
        if bad:
            raise ConfigError(f"invalid setting 'keep_layers': {bad} outside the teacher's layers 0..{n_layers - 1}")
    heads = t.num_attention_heads
    kv = getattr(t, "num_key_value_heads", None) or heads
    for name, new, old in (("hidden_size", cfg.hidden_size, t.hidden_size),
                           ("intermediate_size", cfg.intermediate_size, t.intermediate_size),
                           ("num_attention_heads", cfg.num_attention_heads, heads),
                           ("num_key_value_heads", cfg.num_key_value_heads, kv)):
        if new is not None and new > old:
            raise ConfigError(f"invalid setting {name!r}: {new} is larger than the teacher's {old} "
                              "(pruning only removes)")
    new_heads = cfg.num_attention_heads or heads
    new_kv = cfg.num_key_value_heads or min(kv, new_heads)
    if new_heads % new_kv:
        raise ConfigError(f"invalid setting 'num_attention_heads': {new_heads} heads cannot be split into "
                          f"{new_kv} key/value groups", hint="give a multiple of --num-key-value-heads")
    new_hidden = cfg.hidden_size or t.hidden_size
    if new_hidden % new_heads:
        raise ConfigError(f"invalid setting 'hidden_size': {new_hidden} is not divisible by the "
                          f"{new_heads} attention heads", hint="choose a multiple of the head count")

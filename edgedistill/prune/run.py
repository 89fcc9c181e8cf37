"""`edgedistill prune`: teacher + calibration data -> a smaller student directory and ``prune.json``.

Steps: resolve and load the teacher; measure block influence and activations on the calibration data
(one pass, :mod:`edgedistill.prune.importance`); keep the chosen blocks (:mod:`.depth`); slice the
width (:mod:`.width`); write the student atomically; with ``vocab="data"`` trim its vocabulary last
(:func:`edgedistill.prune.vocab.prune_vocabulary`); measure the calibration perplexity again and write
``prune.json`` into the student directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedistill.atomic import atomic_dir, atomic_write_json
from edgedistill.errors import EdgeDistillError
from edgedistill.prune.config import PruneConfig, check_against

REPORT_FILE = "prune.json"
SIZE_QUANTS = ("f16", "q8_0", "q4_k_m")
COMPONENTS = ("embedding", "attention", "mlp", "norms", "head")


@dataclass
class PruneReport:
    out: str
    teacher: str
    shape_before: dict
    shape_after: dict
    parameters_before: dict
    parameters_after: dict
    size_bytes_before: dict
    size_bytes_after: dict
    perplexity_before: float
    perplexity_after: float
    perplexity_scored_on: str
    layers_kept: list[int]
    layer_scores: list[float] | None
    heads_kept: list[dict] | None
    calibration_records: int
    calibration_tokens: int
    vocab: dict | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        b, a = self.parameters_before["total"], self.parameters_after["total"]
        out = [f"student written to {self.out} ({Path(self.out) / REPORT_FILE})",
               f"parameters: {b / 1e6:.1f}M -> {a / 1e6:.1f}M ({100 * a / b:.0f}%)"]
        out += [f"  {c}: {self.parameters_before[c] / 1e6:.2f}M -> {self.parameters_after[c] / 1e6:.2f}M"
                for c in COMPONENTS]
        out.append("estimated GGUF size: " + ", ".join(
            f"{q} {self.size_bytes_before[q] / 1e6:.1f} -> {self.size_bytes_after[q] / 1e6:.1f} MB" for q in SIZE_QUANTS))
        out.append(f"layers kept: {self.layers_kept}")
        out.append(f"calibration perplexity ({self.perplexity_scored_on}, {self.calibration_records} records): "
                   f"teacher {self.perplexity_before:.1f}, student {self.perplexity_after:.1f}")
        return out


def resolve_teacher(spec: str) -> Path:
    """HF dir, .gguf or package:NAME -> a Hugging Face directory (a GGUF is imported once)."""
    from edgedistill.models import resolve_model_dir
    from edgedistill.packaged_models import resolve_model_arg

    return resolve_model_dir(resolve_model_arg(spec), "teacher")


def parameter_counts(model) -> dict:
    """Parameters per component; a head tied to the embedding counts once (under embedding)."""
    counts = dict.fromkeys(COMPONENTS, 0)
    seen = set()
    head = model.get_output_embeddings()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if "embed" in name:  # before the head test: a tied head *is* the embedding
            part = "embedding"
        elif head is not None and p is head.weight:
            part = "head"
        elif "norm" in name:
            part = "norms"
        elif ".mlp." in name:
            part = "mlp"
        elif "attn" in name or "attention" in name:
            part = "attention"
        else:
            raise RuntimeError(f"parameter {name} belongs to no component")
        counts[part] += p.numel()
    counts["total"] = sum(counts[c] for c in COMPONENTS)
    counts["tied_head"] = bool(getattr(model.config, "tie_word_embeddings", False))
    return counts


def estimated_sizes(total_params: int) -> dict:
    """Bytes of a GGUF of ``total_params`` weights per quant (bits per weight, as `export --target`
    estimates them)."""
    from edgedistill.export.formats import FORMATS

    quants = FORMATS.get("gguf").quants
    return {q: int(total_params * quants[q].bits_per_weight / 8) for q in SIZE_QUANTS}


def shape_of(config) -> dict:
    from edgedistill.prune.width import head_dim_of

    return {"num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size, "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            "head_dim": head_dim_of(config), "vocab_size": config.vocab_size}


def prune(cfg: PruneConfig, log=print) -> PruneReport:
    """Build the student ``cfg.out`` from ``cfg.teacher`` (see the module docstring)."""
    from edgedistill.models import load_causal_lm
    from edgedistill.prune import calibration, importance
    from edgedistill.prune.width import head_dim_of, plan_for, rule_for

    started = time.perf_counter()
    teacher_dir = resolve_teacher(cfg.teacher)
    model, tok = load_causal_lm(teacher_dir, "teacher")
    tcfg = model.config
    check_against(cfg, tcfg)
    rule = rule_for(tcfg) if cfg.prunes_width else None
    plan = plan_for(tcfg, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                    cfg.num_key_value_heads) if rule else None
    # the vocabulary step reads every record (the student trains on all of them); the activation
    # statistics and perplexities only the first calibration_records
    every = calibration.load_calibration(cfg.data, cfg.task, None if cfg.vocab == "data" else cfg.calibration_records)
    examples = every[:cfg.calibration_records]
    seqs = calibration.tokenize_calibration(tok, examples, cfg.max_length)
    log(f"measuring the teacher on {len(seqs)} calibration sequences ...")
    from edgedistill.prune.width import WIDTH_RULES, WidthRule

    probe = rule or (WIDTH_RULES.get(tcfg.model_type) if tcfg.model_type in WIDTH_RULES else WidthRule("", (), {}))
    acts = importance.collect(model, seqs, probe.attn_out, probe.mlp_out, probe.hidden_norms(model),
                              head_dim_of(tcfg))
    n = tcfg.num_hidden_layers
    if cfg.keep_layers is not None:
        keep = list(cfg.keep_layers)
    elif cfg.num_layers is not None:
        keep = importance.choose_layers(acts.block_influence, cfg.num_layers)
    else:
        keep = list(range(n))
    student = model
    if keep != list(range(n)):
        from edgedistill.prune.depth import select_layers

        student = select_layers(model, keep)
    heads = None
    if rule is not None:
        from edgedistill.prune.width import prune_width

        student, heads = prune_width(student, acts, keep, plan, rule, tcfg)
    before = parameter_counts(model)
    report = PruneReport(
        out=str(cfg.out), teacher=str(cfg.teacher), shape_before=shape_of(tcfg), shape_after={},
        parameters_before=before, parameters_after={}, size_bytes_before=estimated_sizes(before["total"]),
        size_bytes_after={}, perplexity_before=acts.perplexity, perplexity_after=float("nan"),
        perplexity_scored_on="answers" if any(ex.response for ex in examples) else "every token",
        layers_kept=keep, layer_scores=[round(s, 6) for s in acts.block_influence], heads_kept=heads,
        calibration_records=len(seqs), calibration_tokens=acts.tokens, settings=asdict(cfg))
    _write(cfg, student, tok, examples, report, log, vocab_examples=every)
    report.seconds = round(time.perf_counter() - started, 1)
    atomic_write_json(Path(cfg.out) / REPORT_FILE, report.to_dict())
    return report


def _write(cfg: PruneConfig, student, tok, examples, report: PruneReport, log, vocab_examples=None) -> None:
    """Save the student into ``cfg.out`` atomically (trimming the vocabulary last when asked, to the
    texts of ``vocab_examples``), measure it as saved and fill in the report's 'after' fields."""
    from edgedistill.models import load_causal_lm
    from edgedistill.prune import calibration, importance

    out = Path(cfg.out)
    with atomic_dir(out, cfg.overwrite, made_by=(REPORT_FILE,)) as tmp:
        if cfg.vocab == "data":
            stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".stage", dir=out.parent))
            try:
                student.save_pretrained(stage, safe_serialization=True)
                tok.save_pretrained(stage)
                prune_vocabulary = _vocabulary_step()

                texts = calibration.calibration_texts(tok, vocab_examples if vocab_examples is not None else examples)
                log(f"trimming the vocabulary to the {len(texts)} calibration records' texts ...")
                vocab_report = prune_vocabulary(stage, texts, tmp, vocab_size=cfg.vocab_size)
                report.vocab = vocab_report.to_dict()
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        else:
            student.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        final, final_tok = load_causal_lm(tmp, "student")  # measure what was written, not what is in memory
        seqs = calibration.tokenize_calibration(final_tok, examples, cfg.max_length)
        report.perplexity_after = importance.perplexity(final, seqs)
        report.parameters_after = parameter_counts(final)
        report.size_bytes_after = estimated_sizes(report.parameters_after["total"])
        report.shape_after = shape_of(final.config)
        atomic_write_json(tmp / REPORT_FILE, report.to_dict())


def _vocabulary_step():
    try:
        from edgedistill.prune.vocab import prune_vocabulary  # imported only when vocab=data is asked for
    except ImportError as exc:
        raise EdgeDistillError(f"vocabulary pruning (vocab=data) is not available in this installation: {exc}",
                               hint="prune with vocab=full") from None
    return prune_vocabulary


def read_report(out_dir: str | Path) -> dict | None:
    p = Path(out_dir) / REPORT_FILE
    return json.loads(p.read_text()) if p.exists() else None

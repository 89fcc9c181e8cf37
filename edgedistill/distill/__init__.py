"""The distill stage: train a student on a teacher's outputs (sequence-level or logit KD).

    from edgedistill.distill import DistillConfig, distill
    summary = distill(DistillConfig(student="student/", data="synthetic.jsonl", out="out/", loss="sft"))

Layer-pruned students: :func:`edgedistill.distill.student.prune_layers`.
"""

from edgedistill.distill.config import DistillConfig
from edgedistill.distill.losses import LOSSES
from edgedistill.distill.trainer import DistillSummary, distill

__all__ = ["DistillConfig", "DistillSummary", "LOSSES", "distill"]

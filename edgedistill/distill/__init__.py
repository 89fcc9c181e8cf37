"""The distill stage: train a student on a teacher's outputs (sequence-level or logit KD).

    from edgedistill.distill import DistillConfig, distill
    summary = distill(DistillConfig(student="student/", data="synthetic.jsonl", out="out/", loss="sft"))

Layer-pruned students: :func:`edgedistill.distill.student.prune_layers`.
"""

from edgedistill.distill.config import DistillConfig

__all__ = ["DistillConfig", "DistillSummary", "LOSSES", "distill"]

# The trainer and losses import torch (a second or more); the CLI imports DistillConfig for its options
# at start-up, so they load on first use instead (PEP 562).
_LAZY = {"LOSSES": "edgedistill.distill.losses", "DistillSummary": "edgedistill.distill.trainer",
         "distill": "edgedistill.distill.trainer"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value

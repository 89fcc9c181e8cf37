"""DistillRecipe, the class behind distill(): the loop calls its step methods in the order the settings
say, a subclass can replace one step, resuming goes through load_checkpoint, and the named constants
(checkpoints kept, top-k shard size) are the ones the run uses."""

from __future__ import annotations

import json

from edgedistill.distill import DistillConfig
from edgedistill.distill.topk_cache import SHARD_EXAMPLES
from edgedistill.distill.trainer import KEEP_CHECKPOINTS, DistillRecipe
from test_distill_train import make_data


class Recorder(DistillRecipe):
    """Records which steps the loop ran; evaluate() is replaced by a constant to show overriding works."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls: list[tuple[str, int]] = []

    def train_step(self, step):
        self.calls.append(("train_step", step))
        return super().train_step(step)

    def evaluate(self):
        self.calls.append(("evaluate", self.step))
        return 42.0

    def save_checkpoint(self, step):
        self.calls.append(("save_checkpoint", step))
        super().save_checkpoint(step)

    def load_checkpoint(self):
        self.calls.append(("load_checkpoint", -1))
        super().load_checkpoint()


def _run(cfg: DistillConfig) -> tuple[Recorder, object]:
    recipe = Recorder(cfg)
    recipe.setup()
    return recipe, recipe.finish(recipe.train())


def test_loop_calls_the_steps_as_configured_and_resumes_through_load_checkpoint(tmp_path, tiny_llama):
    data = make_data(tmp_path / "d.jsonl", n=12)
    common = dict(student=str(tiny_llama), data=str(data), out=str(tmp_path / "o"), loss="sft", max_steps=5,
                  val_fraction=0.2, eval_every=2, save_every=1, learning_rate=1e-3)
    first, summary = _run(DistillConfig(stop_at_step=4, **common))
    assert first.calls == [("train_step", 1), ("save_checkpoint", 1), ("train_step", 2), ("evaluate", 2),
                           ("save_checkpoint", 2), ("train_step", 3), ("save_checkpoint", 3), ("train_step", 4),
                           ("evaluate", 4), ("save_checkpoint", 4)]
    assert not summary.completed and summary.steps == 4 and summary.final_eval_loss == 42.0
    kept = sorted(p.name for p in (tmp_path / "o.work" / "checkpoints").iterdir())
    assert len(kept) == KEEP_CHECKPOINTS and kept[-1] == "step-0000004"

    second, summary = _run(DistillConfig(resume=True, **common))
    assert second.calls == [("load_checkpoint", -1), ("train_step", 5), ("evaluate", 5)]
    assert summary.completed and summary.resumed_from_step == 4 and summary.steps == 5
    assert json.loads((tmp_path / "o" / "distill_summary.json").read_text())["final_eval_loss"] == 42.0


def test_topk_cache_is_written_with_the_shard_size_the_trainer_expects(tmp_path, tiny_llama):
    """A cache written with another shard size than the one checked would be rebuilt on every run."""
    data = make_data(tmp_path / "d.jsonl", n=6)
    cfg = dict(student=str(tiny_llama), teacher=str(tiny_llama), data=str(data), loss="forward_kl",
               teacher_topk=4, max_steps=1, topk_cache_dir=str(tmp_path / "cache"))
    first, _ = _run(DistillConfig(out=str(tmp_path / "a"), **cfg))
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["shard_size"] == SHARD_EXAMPLES
    shard = next((tmp_path / "cache").glob("shard-*.safetensors"))
    written = shard.stat().st_mtime_ns
    second, _ = _run(DistillConfig(out=str(tmp_path / "b"), **cfg))  # the complete cache is reused
    assert shard.stat().st_mtime_ns == written and second.topk is not None and second.teacher is None

"""Task-level verification: does the artifact keep the float model's score on the user's own task?

Logit KL and greedy agreement on a few generic prompts say whether an artifact *runs like* its
source; they do not say what a user loses on their task (a q4_k_m can pass KL 0.14 < 0.2 and still
drop ROUGE-L by 30%). With ``export --eval-data FILE --task TASK`` the float model and every artifact
are scored on the same records through their own runtimes, by ``edgedistill.eval``'s code (same
prompt formatting, greedy decoding, metrics), and

    retention = artifact score / float score      (the task's primary metric)

must be >= ``min_retention``, or the artifact fails verification like any other breach (kept as
``*.failed`` with the figures in its manifest).

The records are read and checked by :func:`prepare_task_check` before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.errors import DataError, EdgeDistillError


@dataclass
class TaskCheck:
    task: str
    data: str
    min_retention: float
    records: list[dict]
    eval_config: object = field(repr=False)
    metric: str = ""
    float_score: float | None = None
    float_seconds: float | None = None
    _prompts: list[str] = field(default_factory=list, repr=False)
    _format: object = field(default=None, repr=False)

    def score(self, path: str | Path, name: str) -> float | None:
        """The primary metric of the model / artifact at ``path`` on the records (through its runtime)."""
        from edgedistill.eval.evaluate import score_model, summarise

        result = score_model(str(path), name, self.records, self._prompts, self._format, self.eval_config)
        return summarise(result, [self.metric], None)["scores"][self.metric]

    def score_float(self, model_dir: Path) -> None:
        """Score the PyTorch model once; prompts use its chat template (as ``eval`` would)."""
        import time

        from edgedistill.eval.evaluate import _messages, find_prompt_format

        self._format = find_prompt_format([str(model_dir)])
        self._prompts = [self._format.text(_messages(r, self.task), self.eval_config.plain_cue) for r in self.records]
        t0 = time.perf_counter()
        self.float_score = self.score(model_dir, "float")
        self.float_seconds = round(time.perf_counter() - t0, 3)

    def judge(self, artifact_dir: Path, verification) -> dict:
        """Score the artifact, add ``figures['task']`` and, below ``min_retention``, a failure."""
        from edgedistill.eval.metrics import retention

        score = self.score(artifact_dir, artifact_dir.name)
        ret = retention(score, self.float_score, self.metric)
        figures = {"task": self.task, "data": self.data, "records": len(self.records), "metric": self.metric,
                   "float_score": self.float_score, "score": score, "retention": ret,
                   "min_retention": self.min_retention}
        verification.figures["task"] = figures
        verification.thresholds["min_retention"] = self.min_retention
        if ret is None:
            figures["note"] = (f"retention undefined: the float model scores {self.float_score} on this data, "
                               "so the task check cannot judge the artifact")
        elif ret < self.min_retention:
            verification.failures.append(
                f"task {self.task}: {self.metric} {score:.4g} is {ret:.1%} of the float model's "
                f"{self.float_score:.4g} (< required {self.min_retention:.1%}, {len(self.records)} records)")
            verification.passed = False
        return figures


def prepare_task_check(data: str, task: str, min_retention: float, max_records: int | None,
                       max_new_tokens: int, threads: int | None, model: str) -> TaskCheck:
    """Read and check the eval records (no model is loaded); errors name --eval-data / --task."""
    from edgedistill.eval.evaluate import EvalConfig, load_test_set, task_metrics

    p = Path(data).expanduser()
    if not p.exists():
        raise DataError(f"--eval-data {p}: no such file", hint="give held-out records with a reference each")
    cfg = EvalConfig(models=[model], data=str(p), task=task, max_records=max_records,
                     max_new_tokens=max_new_tokens, perplexity=False, threads=threads)
    try:
        records = load_test_set(cfg)
    except EdgeDistillError as exc:
        raise DataError(f"--eval-data (task {task}): {exc.message}", hint=exc.hint) from None
    return TaskCheck(task, str(p), min_retention, records, cfg, metric=task_metrics(task)[0])

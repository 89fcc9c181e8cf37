"""`edgedistill generate`: ask a teacher to answer every prompt of a data set, as resumable JSONL.

    summary = generate(GenerateConfig(data="prompts.jsonl", out="synthetic.jsonl",
                                      teacher=TeacherConfig(path="models/teacher"), task="qa"))

One output line per input record (fields in docs/generate.md). Lines are appended whole and
fsynced as each batch finishes, so a kill loses at most the batch in flight, and rerunning the same
command skips ids already written. Every record carries the teacher id, the task and the sampling
settings; a rerun whose settings differ from those already in the file is refused unless
``overwrite`` is set (then the file is started afresh).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.atomic import JsonlAppender, check_writable_file, read_jsonl_records
from edgedistill.config import registered, require, to_dict
from edgedistill.data import load_records
from edgedistill.errors import ConfigError, EdgeDistillError
from edgedistill.tasks import TASKS, Task
from edgedistill.teachers import Completion, SamplingConfig, TeacherConfig, load_teacher, teacher_id


@dataclass
class GenerateConfig:
    """Settings of one `generate` run."""

    data: str = field(metadata={"help": "prompts: .jsonl, .json, .csv, .parquet or a datasets directory"})
    out: str = field(metadata={"help": "output JSONL file (appended to; rerun to resume)"})
    teacher: TeacherConfig = field(metadata={"help": "the teacher (see TeacherConfig)"})
    task: str = field(default="conversation", metadata={"help": f"task type: {', '.join(TASKS.names())}"})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "sampling settings"})
    prompt_field: str | None = field(default=None, metadata={"help": "input field holding the prompt"})
    reference_field: str | None = field(default=None, metadata={"help": "input field holding the reference"})
    split: str | None = field(default=None, metadata={"help": "split of a saved DatasetDict"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N records"})
    overwrite: bool = field(
        default=False, metadata={"help": "discard an existing output made with other settings and start over"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar on stderr"})

    def __post_init__(self):
        if isinstance(self.teacher, dict):
            self.teacher = TeacherConfig(**self.teacher)
        if isinstance(self.sampling, dict):
            self.sampling = SamplingConfig(**self.sampling)
        require(bool(self.data), "data", "give the prompts file (--data)")
        require(bool(self.out), "out", "give the output file (--out)")
        registered(self.task, "task", TASKS)
        require(self.limit is None or self.limit >= 1, "limit", f"must be >= 1, got {self.limit}")
        if self.sampling.stop is None:  # the task's default, recorded in every output line
            self.sampling.stop = list(TASKS.get(self.task).stop)
        if self.sampling.plain_cue is None:  # likewise: distill and prune read it back from the records
            self.sampling.plain_cue = TASKS.get(self.task).plain_cue


@dataclass
class GenerateSummary:
    """What a run did; printed by the CLI."""

    out: str
    task: str
    teacher: str
    total: int  # records in the input (after limit)
    already_done: int  # skipped because the output had them
    generated: int  # written by this run
    empty: int = 0
    truncated: int = 0
    errors: int = 0
    no_answer: int = 0  # accuracy tasks: no extractable final answer
    elapsed_s: float = 0.0
    stop: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.generated / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"wrote {self.generated} record(s) to {self.out} in {self.elapsed_s:.1f} s ({rate:.2f}/s); "
            f"{self.already_done} already there, {self.total} in the data set",
            f"teacher {self.teacher}, task {self.task}, stop sequences {self.stop!r}",
            f"flagged: {self.empty} empty, {self.truncated} truncated, {self.errors} error(s)"
            + (f", {self.no_answer} without an extractable answer" if self.no_answer else ""),
        ]
        return out


def _check_existing(out: Path, existing: list[dict], expected: dict) -> list[str]:
    """Differences between the settings recorded in ``out`` and this run's (empty when compatible)."""
    problems = []
    for i, rec in enumerate(existing, start=1):
        for key, want in expected.items():
            have = rec.get(key)
            if have != want:
                problems.append(f"{out} record {i} has {key} {have!r}, this run uses {want!r}")
        if problems:
            break
    return problems


def build_record(record: dict, task: Task, messages: list[dict], completion: Completion, teacher: str,
                 sampling: dict) -> dict:
    """The output line for one input record."""
    if "prompt" in record:
        prompt = record["prompt"]
    else:
        prompt = next((m["content"] for m in reversed(record["messages"]) if m["role"] == "user"), "")
    flags = []
    if completion.finish_reason == "error":
        flags.append("error")
    if not completion.text.strip():  # error records too: readers that skip "empty" skip them as well
        flags.append("empty")
    if completion.finish_reason == "length":
        flags.append("truncated")
    out = {
        "id": record["id"],
        "task": task.name,
        "messages": messages,
        "prompt": prompt,
    }
    if record.get("reference") is not None:
        out["reference"] = record["reference"]
    out.update(response=completion.text, finish_reason=completion.finish_reason, teacher=teacher,
               sampling=sampling, flags=flags)
    if task.extractor is not None and completion.finish_reason != "error":
        out["answer"] = task.extract_answer(completion.text)
        if out["answer"] is None and "empty" not in flags:
            flags.append("no_answer")
    if completion.top_logprobs is not None:
        out["top_logprobs"] = completion.top_logprobs
    if completion.error:
        out["error"] = completion.error
    return out


def generate(config: GenerateConfig) -> GenerateSummary:
    """Run the teacher over ``config.data`` into ``config.out``; see the module docstring."""
    from tqdm.auto import tqdm

    start = time.monotonic()
    task = TASKS.get(config.task)
    out = Path(config.out).expanduser()
    data = Path(config.data).expanduser()
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a .jsonl file path")
    if out.exists() and data.exists() and out.resolve() == data.resolve():
        raise ConfigError(f"--out {out} is the input file; choose another output path")
    check_writable_file(out)  # a permission problem must show now, not after the teacher has loaded

    # Cheap checks first (data, teacher path, existing output) so mistakes surface before a model loads.
    records = load_records(data, config.prompt_field, config.reference_field, config.split)
    if config.limit is not None:
        records = records[: config.limit]
    tid = teacher_id(config.teacher)
    sampling = to_dict(config.sampling)
    existing = read_jsonl_records(out) if out.exists() else []
    problems = _check_existing(out, existing, {"teacher": tid, "task": task.name, "sampling": sampling})
    if problems:
        if not config.overwrite:
            raise ConfigError(
                f"{out} was made with other settings: {problems[0]}",
                hint="rerun with the original settings to resume, choose another --out, "
                "or pass --overwrite to discard it and start over",
            )
        out.unlink()
        existing = []
    done = {rec.get("id") for rec in existing}
    pending = [r for r in records if r["id"] not in done]
    summary = GenerateSummary(
        out=str(out), task=task.name, teacher=tid, total=len(records),
        already_done=len(records) - len(pending), generated=0, stop=list(config.sampling.stop),
    )
    if not pending:
        summary.elapsed_s = time.monotonic() - start
        return summary

    teacher = load_teacher(config.teacher)
    batch = max(1, teacher.preferred_batch)
    bar = tqdm(total=len(records), initial=summary.already_done, unit="rec", desc=f"generate {task.name}",
               disable=not config.progress, dynamic_ncols=True)
    writer = None  # opened on the first answer, so a run that fails at once leaves no empty file
    try:
        for i in range(0, len(pending), batch):
            chunk = pending[i : i + batch]
            conversations = [task.build_messages(r) for r in chunk]
            completions = teacher.generate(conversations, config.sampling)
            if len(completions) != len(chunk):
                raise EdgeDistillError(f"teacher {tid} returned {len(completions)} answers for {len(chunk)} prompts")
            writer = writer or JsonlAppender(out)
            for rec, msgs, comp in zip(chunk, conversations, completions):
                line = build_record(rec, task, msgs, comp, tid, sampling)
                writer.write(line)
                summary.generated += 1
                summary.empty += "empty" in line["flags"]
                summary.truncated += "truncated" in line["flags"]
                summary.errors += "error" in line["flags"]
                summary.no_answer += "no_answer" in line["flags"]
            bar.update(len(chunk))
    finally:
        if writer is not None:
            writer.close()
        bar.close()
        teacher.close()
    summary.elapsed_s = time.monotonic() - start
    return summary

"""`edgedistill run recipe.yaml`: generate, distill, export, eval and bench from one YAML file.

A recipe names the teacher, the student (a path, or ``keep_layers`` to derive it from the teacher by
layer pruning), the data (train / test), the task, and one section per stage whose keys are that
stage's own settings (the fields of GenerateConfig, DistillConfig, ExportConfig, EvalConfig,
BenchConfig) minus the ones the recipe wires between stages. See docs/quickstart.md for the schema.

Every stage writes under ``out_dir``::

    out_dir/state.json                 finished stages (written atomically after each stage)
    out_dir/generate/teacher.jsonl     teacher outputs on data.train            (generate)
    out_dir/students/pruned/           student before distillation (student.prune: prune;
                                       student.keep_layers: distill)
    out_dir/students/distilled/        distilled student                          (distill)
    out_dir/artifacts/<name>/          exported artifacts with manifest.json      (export)
    out_dir/eval/eval.{json,md,png}    quality of every model                     (eval)
    out_dir/bench/                     bench reports                              (bench)
    out_dir/report/comparison.{json,md,png}  the final table (eval + bench)

A stage is skipped when ``state.json`` marks it done with the same settings fingerprint; a stage
whose settings (or an earlier stage's) changed runs again, and so do the stages after it. A rerun
after a failure or a kill continues with the first unfinished stage, and inside it each library
function resumes what it can (generate: records already written; distill: the newest checkpoint;
eval: models already scored). ``--from-stage S`` reruns S and everything after it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgedistill.atomic import atomic_write_json
from edgedistill.config import from_dict, load_yaml, registered, require
from edgedistill.errors import ConfigError, EdgeDistillError, did_you_mean
from edgedistill.registry import Registry

# The stages a recipe may name, in the order they run; each is registered below (@stage).
STAGES = ("generate", "prune", "distill", "export", "eval", "bench")
STATE_FILE = "state.json"


@dataclass
class StudentSpec:
    """The student: an existing model, a layer-pruned copy of the teacher, or one built by the prune
    stage (depth, width and vocabulary; PruneConfig settings except teacher/data/out/task)."""

    path: str | None = field(default=None, metadata={"help": "A Hugging Face directory or .gguf file."})
    keep_layers: list[int] | None = field(default=None, metadata={
        "help": "Teacher blocks kept by layer pruning, e.g. [0, 3, 6, 9, 12, 15] (instead of path)."})
    prune: dict | None = field(default=None, metadata={
        "help": "Settings of the prune stage, e.g. {num_layers: 6, hidden_size: 512, vocab: data}."})

    def __post_init__(self):
        given = [x for x in (self.path, self.keep_layers, self.prune) if x is not None]
        require(len(given) == 1, "student", "give exactly one of path or keep_layers (or prune: {...})")
        require(self.prune is None or isinstance(self.prune, dict), "student.prune", "must be a mapping of settings")
        if self.keep_layers is not None:
            require(isinstance(self.keep_layers, list) and all(isinstance(i, int) and i >= 0 for i in self.keep_layers),
                    "student.keep_layers", "must be a list of non-negative layer indices")


@dataclass
class DataSpec:
    train: str = field(default="", metadata={"help": "Prompts the teacher answers (training data)."})
    test: str | None = field(default=None, metadata={"help": "Held-out records with references, for eval."})

    def __post_init__(self):
        require(bool(self.train), "data.train", "give the training prompts file")


@dataclass
class Recipe:
    """One YAML file describing a whole distillation run."""

    teacher: str = field(metadata={"help": "Teacher: HF directory, .gguf file or package:NAME (packaged model)."})
    student: StudentSpec = field(metadata={"help": "Student: {path: ...} or {keep_layers: [...]}."})
    data: DataSpec = field(metadata={"help": "{train: prompts.jsonl, test: heldout.jsonl}."})
    task: str = field(default="conversation", metadata={"help": "Task of the data (edgedistill.tasks)."})
    out_dir: str = field(default="runs/recipe", metadata={
        "help": "Where every stage writes (relative paths: to the current directory)."})
    name: str = field(default="", metadata={"help": "A name for logs and reports."})
    stages: list[str] = field(default_factory=lambda: list(STAGES), metadata={
        "help": f"Stages to run, in order; subset of {', '.join(STAGES)}."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for eval runtimes."})
    generate: dict = field(default_factory=dict, metadata={
        "help": "GenerateConfig settings except data/out/task (teacher: TeacherConfig extras, e.g. n_ctx)."})
    distill: dict = field(default_factory=dict, metadata={
        "help": "DistillConfig settings except student/teacher/data/out/init_from_teacher/keep_layers."})
    export: dict = field(default_factory=dict, metadata={"help": "ExportConfig settings except model/out."})
    eval: dict = field(default_factory=dict, metadata={"help": "EvalConfig settings except models/data/task/teacher/out."})
    bench: dict = field(default_factory=dict, metadata={"help": "BenchConfig settings except artifacts/out."})
    ship: str | None = field(default=None, metadata={
        "help": "The artifact that ships, which the report's headline compares with the teacher: 'format:quant' "
                "or an artifact directory name (default: the export section's first artifact)."})
    quick: dict = field(default_factory=dict, metadata={
        "help": "Overrides merged over the recipe by --quick (same keys as the recipe; out_dir defaults to "
                "<out_dir>-quick)."})

    def __post_init__(self):
        from edgedistill.tasks import TASKS

        if isinstance(self.student, str):
            self.student = StudentSpec(path=self.student)
        if isinstance(self.data, str):
            self.data = DataSpec(train=self.data)
        require(isinstance(self.student, StudentSpec), "student", "give {path: ...} or {keep_layers: [...]}")
        registered(self.task, "task", TASKS)
        for name in self.stages:
            require(name in STAGES, "stages", f"unknown stage {name!r}; {did_you_mean(str(name), STAGES)}")
        if self.student.prune is None:  # nothing to prune: the stage has no work (keep_layers prunes in distill)
            self.stages = [s for s in self.stages if s != "prune"]
        for name in ("generate", "distill", "export", "eval", "bench", "quick"):
            require(isinstance(getattr(self, name) or {}, dict), name, "must be a mapping of settings")
            setattr(self, name, dict(getattr(self, name) or {}))


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_recipe(path: str | Path, quick: bool = False) -> Recipe:
    """Read a recipe; with ``quick`` its ``quick:`` overrides are merged in first."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping (teacher:, student:, data:, ...)")
    if quick:
        overrides = data.get("quick") or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: 'quick' must be a mapping of overrides")
        if "quick" in overrides:
            raise ConfigError(f"{path}: 'quick' cannot contain 'quick'")
        base_out = data.get("out_dir", "runs/recipe")
        data = _deep_merge(data, overrides)
        data.setdefault("out_dir", base_out)
        if "out_dir" not in overrides:
            data["out_dir"] = f"{base_out}-quick"
    return from_dict(Recipe, data, where=str(path))


# --- wiring stages together -----------------------------------------------------------------------


@dataclass
class Layout:
    """Paths of every stage's output under out_dir."""

    out: Path

    @property
    def state(self) -> Path:
        return self.out / STATE_FILE

    @property
    def generated(self) -> Path:
        return self.out / "generate" / "teacher.jsonl"

    @property
    def pruned(self) -> Path:
        return self.out / "students" / "pruned"

    @property
    def distilled(self) -> Path:
        return self.out / "students" / "distilled"

    @property
    def artifacts(self) -> Path:
        return self.out / "artifacts"

    @property
    def eval(self) -> Path:
        return self.out / "eval"

    @property
    def bench(self) -> Path:
        return self.out / "bench"

    @property
    def report(self) -> Path:
        return self.out / "report"


def _settings(recipe: Recipe, section: str, derived: dict, where: str, defaults: dict | None = None) -> dict:
    """A stage's settings: ``defaults``, then the recipe's section, then the derived wiring (setting a
    wired key in the section is an error)."""
    own = getattr(recipe, section)
    clash = sorted(k for k in own if k in derived and not isinstance(derived[k], dict))
    if clash:
        raise ConfigError(f"{where}: {section}.{', '.join(clash)} is set by the recipe itself (from teacher / "
                          f"student / data / out_dir); remove it from the {section} section")
    return _deep_merge(_deep_merge(defaults or {}, derived), own)


def _prune_settings(recipe: Recipe, where: str, teacher_path: str, layout: Layout) -> dict:
    """The prune stage's settings: student.prune plus the wiring (calibration data: the teacher's
    answers when generate runs, else the training prompts)."""
    own = recipe.student.prune or {}
    derived = {"teacher": teacher_path, "out": str(layout.pruned), "task": recipe.task,
               "data": str(layout.generated) if "generate" in recipe.stages else recipe.data.train,
               "overwrite": True}  # students/pruned is the recipe's own directory
    clash = sorted(k for k in own if k in derived)
    if clash:
        raise ConfigError(f"{where}: student.prune.{', '.join(clash)} is set by the recipe itself; remove it")
    return {**derived, **own}


@dataclass
class Stage:
    """One step of a recipe: its name, the stages whose outputs it reads (``needs``), its settings class
    and library function ("module:attr", imported only when the stage is used), how it runs inside a
    recipe (``run(plan, log) -> outputs``) and the keys of the outputs it records in state.json."""

    name: str
    settings: str
    function: str
    run: Callable[[Plan, Callable[[str], None]], dict]
    needs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def _load(self, ref: str):
        module, _, attr = ref.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise EdgeDistillError(f"stage {self.name!r} is not available in this installation: {exc}") from None

    def settings_class(self) -> type:
        return self._load(self.settings)

    def library_function(self) -> Callable:
        return self._load(self.function)


STAGE_REGISTRY: Registry[Stage] = Registry("stage")


def stage(name: str, settings: str, function: str, needs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()):
    """Register the decorated ``run(plan, log)`` as the recipe stage ``name``."""

    def register(run: Callable) -> Callable:
        STAGE_REGISTRY.register(name, Stage(name, settings, function, run, needs, outputs))
        return run

    return register


def _library(name: str) -> Callable:
    """The library function of stage ``name`` (imported now)."""
    return STAGE_REGISTRY.get(name).library_function()


class Plan:
    """The settings of every stage of a recipe, built (and so validated) before anything runs."""

    def __init__(self, recipe: Recipe, recipe_path: Path, teacher_path: str):
        self.recipe = recipe
        self.where = str(recipe_path)
        self.layout = Layout(Path(recipe.out_dir))
        self.teacher = teacher_path
        L = self.layout
        pruned = recipe.student.keep_layers is not None or recipe.student.prune is not None
        self.student_before = str(L.pruned) if pruned else recipe.student.path
        self.settings: dict[str, dict] = {}
        self.settings["generate"] = _settings(recipe, "generate", {
            "data": recipe.data.train, "out": str(L.generated), "task": recipe.task,
            "teacher": {"path": teacher_path},
        }, self.where)
        self.settings["prune"] = _prune_settings(recipe, self.where, teacher_path, L)
        self.settings["distill"] = _settings(recipe, "distill", {
            "student": self.student_before, "teacher": teacher_path, "data": str(L.generated),
            "out": str(L.distilled),
        }, self.where, defaults={"resume": True})
        # the distillation data calibrates the data-aware quantizers (imatrix); `calibration_data: null` opts out
        self.settings["export"] = _settings(recipe, "export", {"model": str(L.distilled),
                                                               "out_dir": str(L.artifacts)},
                                            self.where, defaults={"overwrite": True,
                                                                  "calibration_data": str(L.generated)})
        self.settings["bench"] = _settings(recipe, "bench", {"out": str(L.bench)}, self.where)
        self.settings["eval"] = _settings(recipe, "eval", {
            "data": recipe.data.test or "", "task": recipe.task, "teacher": teacher_path, "out": str(L.eval),
            "threads": recipe.threads,
        }, self.where)
        if "eval" in recipe.stages:
            require(bool(recipe.data.test), "data.test", "the eval stage needs held-out records (data.test)")

    def config(self, stage: str, **late: Any):
        """Build the stage's settings dataclass (``late``: inputs known only after earlier stages ran)."""
        cls = STAGE_REGISTRY.get(stage).settings_class()
        values = dict(self.settings[stage])
        values.update(late)
        return from_dict(cls, values, where=f"{self.where} [{stage}]")

    def validate(self) -> None:
        """Build every stage's settings now, so a typo fails in a second, not after an hour of training."""
        placeholders = {"export": {}, "eval": {"models": [self.student_before or "student"]},
                        "bench": {"artifacts": [str(self.layout.artifacts)]}}
        for stage in self.recipe.stages:
            self.config(stage, **placeholders.get(stage, {}))

    def fingerprint(self, stage: str, upstream: str) -> str:
        """Settings of this stage + the previous stage's fingerprint (so a change reruns what follows).
        The student only matters from distill on: changing it keeps the teacher's generated data."""
        student = None if stage == "generate" else [self.student_before, self.recipe.student.keep_layers]
        if student is not None and self.recipe.student.prune is not None:
            student.append(self.settings["prune"])
        blob = json.dumps([stage, self.settings[stage], self.teacher, student, upstream], sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- state ----------------------------------------------------------------------------------------


def read_state(path: Path) -> dict:
    if not path.exists():
        return {"stages": {}}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise EdgeDistillError(f"{path} is corrupt", hint="delete it to rerun every stage") from None
    state.setdefault("stages", {})
    return state


@dataclass
class RunSummary:
    out_dir: str
    stages_run: list[str]
    stages_skipped: list[str]
    seconds: float
    table_markdown: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    headline: str | None = None

    def lines(self) -> list[str]:
        out = [f"recipe finished in {self.seconds / 60:.1f} min; ran {', '.join(self.stages_run) or 'nothing'}"
               + (f"; already done: {', '.join(self.stages_skipped)}" if self.stages_skipped else "")]
        if self.table_markdown:
            out += ["", self.table_markdown]
        out += [f"{k}: {v}" for k, v in self.files.items()]
        out += [f"note: {n}" for n in self.notices]
        if self.headline:
            out += ["", self.headline]
        return out


def run_recipe(path: str | Path, quick: bool = False, from_stage: str | None = None,
               log: Callable[[str], None] = print) -> RunSummary:
    """Run the recipe's stages in order, skipping those already finished with the same settings."""
    from edgedistill.packaged_models import is_packaged, notice_for, resolve_model_arg

    started = time.perf_counter()
    path = Path(path)
    recipe = load_recipe(path, quick=quick)
    if from_stage is not None and from_stage not in recipe.stages:
        raise ConfigError(f"--from-stage {from_stage!r} is not a stage of this recipe; its stages: "
                          f"{', '.join(recipe.stages)}")
    notices = [notice_for(recipe.teacher)] if is_packaged(recipe.teacher) and notice_for(recipe.teacher) else []
    teacher = resolve_model_arg(recipe.teacher, log=log)
    plan = Plan(recipe, path, teacher)
    plan.validate()
    L = plan.layout
    L.out.mkdir(parents=True, exist_ok=True)
    state = read_state(L.state)
    state["recipe"] = str(path)
    state["quick"] = quick
    ran, skipped = [], []
    upstream = ""
    rerun = False
    for stage in recipe.stages:
        fp = plan.fingerprint(stage, upstream)
        upstream = fp
        prev = state["stages"].get(stage, {})
        if from_stage == stage:
            rerun = True
        if not rerun and prev.get("status") == "done" and prev.get("fingerprint") == fp:
            log(f"[{stage}] already done ({prev.get('seconds', 0):.0f} s); skipping")
            skipped.append(stage)
            continue
        if prev.get("status") == "done" and prev.get("fingerprint") != fp and not rerun:
            log(f"[{stage}] settings changed since it last ran; running it and the stages after it again")
        rerun = True  # every later stage runs too
        log(f"[{stage}] starting")
        state["stages"][stage] = {"status": "running", "fingerprint": fp, "started_unix": time.time()}
        atomic_write_json(L.state, state)
        t0 = time.perf_counter()
        try:
            outputs = STAGE_REGISTRY.get(stage).run(plan, log)
        except BaseException as exc:  # record why it stopped, so state.json never claims "running" after
            failed = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            state["stages"][stage].update(status=failed, error=getattr(exc, "message", None) or repr(exc),
                                          seconds=round(time.perf_counter() - t0, 1), finished_unix=time.time())
            atomic_write_json(L.state, state)
            raise
        seconds = time.perf_counter() - t0
        state["stages"][stage] = {"status": "done", "fingerprint": fp, "seconds": round(seconds, 1),
                                  "finished_unix": time.time(), "outputs": outputs}
        atomic_write_json(L.state, state)
        log(f"[{stage}] done in {seconds:.0f} s")
        ran.append(stage)
    summary = RunSummary(out_dir=str(L.out), stages_run=ran, stages_skipped=skipped,
                         seconds=time.perf_counter() - started, notices=notices)
    _final_report(plan, state, summary)
    state["last_run_seconds"] = round(summary.seconds, 1)
    atomic_write_json(L.state, state)
    return summary


# --- the stages -----------------------------------------------------------------------------------


def _need(path: Path, stage: str, made_by: str) -> None:
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        raise EdgeDistillError(
            f"stage {stage!r} needs {path}, which stage {made_by!r} writes, but it is missing",
            hint=f"run the recipe again with --from-stage {made_by} (or without --from-stage)",
        )


@stage("generate", "edgedistill.generate:GenerateConfig", "edgedistill.generate:generate", outputs=("data",))
def _run_generate(plan: Plan, log) -> dict:
    cfg = plan.config("generate")
    summary = _library("generate")(cfg)
    for line in summary.lines() if hasattr(summary, "lines") else [str(summary)]:
        log(f"  {line}")
    return {"data": cfg.out}


@stage("prune", "edgedistill.prune:PruneConfig", "edgedistill.prune:prune", needs=("generate",),
       outputs=("student", "report"))
def _run_prune(plan: Plan, log) -> dict:
    if "generate" in plan.recipe.stages:
        _need(plan.layout.generated, "prune", "generate")
    cfg = plan.config("prune")
    report = _library("prune")(cfg, log=lambda s: log(f"  {s}"))
    for line in report.lines():
        log(f"  {line}")
    return {"student": cfg.out, "report": str(plan.layout.pruned / "prune.json")}


@stage("distill", "edgedistill.distill.config:DistillConfig", "edgedistill.distill:distill",
       needs=("generate", "prune"), outputs=("student_before", "student"))
def _run_distill(plan: Plan, log) -> dict:
    L = plan.layout
    _need(L.generated, "distill", "generate")
    keep = plan.recipe.student.keep_layers
    if plan.recipe.student.prune is not None:
        _need(L.pruned / "config.json", "distill", "prune")
    marker = L.pruned.with_name("pruned.json")  # which teacher / layers the pruned copy was made from
    wanted = {"teacher": plan.teacher, "keep_layers": keep}
    have = json.loads(marker.read_text()) if marker.exists() else None
    if keep is not None and (not (L.pruned / "config.json").exists() or have != wanted):
        from edgedistill.distill.student import prune_layers

        log(f"  pruning the teacher to layers {keep} -> {L.pruned}")
        prune_layers(plan.teacher, keep, L.pruned)
        atomic_write_json(marker, wanted)
    cfg = plan.config("distill", overwrite=True)  # students/distilled is the recipe's own directory
    summary = _library("distill")(cfg)
    for line in (summary.describe() if hasattr(summary, "describe") else str(summary)).splitlines():
        log(f"  {line}")
    return {"student_before": plan.student_before, "student": cfg.out}


@stage("export", "edgedistill.export:ExportConfig", "edgedistill.export:export", needs=("distill",),
       outputs=("artifacts",))
def _run_export(plan: Plan, log) -> dict:
    L = plan.layout
    _need(L.distilled / "config.json", "export", "distill")
    cfg = plan.config("export")
    result = _library("export")(cfg)
    if hasattr(result, "summary"):
        for line in result.summary().splitlines():
            log(f"  {line}")
    return {"artifacts": [str(p) for p in artifact_dirs(L.artifacts)]}


def artifact_dirs(root: Path) -> list[Path]:
    """Finished artifact directories (with a manifest) under ``root``, sorted by name."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and not p.name.endswith(".failed") and (p / "manifest.json").exists())


def _eval_models(plan: Plan) -> tuple[list[str], list[str]]:
    L = plan.layout
    models, names = [], []
    if "distill" in plan.recipe.stages:
        if plan.student_before:
            models.append(plan.student_before)
            names.append("student before distillation")
        _need(L.distilled / "config.json", "eval", "distill")
        models.append(str(L.distilled))
        names.append("distilled student")
    elif plan.student_before:
        models.append(plan.student_before)
        names.append("student")
    if "export" in plan.recipe.stages:
        arts = artifact_dirs(L.artifacts)
        if not arts:
            raise EdgeDistillError(f"stage 'eval' needs the artifacts in {L.artifacts}, which stage 'export' "
                                   "writes, but there are none", hint="rerun with --from-stage export")
        for a in arts:
            models.append(str(a))
            names.append(a.name)
    return models, names


@stage("eval", "edgedistill.eval:EvalConfig", "edgedistill.eval:evaluate", needs=("distill", "export"),
       outputs=("report", "markdown"))
def _run_eval(plan: Plan, log) -> dict:
    models, names = _eval_models(plan)
    cfg = plan.config("eval", models=models, names=names)
    report = _library("eval")(cfg)
    return {"report": report.files.get("json"), "markdown": report.files.get("markdown")}


@stage("bench", "edgedistill.bench:BenchConfig", "edgedistill.bench:bench", needs=("export",), outputs=("reports",))
def _run_bench(plan: Plan, log) -> dict:
    L = plan.layout
    arts = [str(a) for a in artifact_dirs(L.artifacts)] if "export" in plan.recipe.stages else []
    if not arts:
        raise EdgeDistillError(f"stage 'bench' needs exported artifacts in {L.artifacts}; there are none",
                               hint="rerun with --from-stage export")
    # The teacher's own file too, with the same targets, threads and prompt: the report's student-vs-teacher
    # speed then comes from one method (eval's light timings differ per runtime).
    if Path(plan.teacher).exists():
        arts.append(plan.teacher)
    cfg = plan.config("bench", artifacts=arts)
    report = _library("bench")(cfg)
    if hasattr(report, "summary"):
        for line in report.summary().splitlines():
            log(f"  {line}")
    results = L.bench / "results.jsonl"
    return {"reports": [str(results)] if results.exists() else []}


def shipped_artifact(plan: Plan) -> Path | None:
    """The artifact that ships: the recipe's ``ship`` ('format:quant' or a directory name), else the export
    section's first artifact, else (export chose by target) the only one written."""
    arts = artifact_dirs(plan.layout.artifacts)
    want = plan.recipe.ship
    if want is None:
        planned = plan.config("export").planned() if "export" in plan.recipe.stages else []
        if not planned:
            return arts[0] if len(arts) == 1 else None
        want = ":".join(planned[0])
    for a in arts:
        try:
            manifest = json.loads((a / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if want in (a.name, f"{manifest.get('format')}:{manifest.get('quant')}"):
            return a
    return None


def _final_report(plan: Plan, state: dict, summary: RunSummary) -> None:
    """The comparison table of eval, with bench figures when bench ran: report/comparison.*"""
    from edgedistill.eval.evaluate import EvalReport
    from edgedistill.eval.table import apply_bench, headline, markdown_table, write_report

    L = plan.layout
    eval_json = L.eval / "eval.json"
    if state["stages"].get("eval", {}).get("status") != "done" or not eval_json.exists():
        summary.files["results"] = str(L.out)
        return
    data = json.loads(eval_json.read_text())
    fields = {f.name for f in dataclasses.fields(EvalReport)}
    report = EvalReport(**{k: v for k, v in data.items() if k in fields})
    bench_files = state["stages"].get("bench", {}).get("outputs", {}).get("reports") or []
    bench_files = [f for f in bench_files if Path(f).exists()]
    if bench_files:
        try:
            apply_bench(report, bench_files)
        except EdgeDistillError as exc:  # the table is still useful without bench figures
            report.notes.append(f"bench figures not merged: {exc.message}")
    shipped = shipped_artifact(plan)
    if shipped is None and "export" in plan.recipe.stages:
        report.notes.append(f"no headline: no exported artifact is {plan.recipe.ship or 'the first export artifact'!r}")
    elif shipped is not None:
        report.headline, why_not = headline(report, shipped.name)
        if why_not:
            report.notes.append(why_not)
        else:
            report.notes.append(f"headline: the shipped artifact {shipped.name} (recipe `ship:`, default the first "
                                "export artifact) against the teacher; decode speed from bench")
        summary.headline = report.headline
    files = write_report(report, L.report, stem="comparison")
    summary.table_markdown = markdown_table(report)
    summary.files.update({"comparison table": files["markdown"], "comparison JSON": files["json"],
                          "chart": files["chart"], "artifacts": str(L.artifacts),
                          "distilled student": str(L.distilled), "eval details": str(L.eval),
                          "bench reports": str(L.bench), "state": str(L.state)})

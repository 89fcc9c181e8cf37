"""`edgedistill eval`: score models and exported artifacts on a test set, each through its own runtime.

Every model (a Hugging Face directory, a ``.gguf`` file, an export directory) is opened with
:func:`edgedistill.runtimes.open_runtime`, so a quantized artifact is scored by exactly the code that
scores the PyTorch model it came from. For each test record:

1. The prompt is formatted once, identically for all models: the chat template of the first model
   (teacher first) whose directory or GGUF file carries one, else the plain message text.
2. Greedy decoding (``max_new_tokens``) gives the output scored by the task metric (accuracy for
   answer tasks, ROUGE-L / BLEU / chrF for text tasks) and, against the teacher's greedy output,
   ``teacher_rouge_l``. Time to first token and decode speed are measured on the way.
3. One forward pass over prompt + reference gives the perplexity of the reference given the prompt
   (prompt tokens masked) and the next-token top-1 ids used for ``top1_agreement`` with the teacher.
   Runtimes that return last-position logits only either skip this (``n/a``, the default) or, with
   ``last_logits_perplexity: incremental``, call the runtime once per reference token (slow: O(T^2)).

Per-model results are cached under ``<out>/models/`` keyed by the model's files and the settings, so an
interrupted eval resumes with the next model. The summary (``eval.json``, ``eval.md``, ``chart.png``) is
written atomically.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedistill.artifacts import Artifact, detect_artifact, verify_manifest_hashes
from edgedistill.atomic import atomic_write_json, check_writable_dir
from edgedistill.config import registered, require
from edgedistill.errors import DataError, EdgeDistillError
from edgedistill.eval import metrics as M
from edgedistill.eval.decoding import generate_outputs
from edgedistill.stopping import cut_at_stop
from edgedistill.tasks import render_plain
from edgedistill.vocab_map import artifact_vocab_map


@dataclass
class EvalConfig:
    """Settings of `edgedistill eval` (and the `eval:` section of a recipe)."""

    models: list[str] = field(default_factory=list, metadata={
        "help": "Models to score: Hugging Face directories, .gguf files or `edgedistill export` directories."})
    data: str = field(default="", metadata={"help": "Test set (JSONL/JSON/CSV/Parquet) with a reference per record."})
    task: str = field(default="conversation", metadata={"help": "Task (edgedistill.tasks): qa, nli, math, "
                                                                  "summarization or conversation."})
    teacher: str | None = field(default=None, metadata={
        "help": "Teacher model: scored first; retention and agreement are relative to it."})
    names: list[str] | None = field(default=None, metadata={
        "help": "Display names of `models`, same order (default: directory / file names)."})
    teacher_name: str = field(default="teacher", metadata={"help": "Display name of the teacher."})
    out: str | None = field(default=None, metadata={
        "help": "Directory for eval.json, eval.md, chart.png and per-model outputs (none: print only)."})
    max_records: int | None = field(default=None, metadata={"help": "Score only the first N records."})
    max_new_tokens: int = field(default=48, metadata={"help": "Greedy tokens generated per record."})
    max_reference_tokens: int = field(default=128, metadata={
        "help": "Reference tokens scored per record for perplexity / agreement (longer ones are cut)."})
    stop: list[str] | None = field(default=None, metadata={
        "help": "Stop sequences: an output ends before the first one (None: the task's default; [] none)."})
    plain_cue: str | None = field(default=None, metadata={
        "help": "For models without a chat template: text after the prompt that opens the answer, as the "
                "teacher's answers were generated after (None: the task's default; '' none)."})
    batch_size: int = field(default=8, metadata={
        "help": "Records decoded together by PyTorch models (left-padded greedy, checked equal to one at a "
                "time); 1 decodes one record at a time and times it."})
    perplexity: bool = field(default=True, metadata={
        "help": "Score reference perplexity and teacher top-1 agreement (one forward pass per record)."})
    last_logits_perplexity: str = field(default="skip", metadata={
        "help": "For runtimes returning last-position logits only: skip (report n/a) or incremental "
                "(one call per reference token).", "choices": ("skip", "incremental")})
    threads: int | None = field(default=None, metadata={"help": "CPU threads per runtime (default: runtime's)."})
    bench: list[str] | None = field(default=None, metadata={
        "help": "Bench report JSON files whose latency / memory replace the light measurements of eval."})
    prompt_field: str | None = field(default=None, metadata={"help": "Column holding the prompt text."})
    reference_field: str | None = field(default=None, metadata={"help": "Column holding the reference."})
    verify_hashes: bool = field(default=True, metadata={"help": "Check each export artifact's files against its "
                                                                "manifest's sha256 sums before scoring."})

    def __post_init__(self):
        from edgedistill.tasks import TASKS

        if isinstance(self.models, str):
            self.models = [self.models]
        require(bool(self.models) or self.teacher is not None, "models", "give at least one model to score")
        require(bool(self.data), "data", "give the test set (--data)")
        registered(self.task, "task", TASKS)
        require(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        require(self.max_reference_tokens >= 1, "max_reference_tokens", "must be >= 1")
        require(self.max_records is None or self.max_records >= 1, "max_records", "must be >= 1 when set")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(TASKS.get(self.task).stop) if self.stop is None else list(self.stop)
        if self.plain_cue is None:
            self.plain_cue = TASKS.get(self.task).plain_cue
        require(isinstance(self.plain_cue, str), "plain_cue", f"must be a string, got {self.plain_cue!r}")
        require(all(isinstance(x, str) and x for x in self.stop), "stop", "stop sequences must be non-empty strings")
        require(self.last_logits_perplexity in ("skip", "incremental"), "last_logits_perplexity",
                f"{self.last_logits_perplexity!r} is not one of skip, incremental")
        if self.names is not None:
            require(len(self.names) == len(self.models), "names",
                    f"gives {len(self.names)} names for {len(self.models)} models")
            require(len(set(self.names) | {self.teacher_name}) == len(self.names) + 1, "names",
                    "names must be unique and differ from teacher_name")


@dataclass
class EvalReport:
    task: str
    data: str
    records: int
    primary_metric: str
    metrics: list[str]
    teacher: str | None
    rows: list[dict]
    notes: list[str]
    files: dict[str, str] = field(default_factory=dict)
    #: one-line student-vs-teacher summary (set by the recipe's report; eval/table.py ``headline``)
    headline: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# --- prompt formatting ----------------------------------------------------------------------------


class PromptFormat:
    """Turns a record's chat messages into the prompt text every model gets."""

    def __init__(self, source: str | None, render, bos_text: str | None):
        self.source = source  # where the chat template came from (None: plain text)
        self._render = render
        self.bos_text = bos_text

    def text(self, messages: list[dict], plain_cue: str = "") -> str:
        """``plain_cue`` opens the answer when the prompt is plain text; a chat template never sees it."""
        if self._render is None:
            return render_plain(messages, plain_cue)
        return self._render(messages)

    def add_special_tokens(self, prompt_text: str) -> bool:
        """The template already wrote BOS: do not let the tokenizer add a second one."""
        return not (self.bos_text and prompt_text.startswith(self.bos_text))


def find_prompt_format(paths: list[str]) -> PromptFormat:
    for p in paths:
        try:
            art = detect_artifact(p)
        except EdgeDistillError:
            continue
        fmt = _format_from_artifact(art)
        if fmt is not None:
            return fmt
    return PromptFormat(None, None, None)


def _format_from_artifact(art: Artifact) -> PromptFormat | None:
    if art.format == "gguf":
        return _format_from_gguf(art.main_file)
    d = art.path
    has_template = (d / "chat_template.jinja").exists() or (d / "chat_template.json").exists()
    cfg = d / "tokenizer_config.json"
    if cfg.exists() and not has_template:
        try:
            has_template = bool(json.loads(cfg.read_text()).get("chat_template"))
        except json.JSONDecodeError:
            return None
    if not has_template:
        return None
    from edgedistill.models import load_tokenizer

    tok = load_tokenizer(d)

    def render(messages):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return PromptFormat(str(d), render, tok.bos_token)


def _format_from_gguf(path: Path) -> PromptFormat | None:
    """The chat template stored in a GGUF file, rendered with jinja2 as transformers does."""
    from gguf import Keys

    from edgedistill.gguf_header import read_gguf_header

    header = read_gguf_header(path, with_tensors=False)
    template = header.get(Keys.Tokenizer.CHAT_TEMPLATE)
    if not template:
        return None
    tokens = header.get(Keys.Tokenizer.LIST)

    def token_text(key):
        idx = header.get(key)
        if idx is None or tokens is None:
            return None
        return tokens[int(idx)]

    bos, eos = token_text(Keys.Tokenizer.BOS_ID), token_text(Keys.Tokenizer.EOS_ID)
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise EdgeDistillError(f"chat template of {path}: {msg}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    compiled = env.from_string(template)

    def render(messages):
        return compiled.render(messages=messages, add_generation_prompt=True, bos_token=bos or "",
                               eos_token=eos or "", raise_exception=raise_exception)

    return PromptFormat(str(path), render, bos)


# --- test set -------------------------------------------------------------------------------------


def load_test_set(cfg: EvalConfig) -> list[dict]:
    """Records with the fields the task needs; a clear error naming the fields that exist otherwise."""
    from edgedistill.data import load_records
    from edgedistill.tasks import TASKS

    task = TASKS.get(cfg.task)
    records = load_records(cfg.data, prompt_field=cfg.prompt_field, reference_field=cfg.reference_field)
    needed = set(task.required_fields) | {"reference"}  # every metric of eval compares with a reference
    for i, rec in enumerate(records):
        missing = sorted(f for f in needed if not rec.get(f))
        if missing:
            raw_fields = _raw_fields(cfg.data, i)
            raise DataError(
                f"{cfg.data}: record {i + 1} (id {rec['id']!r}) has no {', '.join(map(repr, missing))} field, "
                f"which task {cfg.task!r} needs to be scored; its fields are: {raw_fields}",
                hint="name the column with --reference-field, or choose the task that matches the data",
            )
    if cfg.max_records:
        records = records[: cfg.max_records]
    return records


def _raw_fields(path: str, index: int) -> str:
    """Field names of the index-th record as stored (JSONL only; else the normalised ones)."""
    p = Path(path)
    if p.suffix == ".jsonl":
        rows = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            return ", ".join(sorted(json.loads(rows[index]))) or "(none)"
        except (IndexError, json.JSONDecodeError):
            pass
    return "(unknown)"


# --- measuring ------------------------------------------------------------------------------------


class PeakMemory:
    """Samples this process's resident memory in a thread; ``peak_mb`` is the rise over the start."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = self._proc.memory_info().rss
        self.peak_rss = self.start_rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self._interval):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak_rss - self.start_rss) / 2**20


def count_parameters(art: Artifact) -> int | None:
    """Weights in the model (for quantized artifacts: of the model they hold)."""
    for key in ("parameters", "num_parameters"):
        if isinstance(art.manifest.get(key), int):
            return art.manifest[key]
    source = art.manifest.get("source")
    if isinstance(source, dict) and isinstance(source.get("param_count"), int):  # written by export
        return source["param_count"]
    if art.format == "hf":
        return _safetensors_parameters(art.path)
    if art.format == "gguf":
        from edgedistill.gguf_header import read_gguf_header

        return sum(t.n_elements for t in read_gguf_header(art.main_file, max_array=0).tensors)
    if isinstance(source, dict) and source.get("model_dir") and Path(source["model_dir"]).is_dir():
        return _safetensors_parameters(Path(source["model_dir"]))  # ONNX: count the source model's weights
    return None


def _safetensors_parameters(d: Path) -> int | None:
    files = sorted(d.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for s in info["shape"]:
                count *= s
            total += count
    return total


def _fingerprint(art: Artifact, cfg: EvalConfig, records: list[dict], prompt_source: str | None) -> str:
    files = [art.main_file] if art.path.is_file() else sorted(p for p in art.path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(json.dumps([cfg.task, cfg.max_new_tokens, cfg.stop, cfg.plain_cue, cfg.max_reference_tokens, cfg.perplexity,
                         cfg.last_logits_perplexity, prompt_source, [r["id"] for r in records],
                         [r.get("reference") for r in records]]).encode())
    return h.hexdigest()[:16]


# --- scoring one model ----------------------------------------------------------------------------


def score_model(path: str, name: str, records: list[dict], prompts: list[str], fmt: PromptFormat,
                cfg: EvalConfig) -> dict:
    """Greedy outputs, reference NLL / top-1 ids, timings and memory of one model on every record."""
    from edgedistill.runtimes import open_runtime
    from edgedistill.tasks import TASKS

    task = TASKS.get(cfg.task)
    art = detect_artifact(path)
    vmap = artifact_vocab_map(art.path)  # a vocabulary-pruned student: agreement in the teacher's ids
    per_record = []
    ppl_mode = "full"
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        runtime = open_runtime(art, threads=cfg.threads)
        load_s = time.perf_counter() - t0
        if not runtime.full_logits:
            ppl_mode = "incremental" if cfg.last_logits_perplexity == "incremental" else "n/a"
        try:
            all_ids = [runtime.tokenize(p, add_special_tokens=fmt.add_special_tokens(p)) for p in prompts]
            decoded = generate_outputs(runtime, all_ids, cfg, desc=f"eval {name}")
            for rec, prompt_ids, out_ids in zip(records, all_ids, decoded.outputs):
                output = cut_at_stop(runtime.detokenize(out_ids), cfg.stop)[0].strip()
                item = {"id": rec["id"], "output": output, "answer": task.extract_answer(output),
                        "reference": task.normalize_reference(rec.get("reference"))}
                if cfg.perplexity and ppl_mode != "n/a":
                    ref_ids = runtime.tokenize(rec["reference"], add_special_tokens=False)[: cfg.max_reference_tokens]
                    item.update(_reference_scores(runtime, prompt_ids, ref_ids, ppl_mode, vmap))
                per_record.append(item)
        finally:
            runtime.close()
    ttfts, decode_tokens, decode_seconds = decoded.ttfts, decoded.decode_tokens, decoded.decode_seconds
    size = art.size_bytes()
    return {
        "name": name,
        "path": str(art.path),
        "format": art.format,
        "runtime": art.runtime,
        "parameters": count_parameters(art),
        "size_bytes": size,
        "load_seconds": round(load_s, 3),
        "peak_memory_mb": round(mem.peak_mb, 1),
        "ttft_ms": round(1000 * statistics.median(ttfts), 2) if ttfts else None,
        "decode_tokens_per_s": round(decode_tokens / decode_seconds, 2) if decode_seconds > 0 else None,
        "speed_source": "eval (light)" if not decoded.batched else "n/a (eval decoded in batches)",
        "batched_redone": decoded.redone if decoded.batched else None,  # rows failing the argmax check
        "perplexity_mode": ppl_mode if cfg.perplexity else "off",
        "records": per_record,
    }


def _reference_scores(runtime, prompt_ids: list[int], ref_ids: list[int], mode: str, vmap=None) -> dict:
    if not ref_ids:
        return {"nll": [], "top1": [], "ids_hash": None}
    import numpy as np

    full = prompt_ids + ref_ids
    if mode == "full":
        logits = runtime.logits(full)
        rows = logits[len(prompt_ids) - 1: len(full) - 1]
    else:  # one call per position: the runtime returns the last position only
        rows = np.stack([runtime.logits(full[:i])[-1] for i in range(len(prompt_ids), len(full))])
    nll = M.reference_nll(rows, ref_ids)
    top1 = [int(i) for i in rows.argmax(-1)]
    if vmap is not None:  # compared with the teacher in the teacher's ids
        ref_ids, top1 = [vmap.student_to_teacher[i] for i in ref_ids], [vmap.student_to_teacher[i] for i in top1]
    # Agreement compares predictions position by position over the reference, so what must match the
    # teacher's is the reference's tokens; every model gets the same prompt text, and a vocabulary-pruned
    # student may split an unseen word of the prompt differently without shifting the reference.
    ids_hash = hashlib.sha256(json.dumps(ref_ids).encode()).hexdigest()[:16]
    return {"nll": [round(float(x), 5) for x in nll], "top1": top1, "ids_hash": ids_hash}


# --- summarising ----------------------------------------------------------------------------------


def summarise(result: dict, task_metrics: list[str], teacher: dict | None) -> dict:
    """Corpus metrics of one model's per-record results (agreement against ``teacher``'s)."""
    recs = result["records"]
    scores: dict[str, float | None] = {}
    outputs = [r["output"] for r in recs]
    refs = [r["reference"] or "" for r in recs]
    for m in task_metrics:
        if m == "accuracy":
            scores[m] = M.accuracy([r["answer"] for r in recs], [r["reference"] for r in recs])
        elif m == "rouge_l":
            scores[m] = M.rouge_l(outputs, refs)
        elif m == "bleu":
            scores[m] = M.bleu(outputs, refs)
        elif m == "chrf":
            scores[m] = M.chrf(outputs, refs)
    ppl = M.PerplexityAccumulator()
    for r in recs:
        if "nll" in r:
            ppl.add(r["nll"])
    scores["perplexity"] = ppl.value
    scores["top1_agreement"] = None
    scores["teacher_rouge_l"] = None
    notes = []
    if teacher is not None and teacher is not result:
        t_by_id = {r["id"]: r for r in teacher["records"]}
        pairs = [(r, t_by_id[r["id"]]) for r in recs if r["id"] in t_by_id]
        scores["teacher_rouge_l"] = M.rouge_l([r["output"] for r, _ in pairs], [t["output"] for _, t in pairs])
        comparable = [(r["top1"], t["top1"]) for r, t in pairs
                      if r.get("ids_hash") and r.get("ids_hash") == t.get("ids_hash")]
        if comparable:
            scores["top1_agreement"] = M.top1_agreement([a for a, _ in comparable], [b for _, b in comparable])
        if pairs and any("top1" in r for r, _ in pairs) and len(comparable) < len(pairs):
            notes.append(f"top-1 agreement over {len(comparable)} of {len(pairs)} records: the others' references tokenize "
                         "differently from the teacher")
    row = {k: v for k, v in result.items() if k != "records"}
    row["scores"] = scores
    row["notes"] = notes
    return row


def add_retention(rows: list[dict], teacher_row: dict | None) -> None:
    for row in rows:
        row["retention"] = {
            m: (M.retention(v, teacher_row["scores"].get(m), m) if teacher_row is not None else None)
            for m, v in row["scores"].items()
            if m in ("accuracy", "rouge_l", "bleu", "chrf", "perplexity")
        }


def task_metrics(task_name: str) -> list[str]:
    from edgedistill.tasks import TASKS

    task = TASKS.get(task_name)
    if task.metric == "accuracy":
        return ["accuracy"]
    return ["rouge_l", "bleu", "chrf"]


def evaluate(cfg: EvalConfig) -> EvalReport:
    """Score the teacher (when given) and every model; write the reports when ``cfg.out`` is set."""
    from edgedistill.eval.table import apply_bench, write_report

    out = Path(cfg.out) if cfg.out else None
    if out is not None:  # an unwritable --out must fail now, not after every model was scored
        check_writable_dir(out)
    if cfg.verify_hashes:  # a damaged artifact is refused before anything is scored
        for path in ([cfg.teacher] if cfg.teacher else []) + list(cfg.models):
            verify_manifest_hashes(detect_artifact(path))
    records = load_test_set(cfg)
    names = cfg.names or [_default_name(p) for p in cfg.models]
    entries = ([(cfg.teacher, cfg.teacher_name)] if cfg.teacher else []) + list(zip(cfg.models, names))
    fmt = find_prompt_format([p for p, _ in entries])
    prompts = [fmt.text(_messages(rec, cfg.task), cfg.plain_cue) for rec in records]
    metric_names = task_metrics(cfg.task)
    results = []
    from tqdm import tqdm  # imported when used: `edgedistill --help` reads this module

    for path, name in tqdm(entries, desc="eval models", unit="model"):
        art = detect_artifact(path)
        fp = _fingerprint(art, cfg, records, fmt.source)
        cache = out / "models" / f"{_safe(name)}.json" if out else None
        result = None
        if cache is not None and cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("fingerprint") == fp:
                result = cached
        if result is None:
            result = score_model(path, name, records, prompts, fmt, cfg)
            result["fingerprint"] = fp
            if cache is not None:
                atomic_write_json(cache, result)
        results.append(result)
    teacher = results[0] if cfg.teacher else None
    rows = [summarise(r, metric_names, teacher) for r in results]
    teacher_row = rows[0] if cfg.teacher else None
    if teacher_row is not None:
        teacher_row["role"] = "teacher"
    add_retention(rows, teacher_row)
    notes = [f"prompts formatted with the chat template of {fmt.source}" if fmt.source
             else "no chat template found: prompts are the plain message text"
             + (f", each followed by the cue {cfg.plain_cue!r} that opens the answer" if cfg.plain_cue else "")]
    skipped = [r["name"] for r in rows if r["perplexity_mode"] == "n/a"]
    if skipped:
        notes.append(f"perplexity / top-1 agreement n/a for {', '.join(skipped)}: the runtime returns "
                     "last-position logits only (set last_logits_perplexity: incremental to compute them)")
    batched = [r["name"] for r in rows if r.get("speed_source", "").startswith("n/a (eval decoded in batches")]
    if batched:
        notes.append(f"TTFT / decode tok/s n/a for {', '.join(batched)}: eval decoded them {cfg.batch_size} records "
                     "at a time (outputs equal to one at a time); `edgedistill bench` measures speed")
    if cfg.stop:
        notes.append(f"outputs end before the first stop sequence {cfg.stop!r}")
    incremental = [r["name"] for r in rows if r["perplexity_mode"] == "incremental"]
    if incremental:
        notes.append(f"perplexity of {', '.join(incremental)} computed by one runtime call per reference token")
    notes.append("retention = score / teacher's score; for perplexity teacher_ppl / model_ppl (1.0 = as good "
                 "as the teacher)")
    notes.append("peak memory = rise of this process's resident memory while the model was loaded and scored")
    report = EvalReport(task=cfg.task, data=cfg.data, records=len(records), primary_metric=metric_names[0],
                        metrics=metric_names, teacher=cfg.teacher_name if cfg.teacher else None, rows=rows,
                        notes=notes)
    if cfg.bench:
        apply_bench(report, cfg.bench)
    if out is not None:
        write_report(report, out)
    return report


def _messages(rec: dict, task_name: str) -> list[dict]:
    from edgedistill.tasks import TASKS

    return TASKS.get(task_name).build_messages(rec)


def _default_name(path: str) -> str:
    p = Path(path)
    return p.stem if p.is_file() else p.name


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

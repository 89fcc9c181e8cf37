"""Issue #11 follow-up: what the onnx:int4 / ort-genai:int4 artifacts of a small student weigh, before
and after the fix (no float graph data file copied in, rotary tables computed at load time, a tied
embedding table quantized), with export time, decode speed and verification against PyTorch.

"before" is the code of a git revision (``--before-rev``, extracted with ``git archive`` into a temp
dir), "after" this checkout; both export through ``python -m edgedistill.cli export --no-verify`` in a
subprocess, alternating before/after (A B A B). Every artifact is then verified in-process against the
PyTorch model with this checkout's ``verify_artifact`` and timed decoding greedily with its runtime
(1 thread, alternating A B A B). The 1-minute load average is recorded beside every figure: the
machine is shared (2 cores, other engineers' jobs), so times are indicative only.

ort-genai artifacts of a Gemma 3 model with a 512-token sliding window cannot be verified through
``OrtGenaiRuntime`` (it sizes the generator to the request, below the window: "KV cache capacity (33)
must be at least local_window_size (512)", a runtime issue outside this change); here the runtime's
generator is given ``max_length >= MIN_GENAI_LENGTH`` so that the graph itself can be compared.

    PYTHONPATH=$PWD python benchmarks/onnx_artifact_size.py --student runs/quickstart/students/distilled

Writes benchmarks/results/onnx_artifact_size.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from edgedistill.export import FORMATS  # noqa: E402
from edgedistill.export.verify import build_reference, verify_artifact  # noqa: E402

OUT = Path(__file__).parent / "results" / "onnx_artifact_size.json"
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = ("onnx:int4", "ort-genai:int4")
MIN_GENAI_LENGTH = 1024
PROMPT = "The history of the printing press begins in"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def export(src: Path, student: Path, out: Path, artifact: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "export", str(student), "--name", "s",
                           "--artifact", artifact, "--out", str(out), "--no-verify", "--overwrite"],
                          env=env, capture_output=True, text=True, cwd=src)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"export {artifact} with {src} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    path = out / f"s-{artifact.replace(':', '-')}"
    files = {f.name: f.stat().st_size for f in path.iterdir() if f.is_file() and f.name != "manifest.json"}
    return {"path": str(path), "export_s": round(seconds, 1), "load_avg_1m": load(), "files": files,
            "bytes": sum(files.values()), "largest_initializers": largest_initializers(path / "model.onnx")}


def largest_initializers(graph: Path, n: int = 6) -> list[str]:
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(graph), load_external_data=False)
    rows = []
    for t in model.graph.initializer:
        size = (int({e.key: e.value for e in t.external_data}["length"]) if uses_external_data(t)
                else len(t.raw_data) or t.ByteSize())
        rows.append((size, f"{t.name} {list(t.dims)}"))
    return [f"{name}: {size / 2**20:.2f} MiB" for size, name in sorted(rows, reverse=True)[:n]]


def patch_genai_length() -> None:
    from edgedistill.runtimes.ortgenai_runtime import OrtGenaiRuntime

    original = OrtGenaiRuntime._generator
    OrtGenaiRuntime._generator = lambda self, max_length: original(self, max(max_length, MIN_GENAI_LENGTH))


def decode_speed(path: Path, n_tokens: int) -> dict:
    """Greedy decode of ``n_tokens`` after a short prompt, 1 thread; tok/s over the steps after the first."""
    from edgedistill.runtimes import open_runtime

    t0 = time.perf_counter()
    with open_runtime(path, threads=1) as rt:
        load_s = time.perf_counter() - t0
        ids = rt.tokenize(PROMPT)
        stamps = []
        for _ in rt.stream(ids, n_tokens):
            stamps.append(time.perf_counter())
    steps = len(stamps) - 1
    return {"load_s": round(load_s, 2), "decode_tok_s": round(steps / (stamps[-1] - stamps[0]), 1) if steps > 0 else None,
            "tokens": len(stamps), "load_avg_1m": load()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", required=True, help="HF model directory (e.g. the quickstart student)")
    ap.add_argument("--before-rev", default="b8e12cf", help="git revision of the code before the fix")
    ap.add_argument("--reps", type=int, default=2, help="A B rounds for export time and decode speed")
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    student = Path(args.student).resolve()
    patch_genai_length()
    with tempfile.TemporaryDirectory(prefix="onnx-size-") as tmp:
        tmp = Path(tmp)
        before_src = tmp / "src-before"
        before_src.mkdir()
        subprocess.run(f"git -C {REPO} archive {args.before_rev} | tar -x -C {before_src}", shell=True, check=True)
        sources = {"before": before_src, "after": REPO}
        rows: dict[tuple[str, str], dict] = {}
        for rep in range(args.reps):  # A B A B: export time
            for artifact in ARTIFACTS:
                for version, src in sources.items():
                    r = export(src, student, tmp / version, artifact)
                    row = rows.setdefault((version, artifact), {**r, "export_s": [], "load_avg_export": []})
                    row["export_s"].append(r["export_s"])
                    row["load_avg_export"].append(r["load_avg_1m"])
        ref = build_reference(student, threads=1)
        for (version, artifact), row in rows.items():
            fmt, quant = artifact.split(":")
            v = verify_artifact(Path(row["path"]), FORMATS.get(fmt).quants[quant], ref, threads=1)
            f = v.figures
            row["verification"] = {"passed": v.passed, "failures": v.failures, "kl_mean": f.get("kl_mean"),
                                   "greedy_match": f.get("greedy_match"), "top1": f.get("top1_agreement"),
                                   "stream": f.get("stream_consistency"), "load_avg_1m": load()}
        for rep in range(args.reps):  # A B A B: decode speed
            for artifact in ARTIFACTS:
                for version in sources:
                    row = rows[(version, artifact)]
                    row.setdefault("decode", []).append(decode_speed(Path(row["path"]), args.tokens))
    result = {"student": str(student), "before_rev": args.before_rev, "cpu_count": os.cpu_count(),
              "note": "shared 2-core machine (other engineers' jobs running): times are indicative",
              "rows": [{"version": k[0], "artifact": k[1], **{x: y for x, y in r.items() if x != "path"}}
                       for k, r in rows.items()]}
    atomic_write_json(OUT, result)
    atomic_write_text(OUT.with_suffix(".md"), to_markdown(result))
    print(to_markdown(result))


def to_markdown(result: dict) -> str:
    lines = [f"# onnx / ort-genai int4 artifact size: {result['student']} (before = {result['before_rev']})", "",
             result["note"], "",
             "| artifact | version | MiB | export s (load) | decode tok/s, 1 thread (load) | session load s | "
             "KL mean | greedy (tf) | top-1 | stream | passes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        v = r["verification"]
        exp = ", ".join(f"{s} ({la})" for s, la in zip(r["export_s"], r["load_avg_export"]))
        dec = ", ".join(f"{d['decode_tok_s']} ({d['load_avg_1m']})" for d in r["decode"])
        lds = ", ".join(str(d["load_s"]) for d in r["decode"])
        lines.append(f"| {r['artifact']} | {r['version']} | {r['bytes'] / 2**20:.1f} | {exp} | {dec} | {lds} | "
                     f"{v['kl_mean']:.3g} | {v['greedy_match']:.3f} | {v['top1']:.3f} | {v['stream']:.2f} | "
                     f"{'yes' if v['passed'] else 'NO ' + '; '.join(v['failures'])} |")
    lines += ["", "Largest initializers:", ""]
    for r in result["rows"]:
        lines.append(f"* {r['artifact']} {r['version']}: " + "; ".join(r["largest_initializers"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

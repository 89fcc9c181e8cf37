"""`edgedistill inspect ARTIFACT`: the manifest plus what the files themselves say.

The file-level part comes from the format's ``describe`` (GGUF key-values and tensor types, ONNX opset,
inputs and outputs). The files are also checked against the sizes and sha256 sums in the manifest, so
a copied or corrupted artifact is noticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.artifacts import detect_artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS
from edgedistill.export.manifest import check_files

MB = 2**20


def inspect_artifact(path: str | Path, check: bool = True) -> dict[str, Any]:
    """``{"path", "format", "manifest", "describe", "integrity"}`` for an artifact directory or file."""
    art = detect_artifact(path)
    describe: dict[str, Any] = {}
    if art.format in FORMATS:
        try:
            describe = FORMATS.get(art.format).describe(art.path if art.path.is_dir() else art.main_file)
        except EdgeDistillError:
            raise
        except Exception as exc:  # a damaged file must still show its manifest
            describe = {"error": f"could not read the files: {type(exc).__name__}: {exc}"}
    integrity = None
    if check and art.manifest.get("files") and art.path.is_dir():
        problems = check_files(art.path, art.manifest)
        integrity = {"ok": not problems, "problems": problems}
    return {
        "path": str(art.path),
        "format": art.format,
        "main_file": str(art.main_file),
        "size_bytes": art.size_bytes(),
        "manifest": art.manifest,
        "describe": describe,
        "integrity": integrity,
    }


def format_report(info: dict[str, Any]) -> str:
    """Human-readable rendering of :func:`inspect_artifact`'s result."""
    m = info["manifest"]
    lines = [f"{info['path']}", f"  format        {info['format']}" + (f" / {m['quant']}" if m.get("quant") else "")]
    lines.append(f"  size          {info['size_bytes'] / MB:.2f} MB")
    if not m:
        lines.append("  manifest      none (not written by `edgedistill export`)")
    else:
        src = m.get("source", {})
        lines += [
            f"  created       {m.get('created_utc', '?')}",
            f"  source        {src.get('path', '?')} ({src.get('model_type', '?')}, "
            f"{(src.get('param_count') or 0) / 1e6:.2f}M parameters)",
        ]
        for fname, sha in (src.get("weights_sha256") or {}).items():
            lines.append(f"    {fname}  sha256 {sha}")
        v = m.get("verification")
        if v is None:
            lines.append("  verification  not run (--no-verify)")
        elif not v.get("figures"):
            lines.append("  verification  FAILED")
            lines += [f"    failure: {why}" for why in v.get("failures", [])]
        else:
            f, th = v["figures"], v["thresholds"]
            lines.append(f"  verification  {'PASSED' if v['passed'] else 'FAILED'}")
            mad = th.get("max_abs_logit_diff")
            lines += [
                f"    KL mean       {f['kl_mean']:.3e}   (allowed <= {th['max_kl']:g}); max {f['kl_max']:.3e}",
                f"    max|dlogit|   {f['max_abs_logit_diff']:.4g}" + (f"   (allowed <= {mad:g})" if mad is not None else ""),
                f"    greedy        {f['greedy_match']:.1%} of torch's tokens chosen (teacher-forced, required >= "
                f"{th['min_greedy_match']:.0%}); free-running {f['greedy_free_match']:.1%} equal, "
                f"{f['greedy_prefix_match']:.1%} before first divergence",
                f"    stream        "
                + (f"{f['stream_consistency']:.1%} of streamed tokens = own full forward (required >= "
                   f"{th.get('min_stream_consistency', 0):.0%})" if f.get("stream_consistency") is not None
                   else "not measured"),
                f"    top-1 agree   {f['top1_agreement']:.1%} over {f['positions']} positions",
                f"    tokenizer     {f['tokenizer_checked'] - f['tokenizer_mismatches']}/{f['tokenizer_checked']} texts identical",
                f"    vocab         torch {f['vocab_torch']}, artifact {f['vocab_artifact']}, compared {f['vocab_compared']}",
            ]
            for why in v.get("failures", []):
                lines.append(f"    failure: {why}")
        lines.append("  files")
        for rel, fi in (m.get("files") or {}).items():
            lines.append(f"    {rel:<40} {fi['bytes'] / MB:>9.2f} MB  sha256 {fi['sha256'][:16]}…")
        versions = {k: v for k, v in (m.get("tool_versions") or {}).items() if v}
        if versions:
            lines.append("  tools         " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if info.get("integrity") is not None:
        integ = info["integrity"]
        lines.append("  integrity     " + ("files match the manifest" if integ["ok"] else "PROBLEMS:"))
        for p in integ["problems"]:
            lines.append(f"    {p}")
    if info["describe"]:
        lines.append("  file metadata")
        lines += _render(info["describe"], indent=4)
    return "\n".join(lines)


def _render(obj: Any, indent: int, limit: int = 60) -> list[str]:
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        items = list(obj.items())
        for k, v in items[:limit]:
            if isinstance(v, (dict, list)) and v and len(json.dumps(v, default=str)) > 80:
                out.append(f"{pad}{k}:")
                out += _render(v, indent + 2, limit)
            else:
                out.append(f"{pad}{k}: {_short(v)}")
        if len(items) > limit:
            out.append(f"{pad}... {len(items) - limit} more (see --json)")
    elif isinstance(obj, list):
        for v in obj[:limit]:
            out.append(f"{pad}- {_short(v)}" if not isinstance(v, (dict, list)) else f"{pad}- {json.dumps(v, default=str)[:160]}")
        if len(obj) > limit:
            out.append(f"{pad}... {len(obj) - limit} more (see --json)")
    else:
        out.append(f"{pad}{_short(obj)}")
    return out


def _short(v: Any) -> str:
    s = json.dumps(v, default=str, ensure_ascii=False) if not isinstance(v, str) else v.replace("\n", "\\n")
    return s if len(s) <= 120 else s[:117] + "..."

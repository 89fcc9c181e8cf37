"""``manifest.json``: what an artifact is, where it came from and how well it matched its source.

Written last into the artifact's temporary directory, so an artifact directory that exists always has
a complete manifest. Keys (schema version 1):

``schema``, ``format``, ``quant``, ``name``, ``created_utc`` (ISO 8601), ``source`` (``path``,
``model_type``, ``weights_sha256`` per file, ``param_count``), ``files`` (name -> ``sha256``,
``bytes``; every file but the manifest), ``size_bytes``, ``quant_spec`` (bits per weight and
thresholds), ``verification`` (``passed``, ``figures``, ``thresholds``, ``failures``; ``null`` with
``--no-verify``), ``tool_versions`` (package -> version, ``null`` when not installed), ``export_options``
and ``format_info`` (what the format's ``write`` returned); ``calibration`` (``path``, ``sha256``,
``records``, ``tokens``, ``used_for``, ``imatrix_sha256``) when the export had calibration data. The
task check's figures are ``verification.figures.task``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from edgedistill.atomic import atomic_write_json
from edgedistill.artifacts import check_files, sha256_file  # noqa: F401  (check_files: re-exported)
from edgedistill.export.source import SourceModel

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

#: packages whose versions decide what an artifact contains
TOOL_PACKAGES = (
    "edgedistill", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
    "onnxruntime-genai", "gguf", "llama-cpp-python", "safetensors", "tokenizers",
)


def tool_versions() -> dict[str, str | None]:
    from importlib import metadata  # ~20 ms: imported when an artifact is written, not for `--help`

    out: dict[str, str | None] = {}
    for pkg in TOOL_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def file_table(artifact_dir: Path) -> dict[str, dict[str, Any]]:
    """Relative path -> sha256 and size, for every file in the artifact but the manifest itself."""
    table = {}
    for f in sorted(artifact_dir.rglob("*")):
        if f.is_file() and f.name != MANIFEST_NAME:
            table[f.relative_to(artifact_dir).as_posix()] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    return table


def build_manifest(
    *,
    artifact_dir: Path,
    name: str,
    fmt: str,
    quant: str,
    source: SourceModel,
    source_sha256: dict[str, str],
    quant_spec: dict,
    verification: dict | None,
    export_options: dict,
    format_info: dict,
    extra: dict | None = None,
) -> dict[str, Any]:
    files = file_table(artifact_dir)
    versions = tool_versions()
    extra_versions = format_info.get("tool_versions") if isinstance(format_info, dict) else None
    if isinstance(extra_versions, dict):
        versions.update(extra_versions)
    return {
        "schema": SCHEMA_VERSION,
        "format": fmt,
        "quant": quant,
        "name": name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "path": str(source.given.resolve()),
            "model_dir": str(source.path.resolve()),
            "model_type": source.model_type,
            "weights_sha256": source_sha256,
            "param_count": source.param_count,
        },
        "files": files,
        "size_bytes": sum(f["bytes"] for f in files.values()),
        "quant_spec": quant_spec,
        "verification": verification,
        "tool_versions": versions,
        "export_options": export_options,
        "format_info": format_info,
        **(extra or {}),
    }


def write_manifest(artifact_dir: Path, manifest: dict) -> Path:
    return atomic_write_json(artifact_dir / MANIFEST_NAME, manifest)



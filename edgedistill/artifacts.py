"""What a model artifact on disk is, shared by export (writes), bench and eval (read).

Layout written by ``edgedistill export``: one directory per artifact, e.g.
``artifacts/student-gguf-q4_k_m/`` holding the runtime's files plus ``manifest.json`` whose
``format`` says which runtime loads it. Bench and eval also accept a bare ``.gguf`` file and a Hugging
Face model directory (the PyTorch baseline).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.errors import EdgeDistillError, VerificationError
from edgedistill.runtime_registry import runtime_for_format, runtime_specs

# format name -> runtime name, a view of edgedistill.runtime_registry (the one place a runtime is described)
FORMAT_RUNTIME = {spec.format: spec.name for spec in runtime_specs()}


@dataclass(frozen=True)
class Artifact:
    """A loadable model on disk."""

    path: Path
    """The artifact directory (or the .gguf file itself when given bare)."""
    format: str
    """One of FORMAT_RUNTIME's keys."""
    main_file: Path
    """The file the runtime opens (model.gguf, model.onnx, genai_config.json, config.json)."""
    manifest: dict = field(default_factory=dict, compare=False)

    @property
    def runtime(self) -> str:
        return FORMAT_RUNTIME[self.format]

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    def size_bytes(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def detect_artifact(path: str | Path) -> Artifact:
    """Work out what ``path`` is; a clear error when it is none of the known kinds."""
    p = Path(path).expanduser()
    if not p.exists():
        raise EdgeDistillError(f"artifact {p} does not exist")
    if p.is_file():
        for spec in runtime_specs():
            if spec.bare_suffix and p.suffix == spec.bare_suffix:
                _check_magic(p, spec.magic)
                return Artifact(p if spec.bare_file_is_artifact else p.parent, spec.format, p)
        suffixes = [s.bare_suffix for s in runtime_specs() if s.bare_suffix]
        raise EdgeDistillError(f"artifact {p}: unknown file type (expected {', '.join(suffixes)} or a directory)")
    manifest = {}
    if (p / "manifest.json").exists():
        try:
            manifest = json.loads((p / "manifest.json").read_text())
        except json.JSONDecodeError as exc:
            raise EdgeDistillError(f"{p / 'manifest.json'}: corrupt manifest ({exc})") from None
    fmt = manifest.get("format")
    if fmt is None:
        fmt = next((s.format for s in runtime_specs() if list(p.glob(s.main_file))), None)
        if fmt is None:
            raise EdgeDistillError(
                f"artifact {p}: no manifest.json, model files or config.json found; "
                "give an export directory, a .gguf file or a Hugging Face model directory"
            )
    if fmt not in FORMAT_RUNTIME:
        raise EdgeDistillError(f"artifact {p}: unknown format {fmt!r}; known: {', '.join(FORMAT_RUNTIME)}")
    spec = runtime_for_format(fmt)
    main = _main_file(p, fmt)
    _check_magic(main, spec.magic)
    return Artifact(p, fmt, main, manifest)


def _main_file(p: Path, fmt: str) -> Path:
    spec = runtime_for_format(fmt)
    found = sorted(p.glob(spec.main_file))
    if spec.preferred_main_file:  # e.g. the merged decoder optimum writes
        found.sort(key=lambda f: (f.name != spec.preferred_main_file, f.name))
    if not found:
        raise EdgeDistillError(f"artifact {p} ({fmt}) has no {spec.main_file} file; it is incomplete")
    return found[0]


def _check_magic(f: Path, magic: bytes | None) -> None:
    if not magic:
        return
    with open(f, "rb") as fh:
        if fh.read(len(magic)) != magic:
            raise EdgeDistillError(f"{f} is not a {magic.decode()} file (bad magic); it may be corrupt or truncated")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_files(artifact_dir: Path, manifest: dict) -> list[str]:
    """Problems found comparing the files on disk with the manifest (empty when intact)."""
    problems = []
    for rel, info in (manifest.get("files") or {}).items():
        f = artifact_dir / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif f.stat().st_size != info.get("bytes"):
            problems.append(f"{rel}: {f.stat().st_size} bytes, manifest says {info.get('bytes')}")
        elif sha256_file(f) != info.get("sha256"):
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems


def verify_manifest_hashes(art: Artifact) -> None:
    """Refuse an export artifact whose files no longer match its manifest (copied badly, corrupted,
    edited): measuring it would report figures for something that is not what was verified."""
    if not art.manifest.get("files") or not art.path.is_dir():
        return  # a bare .gguf, an HF directory or an unfinished artifact has no hashes to check
    problems = check_files(art.path, art.manifest)
    if problems:
        raise VerificationError(
            f"artifact {art.path}: files do not match its manifest.json ({len(problems)} problem(s), first: "
            f"{problems[0]})",
            hint="export it again, or pass --no-verify-hashes to measure it anyway",
        )

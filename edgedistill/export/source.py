"""Checks on the model being exported, done before any export work starts.

A missing config, a missing tokenizer or a truncated ``.safetensors`` file must be reported in the
first second, not after ten minutes of conversion. The safetensors check reads only each file's
header (an 8-byte length, then JSON) and compares the byte ranges it declares with the file size, so
it is cheap even for large models; the same headers give the parameter count without loading torch.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from edgedistill.artifacts import sha256_file  # noqa: F401  (re-exported: export.manifest uses it)
from edgedistill.errors import EdgeDistillError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


@dataclass(frozen=True)
class SourceModel:
    """What export needs to know about the model directory, gathered without loading the model."""

    path: Path
    """The Hugging Face model directory (a .gguf input is first imported into one)."""
    given: Path
    """The path as the user gave it (directory or .gguf file)."""
    config: dict
    model_type: str
    weight_files: tuple[Path, ...]
    param_count: int
    """Unique stored parameters (tied embeddings counted once), from the safetensors headers."""

    @property
    def name(self) -> str:
        return self.given.stem if self.given.is_file() else self.given.resolve().name

    def weights_sha256(self) -> dict[str, str]:
        """sha256 per weight file (of the file the user gave, when it was a .gguf)."""
        files = [self.given] if self.given.is_file() else list(self.weight_files)
        return {f.name: sha256_file(f) for f in files}


def inspect_source(model: str | Path) -> SourceModel:
    """Resolve and check ``model``; raise a clear :class:`EdgeDistillError` for anything unusable."""
    from edgedistill.models import resolve_model_dir

    given = Path(model).expanduser()
    if given.is_dir() and not (given / "config.json").exists():
        raise EdgeDistillError(
            f"model directory {given} has no config.json",
            hint="export needs a Hugging Face model directory (config.json, weights, tokenizer) or a .gguf file",
        )
    path = resolve_model_dir(given, what="model")
    config = _read_config(path / "config.json")
    model_type = config.get("model_type")
    if not model_type:
        raise EdgeDistillError(f"{path / 'config.json'} has no 'model_type'; cannot tell the architecture")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise EdgeDistillError(
            f"model directory {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})",
            hint="save the tokenizer next to the model (tokenizer.save_pretrained(DIR)) and rerun",
        )
    weight_files = _weight_files(path)
    params = 0
    for f in weight_files:
        if f.suffix == ".safetensors":
            params += _check_safetensors(f)
        elif f.stat().st_size == 0:
            raise EdgeDistillError(f"weight file {f} is empty; the model directory is incomplete")
    if params == 0:  # only .bin files: count them the slow way, once
        params = _count_params_torch(weight_files)
    return SourceModel(path, given, config, model_type, tuple(weight_files), params)


def _read_config(f: Path) -> dict:
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeDistillError(f"{f} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EdgeDistillError(f"{f} must hold a JSON object")
    return data


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise EdgeDistillError(f"{index} is corrupt ({exc})") from None
        missing = [s for s in shards if not (path / s).exists()]
        if missing:
            raise EdgeDistillError(f"{index} names shard(s) that are missing: {', '.join(missing)}")
        return [path / s for s in shards]
    for pattern in WEIGHT_PATTERNS:
        found = sorted(path.glob(pattern))
        if found:
            return found
    raise EdgeDistillError(
        f"model directory {path} has no weights (*.safetensors or pytorch_model*.bin)",
        hint="save the model with model.save_pretrained(DIR)",
    )


def _check_safetensors(f: Path) -> int:
    """Validate the header and byte ranges of one safetensors file; return its parameter count."""
    size = f.stat().st_size
    bad = f"weight file {f} is corrupt or truncated"
    hint = "re-save or re-download the model; the export was not started"
    if size < 8:
        raise EdgeDistillError(f"{bad} ({size} bytes)", hint=hint)
    with open(f, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        if header_len <= 0 or 8 + header_len > size or header_len > 100 * 2**20:
            raise EdgeDistillError(f"{bad} (header length {header_len} does not fit a {size}-byte file)", hint=hint)
        try:
            header = json.loads(fh.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EdgeDistillError(f"{bad} (header is not valid JSON)", hint=hint) from None
    if not isinstance(header, dict):
        raise EdgeDistillError(f"{bad} (header is not a JSON object)", hint=hint)
    end, params = 0, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = info["data_offsets"]
            params += prod(info["shape"])
        except (KeyError, TypeError, ValueError):
            raise EdgeDistillError(f"{bad} (tensor {name!r} has no valid shape/data_offsets)", hint=hint) from None
        end = max(end, stop)
    if 8 + header_len + end != size:
        raise EdgeDistillError(
            f"{bad}: its header declares {8 + header_len + end} bytes but the file has {size}", hint=hint
        )
    return params


def _count_params_torch(files: list[Path]) -> int:
    import torch

    total = 0
    for f in files:
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad pickle
            raise EdgeDistillError(f"weight file {f} could not be read: {exc}") from None
        total += sum(t.numel() for t in state.values() if hasattr(t, "numel"))
    return total

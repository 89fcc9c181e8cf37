"""Resolving a user's model argument into something loadable.

A model may be given as a Hugging Face directory (config.json + weights + tokenizer) or as a ``.gguf``
file; a GGUF file is imported once into a Hugging Face directory (dequantized weights, a tokenizer
that tokenizes as llama.cpp does) under a cache folder next to it, then loaded like any other.
Nothing is ever fetched from a hub: a name that is not a local path is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgedistill.atomic import file_lock
from edgedistill.errors import EdgeDistillError
from edgedistill.packaged_models import cache_root


def gguf_cache_dir(gguf_path: Path) -> Path:
    """Where the HF import of a GGUF file lives (override with EDGEDISTILL_CACHE)."""
    import transformers

    root = cache_root()
    st = gguf_path.stat()
    # the import's tokenizer files follow the transformers major version that wrote them (4.x and 5.x
    # save and reload them differently): an upgrade imports again instead of reusing a 4.x import
    major = transformers.__version__.split(".")[0]
    return root / "gguf-import" / f"{gguf_path.stem}-{st.st_size}-{int(st.st_mtime)}-tf{major}"


def resolve_model_dir(path: str | os.PathLike, what: str = "model") -> Path:
    """Return a Hugging Face model directory for ``path`` (a HF dir or a .gguf file).

    ``what`` names the argument in error messages ("teacher", "student").
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise EdgeDistillError(
            f"{what} path {str(path)!r} does not exist",
            hint="give a local Hugging Face model directory or a .gguf file (nothing is downloaded)",
        )
    if p.is_file() and p.suffix == ".gguf":
        from edgedistill.gguf_import import import_gguf

        target = gguf_cache_dir(p.resolve())
        if not (target / "config.json").exists():
            # several processes (accelerate launch / torchrun ranks) may get here at once: one imports
            with file_lock(target.with_name(target.name + ".lock")):
                if not (target / "config.json").exists():
                    import_gguf(p, target)
        return target
    if p.is_dir():
        missing = [n for n in ("config.json",) if not (p / n).exists()]
        if missing:
            raise EdgeDistillError(
                f"{what} directory {p} has no config.json; is it a Hugging Face model directory?"
            )
        return p
    raise EdgeDistillError(f"{what} path {p} is neither a model directory nor a .gguf file")


def load_tokenizer(model_dir: str | os.PathLike, what: str = "model"):
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    try:
        tok = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EdgeDistillError(f"{what} directory {model_dir} has no usable tokenizer: {exc}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str | os.PathLike, what: str = "model", dtype=None, device: str | None = None):
    """Load (model, tokenizer) from a HF dir or .gguf file, with clear errors for bad paths/weights."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = resolve_model_dir(path, what)
    tok = load_tokenizer(model_dir, what)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype or torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeDistillError(f"could not load the {what} weights from {model_dir}: {msg}") from None
    if device:
        model.to(device)
    model.eval()
    return model, tok

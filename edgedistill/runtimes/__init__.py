"""Runtimes that load an artifact and run it: one class per runtime, described in
:mod:`edgedistill.runtime_registry` (name, format, packages, files, KV rule, this class).

Export verification, eval and bench all go through this one interface, so a quantization's cost is
measured the same way everywhere. Runtime modules are imported lazily: a missing optional package
(llama-cpp-python, onnxruntime-genai) is an error only when that runtime is used.
"""

from __future__ import annotations

from edgedistill.artifacts import Artifact, detect_artifact
from edgedistill.runtime_registry import RUNTIMES
from edgedistill.runtimes.base import Runtime


def runtime_class(name: str) -> type[Runtime]:
    """The class of runtime ``name`` as edgedistill.runtime_registry describes it (imported now)."""
    return RUNTIMES.get(name).load_class()


def open_runtime(artifact: Artifact | str, threads: int | None = None, decode_only: bool = False) -> Runtime:
    """Load ``artifact`` (or a path to one) in the runtime its format needs.

    ``decode_only``: the caller only streams tokens (the benchmark), so a runtime that supports it may
    skip computing and keeping the logits of every prompt position (llama.cpp's ``logits_all``); its
    ``logits`` then returns the last position only.
    """
    if not isinstance(artifact, Artifact):
        artifact = detect_artifact(artifact)
    cls = runtime_class(artifact.runtime)
    if decode_only and getattr(cls, "has_decode_only_mode", False):
        return cls(artifact, threads=threads, decode_only=True)
    return cls(artifact, threads=threads)

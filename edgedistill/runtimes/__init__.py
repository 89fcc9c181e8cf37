"""Runtimes that load an artifact and run it: one class per runtime, registered by name.

Export verification, eval and bench all go through this one interface, so a quantization's cost is
measured the same way everywhere. Runtime modules are imported lazily: a missing optional package
(llama-cpp-python, onnxruntime-genai) is an error only when that runtime is used.
"""

from __future__ import annotations

import importlib

from edgedistill.artifacts import Artifact, detect_artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.runtimes.base import Runtime

# runtime name -> "module:Class"; each module imports its third-party package at load time only.
RUNTIMES = {
    "torch": "edgedistill.runtimes.torch_runtime:TorchRuntime",
    "onnxruntime": "edgedistill.runtimes.onnx_runtime:OnnxRuntime",
    "ort-genai": "edgedistill.runtimes.ortgenai_runtime:OrtGenaiRuntime",
    "llama.cpp": "edgedistill.runtimes.llamacpp_runtime:LlamaCppRuntime",
}


def runtime_class(name: str) -> type[Runtime]:
    if name not in RUNTIMES:
        raise EdgeDistillError(f"unknown runtime {name!r}; valid: {', '.join(sorted(RUNTIMES))}")
    module, cls = RUNTIMES[name].split(":")
    return getattr(importlib.import_module(module), cls)


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

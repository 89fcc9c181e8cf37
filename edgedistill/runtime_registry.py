"""What a runtime is, in one place: one :class:`RuntimeSpec` per runtime, registered in :data:`RUNTIMES`.

A spec states the runtime's name, the artifact format it opens, the Python packages it needs, the
files that make a directory (or a bare file) an artifact of that format, its KV-cache rule and the
class that opens it. Artifact detection (``artifacts.py``), device profiles (``targets.py``), loading
(``runtimes/__init__.py``), the bench's install check (``bench/harness.py``) and every KV-cache size
read it from here. Adding a runtime: one spec below plus its class in ``edgedistill/runtimes/``;
``tests/test_runtime_registry.py`` then demands a case for it.

This module imports nothing third-party: artifacts and profiles are read on machines that have only
some runtimes installed; each implementation module is imported when that runtime is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from edgedistill.errors import EdgeDistillError
from edgedistill.registry import Registry


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    """As device profiles, manifests and reports spell it (``llama.cpp``, ``onnxruntime``, ...)."""
    format: str
    """The artifact format it opens (``manifest.json``'s ``format``)."""
    packages: tuple[str, ...]
    """Import names of the Python packages it needs, all of them."""
    install: str
    """What to install when a package is missing (pip names)."""
    main_file: str
    """Glob of the file it opens in an artifact directory; a manifest-less directory holding such a
    file is an artifact of this format (specs are tried in ``detect_rank`` order)."""
    detect_rank: int
    preferred_main_file: str | None = None
    """Among several ``main_file`` matches, this name first (e.g. the merged ``model.onnx``)."""
    bare_suffix: str | None = None
    """A file with this suffix given on its own is an artifact of this format."""
    bare_file_is_artifact: bool = True
    """For a bare file: the artifact is the file itself (True) or its directory (False)."""
    magic: bytes | None = None
    """The bytes its main file starts with: a file that does not is refused before loading."""
    implementation: str = ""
    """``module:Class`` of the :class:`~edgedistill.runtimes.base.Runtime`, imported when used."""
    kv_cache_dtype_fixed: str | None = None
    """The runtime's own KV-cache dtype, for a format with no export format to state it (``hf``)."""
    exporter: str | None = None
    """The module that writes this format (it registers an ``ExportFormat`` in ``export.formats.FORMATS``,
    imported at that registry's first lookup); None where edgedistill writes none (``hf``: the trainer's
    own output). Device profiles name exactly these formats, without importing the exporters."""

    @property
    def module(self) -> str:
        return self.implementation.split(":")[0]

    def load_class(self) -> type:
        module, cls = self.implementation.split(":")
        return getattr(importlib.import_module(module), cls)

    def missing_packages(self) -> list[str]:
        return [p for p in self.packages if importlib.util.find_spec(p) is None]

    def kv_cache_dtype(self, quant: str | None) -> str:
        """numpy name of the KV cache's element type: the export format's rule (``kv_cache_dtype``)."""
        if self.kv_cache_dtype_fixed:
            return self.kv_cache_dtype_fixed
        from edgedistill.export.formats import FORMATS

        return FORMATS.get(self.format).kv_cache_dtype(quant)

    def kv_bytes_per_value(self, quant: str | None) -> int:
        import numpy as np

        return np.dtype(self.kv_cache_dtype(quant)).itemsize


RUNTIMES: Registry[RuntimeSpec] = Registry("runtime")

for _spec in (
    RuntimeSpec(
        "ort-genai", "ort-genai", ("onnxruntime_genai",), "pip install onnxruntime-genai",
        main_file="genai_config.json", detect_rank=0,
        implementation="edgedistill.runtimes.ortgenai_runtime:OrtGenaiRuntime",
        exporter="edgedistill.export.ortgenai_format",
    ),
    RuntimeSpec(
        "llama.cpp", "gguf", ("llama_cpp",), "pip install llama-cpp-python",
        main_file="*.gguf", detect_rank=1, bare_suffix=".gguf", magic=b"GGUF",
        implementation="edgedistill.runtimes.llamacpp_runtime:LlamaCppRuntime",
        exporter="edgedistill.export.gguf",
    ),
    RuntimeSpec(
        "onnxruntime", "onnx", ("onnxruntime",), "pip install onnxruntime",
        main_file="*.onnx", detect_rank=2, preferred_main_file="model.onnx", bare_suffix=".onnx",
        bare_file_is_artifact=False, implementation="edgedistill.runtimes.onnx_runtime:OnnxRuntime",
        exporter="edgedistill.export.onnx_format",
    ),
    # The Hugging Face baseline: transformers builds the model, torch runs it, so both are needed
    # (the bench's check once named only torch, the device runner only transformers). Loaded in
    # float32 on CPU (models.load_causal_lm), hence its float32 cache.
    RuntimeSpec(
        "torch", "hf", ("torch", "transformers"), "pip install torch transformers",
        main_file="config.json", detect_rank=3, kv_cache_dtype_fixed="float32",
        implementation="edgedistill.runtimes.torch_runtime:TorchRuntime",
    ),
):
    RUNTIMES.register(_spec.name, _spec)


def runtime_specs() -> list[RuntimeSpec]:
    """Every spec, in detection order."""
    return sorted((s for _, s in RUNTIMES.items()), key=lambda s: s.detect_rank)


def artifact_formats() -> list[str]:
    return [s.format for s in runtime_specs()]


def export_formats() -> list[str]:
    """The formats edgedistill writes (each spec's ``exporter``), sorted: what a device profile may list."""
    return sorted(s.format for s in runtime_specs() if s.exporter)


def runtime_for_format(fmt: str) -> RuntimeSpec:
    for spec in runtime_specs():
        if spec.format == fmt:
            return spec
    raise EdgeDistillError(f"unknown artifact format {fmt!r}; known: {', '.join(artifact_formats())}")


def kv_bytes_per_value(fmt: str, quant: str | None) -> int:
    """Bytes per stored KV-cache value of a ``fmt:quant`` artifact (the one rule; see RuntimeSpec)."""
    return runtime_for_format(fmt).kv_bytes_per_value(quant)

"""Export a model to edge formats, each artifact verified against PyTorch and described by a manifest.

    from edgedistill.export import ExportConfig, export
    result = export(ExportConfig(model="student/", artifacts=["gguf:q4_k_m", "onnx:int4"]))

The built-in formats (``onnx``, ``ort-genai``, ``gguf``) register themselves in :data:`FORMATS` when it is
first looked up (``formats._builtin_formats``). Their third-party packages (onnx, onnxruntime, onnxruntime-genai's builder, gguf) are core
dependencies, so a failing import here is a real error and is not hidden; only the runtimes that
*load* artifacts (llama-cpp-python) and optimum-onnx (the onnx format's optional exporter, the
``optimum`` extra) are optional, and they are imported when used.
"""

from __future__ import annotations

from edgedistill.export.formats import FORMATS, ExportFormat, ExportOptions, QuantSpec
from edgedistill.export.run import ArtifactResult, ExportConfig, ExportResult, export

__all__ = [
    "FORMATS", "ExportFormat", "ExportOptions", "QuantSpec",
    "ExportConfig", "ExportResult", "ArtifactResult", "export",
]

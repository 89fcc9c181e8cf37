"""GGUF export: our own HF -> GGUF converter (gguf-py) plus llama.cpp's quantizer.

Registers the ``gguf`` :class:`~edgedistill.export.formats.ExportFormat`. An artifact directory holds
``model.gguf`` (hyperparameters, full tokenizer and chat template in its metadata); the llama.cpp
runtime loads it. See docs/export-gguf.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS, ExportFormat, ExportOptions
from edgedistill.export.gguf.architectures import ARCHITECTURES, supported_model_types
from edgedistill.export.gguf.inspect import describe_gguf
from edgedistill.export.gguf.quantize import GGUF_QUANTS, quant_specs
from edgedistill.export.gguf.writer import write_gguf

GGUF_FILE = "model.gguf"


class GgufFormat(ExportFormat):
    name = "gguf"
    quants = quant_specs()
    supported_architectures = supported_model_types()

    def write(self, model_dir: Path, out_dir: Path, quant: str, options: ExportOptions) -> dict[str, Any]:
        return write_gguf(Path(model_dir), Path(out_dir) / GGUF_FILE, quant, imatrix=options.imatrix)

    def describe(self, artifact_dir: Path) -> dict[str, Any]:
        return describe_gguf(_gguf_file(Path(artifact_dir)))

    def takes_imatrix(self, quant: str) -> bool:
        # the types llama.cpp's quantizer makes: with an imatrix it weights each block's scale search
        return GGUF_QUANTS.get(quant).route == "llama.cpp"

    def kv_cache_dtype(self, quant: str) -> str:
        # A GGUF file holds no cache type: llama.cpp allocates f16 K and V caches by default, and the
        # llama.cpp runtime (and the bench runner) do not change type_k / type_v.
        return "float16"


def _gguf_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("*.gguf"))
    if not found:
        raise EdgeDistillError(f"{path}: no .gguf file in this artifact")
    return found[0]


FORMATS.register("gguf", GgufFormat())

__all__ = ["GgufFormat", "ARCHITECTURES", "GGUF_QUANTS", "describe_gguf", "write_gguf", "GGUF_FILE"]

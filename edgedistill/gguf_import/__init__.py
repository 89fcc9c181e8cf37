"""GGUF model files as teachers or students: import into a Hugging Face directory.

    from edgedistill.gguf_import import import_gguf, build_tokenizer_from_gguf

    import_gguf("gemma-3-270m-q4_k_m.gguf", "gemma-hf")        # config + weights + tokenizer
    tok = build_tokenizer_from_gguf("gemma-3-270m-q4_k_m.gguf")  # metadata only, ~10 s

``edgedistill.models.resolve_model_dir`` calls :func:`import_gguf` for any ``.gguf`` path, so a GGUF
file works wherever a model directory does. ``edgedistill import-gguf FILE --out DIR`` is the CLI.
"""

from edgedistill.gguf_import.importer import DTYPES, SUPPORTED_ARCHITECTURES, import_gguf
from edgedistill.gguf_import.reader import GGUFFile, TensorInfo, read_gguf
from edgedistill.gguf_import.tokenizer import build_tokenizer_from_gguf, read_vocab, tokenizer_from_vocab

__all__ = [
    "DTYPES",
    "SUPPORTED_ARCHITECTURES",
    "GGUFFile",
    "TensorInfo",
    "build_tokenizer_from_gguf",
    "import_gguf",
    "read_gguf",
    "read_vocab",
    "tokenizer_from_vocab",
]

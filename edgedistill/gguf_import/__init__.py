"""GGUF model files as teachers or students: import into a Hugging Face directory.

    from edgedistill.gguf_import import import_gguf, build_tokenizer_from_gguf

    import_gguf("gemma-3-270m-q4_k_m.gguf", "gemma-hf")        # config + weights + tokenizer
    tok = build_tokenizer_from_gguf("gemma-3-270m-q4_k_m.gguf")  # metadata only, ~10 s

``edgedistill.models.resolve_model_dir`` calls :func:`import_gguf` for any ``.gguf`` path, so a GGUF
file works wherever a model directory does. ``edgedistill import-gguf FILE --out DIR`` is the CLI.
"""

import importlib

# name -> its module, imported at first use (PEP 562): the CLI imports gguf_import.command for --help
# and must not pay for gguf, numpy and the tokenizer code then.
_WHERE = {
    "DTYPES": "command", "SUPPORTED_ARCHITECTURES": "importer", "import_gguf": "importer",
    "GGUFFile": "reader", "TensorInfo": "reader", "read_gguf": "reader",
    "build_tokenizer_from_gguf": "tokenizer", "read_vocab": "tokenizer", "tokenizer_from_vocab": "tokenizer",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


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

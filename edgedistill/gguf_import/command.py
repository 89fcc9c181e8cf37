"""``edgedistill import-gguf``: settings, the one function the command calls, and its summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.atomic import check_output_dir
from edgedistill.config import one_of, require
from edgedistill.errors import EdgeDistillError, VerificationError

# Here rather than in importer.py, which imports gguf and numpy: `edgedistill --help` reads this module.
DTYPES = ("float32", "bfloat16", "float16")
IMPORT_MARKERS = ("gguf_import.json",)  # what tells an earlier import (replaceable) from a user's directory


@dataclass
class ImportGGUFConfig:
    gguf: str = field(default="", metadata={"help": "The .gguf file to import (or package:NAME of a packaged model)."})
    out: str = field(default="", metadata={"help": "Output Hugging Face model directory."})
    dtype: str = field(default="float32", metadata={"help": "dtype of the saved weights: float32 (exact), bfloat16, float16.",
                                                            "choices": DTYPES})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --out directory."})
    verify: bool = field(default=False, metadata={"help": "Compare with llama.cpp on the same file afterwards "
                                                          "(tokenization and next-token KL); needs llama-cpp-python."})
    verify_strings: int = field(default=1000, metadata={"help": "Strings for the tokenization check of --verify."})

    def __post_init__(self):
        require(bool(self.gguf), "gguf", "give the .gguf file to import")
        require(bool(self.out), "out", "give the output directory (--out DIR)")
        one_of(self.dtype, "dtype", DTYPES)
        require(self.verify_strings >= 1, "verify_strings", "must be at least 1")


@dataclass
class ImportSummary:
    out: Path
    info: dict
    seconds: float
    tokenization: dict | None = None
    logits: dict | None = None

    def lines(self) -> list[str]:
        s = self.info.get("seconds", {})
        out = [
            f"imported {self.info['architecture']} ({self.info['model_name'] or 'unnamed'}) -> {self.out}",
            f"  tokenizer: {self.info['tokenizer_model']} / pre {self.info['tokenizer_pre']}, "
            f"{self.info['vocab_size']} tokens; weights: {self.info['n_tensors']} tensors as {self.info['dtype']}",
            f"  time: {self.seconds:.1f} s (tokenizer {s.get('tokenizer')} s, weights {s.get('weights')} s, "
            f"save {s.get('save')} s)",
        ]
        if self.tokenization:
            t = self.tokenization
            out.append(f"  tokenization vs llama.cpp: {t['agree']}/{t['checked']} identical "
                       f"({t['strings']} strings x special tokens off/on)")
        if self.logits:
            lg = self.logits
            out.append(f"  logits vs llama.cpp: KL mean {lg['kl_mean']:.4f}, max {lg['kl_max']:.4f}, "
                       f"top-1 agreement {lg['top1_agree']:.1%} on {len(lg['prompts'])} prompts")
        return out


def _resolve_source(spec: str) -> Path:
    from edgedistill.packaged_models import resolve_model_arg

    return Path(resolve_model_arg(spec)).expanduser()


def run_import(config: ImportGGUFConfig) -> ImportSummary:
    """Import ``config.gguf`` into ``config.out`` and, with ``verify``, check it against llama.cpp."""
    import json

    from edgedistill.gguf_import.importer import import_gguf

    src = _resolve_source(config.gguf)
    out = Path(config.out).expanduser()
    check_output_dir(out, IMPORT_MARKERS, config.overwrite)  # before the (long) import, not after
    t0 = time.perf_counter()
    import_gguf(src, out, dtype=config.dtype, overwrite=config.overwrite)
    summary = ImportSummary(out=out, info=json.loads((out / "gguf_import.json").read_text()),
                            seconds=time.perf_counter() - t0)
    if config.verify:
        from transformers import AutoTokenizer

        from edgedistill.gguf_import.probe_strings import probe_strings
        from edgedistill.gguf_import.verify import compare_logits, compare_tokenization

        tok = AutoTokenizer.from_pretrained(out)
        summary.tokenization = compare_tokenization(src, tok, probe_strings(config.verify_strings))
        summary.logits = compare_logits(src, out)
        if summary.tokenization["agree"] != summary.tokenization["checked"]:
            first = summary.tokenization["mismatches"][0]
            raise VerificationError(
                f"the imported tokenizer differs from llama.cpp on "
                f"{summary.tokenization['checked'] - summary.tokenization['agree']} of "
                f"{summary.tokenization['checked']} checks, e.g. {first['text']!r}: "
                f"llama.cpp {first['llama_cpp'][:12]} vs ours {first['ours'][:12]}",
                hint="please report this with the GGUF file's tokenizer.ggml.model / tokenizer.ggml.pre",
            )
    return summary

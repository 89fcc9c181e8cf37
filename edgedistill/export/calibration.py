"""Calibration data for data-aware quantization: the user's own records, read before any model loads.

``export --calibration-data FILE`` (and the recipe, which passes its distillation data) gives the
texts from which :func:`~edgedistill.export.gguf.imatrix.compute_imatrix` measures the importance of
every weight column: llama.cpp's K-quants and IQ-quants then spend their precision on the columns the
user's data actually drives. The manifest records which data an artifact was made with (sha256,
records, tokens), so two artifacts can be told apart.

Accepted files: whatever ``edgedistill.data.load_records`` reads (JSONL, JSON, CSV, Parquet, a
datasets directory) -- prompts as ``messages`` or ``prompt``; a ``response`` / ``completion``
(``edgedistill generate`` output) or ``reference`` is appended, so the statistic covers the tokens
the model writes as well as the ones it reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.errors import DataError, EdgeDistillError
from edgedistill.export.source import sha256_file
from edgedistill.tasks import record_plain_cue, render_plain

#: Answer columns appended to the prompt, in order of preference.
ANSWER_FIELDS = ("response", "completion")


@dataclass
class CalibrationData:
    path: Path
    sha256: str
    records: int
    """Records used (at most ``max_records`` of the file's)."""
    texts: list[str] = field(repr=False, default_factory=list)
    tokens: int | None = None
    """Tokens the model saw; set once the importance matrix was computed."""

    def manifest_entry(self, used_for: str) -> dict:
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "records": self.records,
                "tokens": self.tokens, "used_for": used_for}


def load_calibration(path: str | Path, max_records: int = 128, option: str = "--calibration-data") -> CalibrationData:
    """Read and check ``path``; errors name ``option`` and the file/line at fault."""
    from edgedistill.data import load_records

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{option} {p}: no such file", hint="give the records the model will serve, e.g. the "
                                                             "training JSONL of `edgedistill generate`")
    try:
        records = load_records(p)
    except EdgeDistillError as exc:
        raise DataError(f"{option}: {exc.message}", hint=exc.hint) from None
    rows = _rows(p, len(records))
    texts = []
    for rec, row in zip(records[:max_records], rows[:max_records]):
        prompt = render_plain(rec["messages"], record_plain_cue(row)) if "messages" in rec else rec["prompt"]
        answer = next((row[k] for k in ANSWER_FIELDS if isinstance(row.get(k), str) and row[k]), None)
        answer = answer if answer is not None else rec.get("reference")
        texts.append(prompt + ("\n" + answer if answer else ""))
    return CalibrationData(p, sha256_file(p) if p.is_file() else _dir_sha(p), len(texts), texts)


def _rows(p: Path, n: int) -> list[dict]:
    """Each JSONL record as written (``load_records`` keeps prompts only; the answer and the cue it was
    generated after are read from here); empty dicts for other formats."""
    if p.suffix != ".jsonl":
        return [{}] * n
    rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row if isinstance(row, dict) else {} for row in rows]  # parsed once already: cannot fail


def _dir_sha(d: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(x for x in d.rglob("*") if x.is_file()):
        h.update(f.relative_to(d).as_posix().encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()

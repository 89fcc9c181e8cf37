"""Load prompts from JSONL, JSON, CSV, Parquet or a ``datasets`` directory into normalised records.

Every record comes back as a plain dict::

    {"id": "...", "messages": [{"role": "user", "content": "..."}, ...]}   # chat form
    {"id": "...", "prompt": "..."}                                          # plain form
    # + "reference": "..." when the input has one

Rules (documented in docs/generate.md):

- chat form: a ``messages`` list of ``{"role", "content"}``. A trailing assistant turn is the
  original answer: it is removed from the prompt and becomes ``reference`` unless one is given.
- plain form: the text in ``prompt`` (or ``prompt_field``); a list of chat messages there is read as
  the chat form, any other value that is not text (a number, a list of strings) is refused. Records
  with ``premise`` and
  ``hypothesis`` (NLI data) and no prompt get ``"Premise: ...\\nHypothesis: ..."``.
- ``reference`` (or ``reference_field``; also ``answer`` / ``label`` when present) is kept as text.
- ``id``: the record's own ``id`` field when it has one, else a hash of the prompt, so a rerun on
  the same file gives the same ids (needed to resume). Repeated prompts get ``-2``, ``-3``... suffixes.

Errors are :class:`DataError` naming the file and line (JSONL/CSV) or row (Parquet / datasets).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from edgedistill.errors import DataError

SUPPORTED_FORMATS = (".jsonl", ".json", ".csv", ".parquet", "datasets directory (save_to_disk)")
VALID_ROLES = ("system", "user", "assistant")
# Reference columns tried in order when reference_field is not given.
REFERENCE_FIELDS = ("reference", "answer", "label")


def load_records(
    path: str | os.PathLike,
    prompt_field: str | None = None,
    reference_field: str | None = None,
    split: str | None = None,
) -> list[dict]:
    """Read ``path`` and return normalised records (see the module docstring).

    ``prompt_field`` / ``reference_field`` name the columns to use when they are not ``prompt`` /
    ``reference``. ``split`` picks a split of a saved ``DatasetDict``.
    Raises :class:`DataError` for a missing, malformed or empty file, or records lacking fields.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    rows = _iter_rows(p, split)
    out: list[dict] = []
    seen: dict[str, str] = {}
    id_counts: dict[str, int] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object per record, got {type(row).__name__}")
        rec = _normalise(row, where, prompt_field, reference_field)
        if "id" in row and row["id"] not in (None, ""):
            rid = str(row["id"])
            if rid in seen:
                raise DataError(f"{where}: id {rid!r} was already used at {seen[rid]}; ids must be unique")
        else:
            rid = record_id(rec)
            n = id_counts.get(rid, 0) + 1
            id_counts[rid] = n
            if n > 1:
                rid = f"{rid}-{n}"
        seen[rid] = where
        out.append({"id": rid, **rec})
    if not out:
        raise DataError(f"{p}: the data set is empty (no records)", hint="check that you passed the right file")
    return out


def record_id(record: dict) -> str:
    """A stable id from the prompt content (16 hex chars of sha256)."""
    key = record.get("messages") if "messages" in record else record.get("prompt")
    blob = json.dumps(key, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# --- readers: each yields (where, row) with `where` = "file:line" or "file row N" -------------------


def _iter_rows(p: Path, split: str | None) -> Iterator[tuple[str, Any]]:
    if p.is_dir():
        return _iter_datasets_dir(p, split)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return _iter_jsonl(p)
    if suffix == ".json":
        return _iter_json(p)
    if suffix == ".csv":
        return _iter_csv(p)
    if suffix == ".parquet":
        return _iter_parquet(p)
    raise DataError(
        f"{p}: unsupported data format {suffix or '(no extension)'!r}",
        hint=f"use one of: {', '.join(SUPPORTED_FORMATS)}",
    )


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows tools
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _iter_jsonl(p: Path) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        yield f"{p}:{lineno}", row


def _iter_json(p: Path) -> Iterator[tuple[str, Any]]:
    text = _read_text(p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several objects, one per line: really JSONL
            yield from _iter_jsonl(p)
            return
        raise DataError(f"{p}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of records, got {type(data).__name__}")
    for i, row in enumerate(data):
        yield f"{p} record {i}", row


def _iter_csv(p: Path) -> Iterator[tuple[str, Any]]:
    with open(p, newline="", encoding="utf-8-sig") as fh:
        try:
            reader = csv.DictReader(fh)
            for row in reader:
                # reader.line_num is the line the row ended on (rows may span lines)
                yield f"{p}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{p}: malformed CSV: {exc}") from None


def _iter_parquet(p: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"{p}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{p} row {i}", row


def _iter_datasets_dir(p: Path, split: str | None) -> Iterator[tuple[str, Any]]:
    if not ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()):
        raise DataError(
            f"{p} is a directory but not a saved `datasets` data set (no dataset_info.json or dataset_dict.json)",
            hint="pass a .jsonl/.csv/.parquet file, or a directory written by Dataset.save_to_disk",
        )
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(p))
    except Exception as exc:
        raise DataError(f"{p}: could not load the saved data set: {str(exc).splitlines()[0]}") from None
    if isinstance(ds, DatasetDict):
        names = list(ds.keys())
        if split is None:
            if len(names) != 1:
                raise DataError(f"{p} has several splits ({', '.join(names)}); choose one with split")
            split = names[0]
        if split not in ds:
            raise DataError(f"{p} has no split {split!r}; splits: {', '.join(names)}")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield f"{p} row {i}", row


# --- normalisation ------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _normalise(row: dict, where: str, prompt_field: str | None, reference_field: str | None) -> dict:
    fields = ", ".join(sorted(map(str, row))) or "(none)"
    rec: dict[str, Any] = {}
    name = prompt_field or "prompt"
    raw = row.get(name)
    chat_prompt = isinstance(raw, list) and bool(raw) and all(isinstance(m, dict) for m in raw)
    if chat_prompt or (prompt_field is None and "messages" in row and row["messages"] is not None):
        messages = _check_messages(raw if chat_prompt else row["messages"], where)
        if messages[-1]["role"] == "assistant":
            rec["reference"] = messages[-1]["content"]
            messages = messages[:-1]
        if not any(m["role"] == "user" for m in messages):
            raise DataError(f"{where}: 'messages' has no user turn to answer")
        rec["messages"] = messages
    else:
        if raw is not None and not isinstance(raw, str):  # never send a list/number as its Python text
            raise DataError(f"{where}: field {name!r} is a {type(raw).__name__} ({json.dumps(raw, default=str)[:60]}), not text",
                            hint="give the prompt as a string, or as a list of {role, content} chat messages")
        prompt = _text(raw)
        if prompt is None and prompt_field is None and "premise" in row and "hypothesis" in row:
            prompt = f"Premise: {_text(row['premise'])}\nHypothesis: {_text(row['hypothesis'])}"
        if prompt is None:
            hint = "name the prompt column with --prompt-field" if prompt_field is None else None
            wanted = f"{name!r}" if prompt_field else "'prompt' or 'messages'"
            raise DataError(f"{where}: record has no {wanted} field; its fields are: {fields}", hint=hint)
        if not prompt.strip():
            raise DataError(f"{where}: field {name!r} is empty")
        rec["prompt"] = prompt
    if reference_field is not None:
        if reference_field not in row:
            raise DataError(f"{where}: record has no {reference_field!r} field; its fields are: {fields}")
        rec["reference"] = _text(row[reference_field])
    else:
        for name in REFERENCE_FIELDS:
            if row.get(name) is not None:
                rec["reference"] = _text(row[name])
                break
    if not rec.get("reference"):  # absent, null or an empty CSV cell
        rec.pop("reference", None)
    return rec


def _check_messages(messages: Any, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: messages[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in VALID_ROLES:
            raise DataError(f"{where}: messages[{i}] has role {m['role']!r}; valid: {', '.join(VALID_ROLES)}")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: messages[{i}].content must be text")
        out.append({"role": m["role"], "content": m["content"]})
    return out

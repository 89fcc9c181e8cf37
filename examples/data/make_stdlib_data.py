"""Derive the quickstart data set from the docstrings of Python's standard library.

    .venv/bin/python examples/data/make_stdlib_data.py            # rewrites stdlib_summaries_{train,test}.jsonl

Task (edgedistill task ``summarization``, chat form): the user turn shows a function's signature and its
docstring *without* the summary line; the reference is that summary line (the docstring's first
sentence). So the model has to say in one sentence what the function does, and the reference is the
sentence the function's authors wrote.

Deterministic: modules, classes and functions are visited in sorted order, records are filtered by fixed
rules, and the train/test split is a hash of the record id. Docstrings differ between Python versions;
the committed files were made with the version named in their ``python`` field (see README.md).

Licence: the docstring text is from CPython's standard library, (c) Python Software Foundation, under the
PSF License Agreement; this script is part of edgedistill (Apache-2.0).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import platform
import re
import sys
import warnings
from pathlib import Path

MODULES = [
    "argparse", "base64", "binascii", "bisect", "calendar", "codecs", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.utils", "enum",
    "fnmatch", "fractions", "functools", "getopt", "glob", "gzip", "hashlib", "heapq", "hmac", "html",
    "inspect", "io", "ipaddress", "itertools", "json", "keyword", "linecache", "locale", "logging",
    "math", "mimetypes", "operator", "os", "os.path", "pathlib", "pickle", "platform", "pprint", "queue",
    "random", "re", "secrets", "shlex", "shutil", "statistics", "string", "struct", "tarfile", "tempfile",
    "textwrap", "threading", "time", "timeit", "tokenize", "traceback", "types", "typing", "unicodedata",
    "urllib.parse", "uuid", "warnings", "weakref", "xml.etree.ElementTree", "zipfile", "zlib",
]
# More training prompts (appended to the train file after MODULES' own): every record of the other stdlib
# modules is a training prompt; the test file stays the 116 records of MODULES. The 12-block quickstart student
# kept 83 % of the teacher's ROUGE-L on MODULES' 404 training prompts alone and 90 % with these 699 more
# (benchmarks/results/student_shape.md).
# Skipped: modules with side effects on import (antigravity opens a browser, this prints), GUI,
# Windows-only and test packages.
SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "test",
                "ensurepip", "venv", "pydoc_data", "msilib", "winreg", "winsound", "msvcrt", "nt", "pty", "tty"}
SUBMODULES = [
    "email.message", "email.parser", "email.header", "email.headerregistry", "email.policy", "email.mime.text",
    "http.client", "http.cookies", "http.cookiejar", "http.server", "concurrent.futures", "asyncio",
    "json.decoder", "json.encoder", "xml.dom.minidom", "xml.sax", "logging.handlers", "importlib.metadata",
    "importlib.resources", "unittest", "unittest.mock", "multiprocessing", "sqlite3.dbapi2", "urllib.request",
    "urllib.error", "urllib.robotparser", "collections.abc", "wsgiref.handlers", "ctypes.util", "curses.ascii",
    "dbm.dumb", "encodings.idna",
]
INSTRUCTION = "Summarize what this Python function does in one sentence."
MAX_BODY_CHARS = 320  # keeps prompt + answer within ~128 tokens for the CPU quickstart
TEST_SHARE = 0.25
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`'\"])|\n\s*\n")


def _signature(name: str, obj) -> str:
    try:
        # a default's repr may carry its memory address ("<object object at 0x7f...>"): drop it, so the
        # files are the same on every run
        sig = re.sub(r" at 0x[0-9a-f]+>", ">", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        sig = "(...)"
    return f"def {name}{sig}:"


def _split_summary(doc: str) -> tuple[str, str] | None:
    """(first sentence, the rest) of a docstring, or None when it does not fit the task."""
    lines = doc.strip().splitlines()
    if lines and re.match(r"^[\w.]+\(.*\)(\s*->.*)?$", lines[0].strip()):  # C functions repeat their signature
        lines = lines[1:]
    text = "\n".join(lines).strip()
    parts = _SENTENCE_END.split(text, maxsplit=1)
    if len(parts) != 2:
        return None
    first = " ".join(parts[0].split())
    rest = parts[1].strip()
    if not (20 <= len(first) <= 160) or not first[0].isupper() or not first.endswith("."):
        return None
    if len(rest) < 60 or ">>>" in rest[:80]:
        return None
    if len(rest) > MAX_BODY_CHARS:  # cut at a sentence or line end
        cut = rest[:MAX_BODY_CHARS]
        stop = max(cut.rfind(". "), cut.rfind(".\n"), cut.rfind("\n"))
        rest = cut[: stop + 1] if stop > 60 else cut
    return first, rest.rstrip()


def _functions(module_name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = importlib.import_module(module_name)
    for name in sorted(vars(mod)):
        if name.startswith("_"):
            continue
        obj = vars(mod)[name]
        if inspect.isclass(obj) and getattr(obj, "__module__", None) == mod.__name__:
            for meth in sorted(vars(obj)):
                if meth.startswith("_"):
                    continue
                fn = vars(obj)[meth]
                if inspect.isfunction(fn) or inspect.isbuiltin(fn) or inspect.ismethoddescriptor(fn):
                    yield f"{module_name}.{name}.{meth}", meth, fn
        elif (inspect.isfunction(obj) or inspect.isbuiltin(obj)) and getattr(obj, "__module__", None) in (
            mod.__name__, module_name, None
        ):
            yield f"{module_name}.{name}", name, obj


def extra_train_modules() -> list[str]:
    top = sorted(n for n in sys.stdlib_module_names
                 if not n.startswith("_") and n not in MODULES and n not in SKIP_MODULES)
    return top + SUBMODULES


def build_records(modules: list[str], seen_docs: set[str]) -> list[dict]:
    """Records of ``modules`` in order; a docstring already in ``seen_docs`` (an alias) is skipped."""
    records = []
    for module_name in modules:
        try:
            functions = list(_functions(module_name))
        except ImportError:  # a platform's optional module (e.g. nis, spwd, curses without ncurses)
            continue
        for qualname, name, fn in functions:
            doc = inspect.getdoc(fn)
            if not doc:
                continue
            split = _split_summary(doc)
            if split is None:
                continue
            first, rest = split
            if first in seen_docs:  # aliases and shared docstrings: keep one
                continue
            seen_docs.add(first)
            body = "\n".join("    " + line if line else "" for line in rest.splitlines())
            code = f'{_signature(name, fn)}\n    """{body.lstrip()}\n    """'
            records.append({
                "id": qualname,
                "messages": [{"role": "user", "content": f"{INSTRUCTION}\n\n```python\n{code}\n```"}],
                "reference": first,
            })
    return records


def is_test(record_id: str) -> bool:
    h = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < TEST_SHARE


def main(out_dir: Path = Path(__file__).parent) -> None:
    seen_docs: set[str] = set()
    records = build_records(MODULES, seen_docs)
    meta = {"source": "CPython stdlib docstring (PSF License)", "python": platform.python_version()}
    train = [r | meta for r in records if not is_test(r["id"])]
    test = [r | meta for r in records if is_test(r["id"])]
    # after MODULES, so an alias of a docstring already used is skipped
    train += [r | meta for r in build_records(extra_train_modules(), seen_docs)]
    for name, rows in [("stdlib_summaries_train.jsonl", train), ("stdlib_summaries_test.jsonl", test)]:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out_dir / name).write_text(text, encoding="utf-8")
        print(f"{out_dir / name}: {len(rows)} records")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)

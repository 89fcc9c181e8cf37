"""'format:quant' (``gguf:q4_k_m``, ``onnx:int4``, a bare ``q4_k_m``) parsed once, where it enters.

Export artifacts, ``distill --qat``, ``plan --quant`` and device profiles' ``preferred_quants`` name an
artifact kind as text. Each is parsed here into a :class:`FormatQuant` by the settings'
``__post_init__`` (or the library entry point) and the typed object goes inward, so no stage splits a
string or compares ``"onnx"`` with a hand-typed name again. Validation is against the export formats'
registry (``export.formats.FORMATS``: each format's ``quants``), imported only when a spec is parsed:
profiles and artifacts are read on machines without the exporters, so this module imports nothing
heavy. The error messages are the ones every site shows (unknown names get "did you mean ...?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Mapping

from edgedistill.config import require
from edgedistill.errors import did_you_mean

_QUANT_RE = re.compile(r"^[a-z0-9_]+$")
EXAMPLE = "e.g. gguf:q4_k_m, onnx:int4"


@dataclass(frozen=True)
class FormatQuant:
    """One artifact kind: an export format and one of its quantization types."""

    format: str
    quant: str

    def __str__(self) -> str:
        return f"{self.format}:{self.quant}"

    def __iter__(self) -> Iterator[str]:
        """``fmt, quant = spec``: the stages that take the two names apart keep working."""
        return iter((self.format, self.quant))

    @classmethod
    def parse(cls, text: object, default_format: str | None = None, *, field: str = "artifacts",
              bare: bool = False, known: Mapping[str, object] | None = None) -> FormatQuant:
        """``'onnx:int4'`` -> ``FormatQuant('onnx', 'int4')``; a :class:`~edgedistill.errors.ConfigError`
        naming ``field`` otherwise.

        A bare quant (``'q4_k_m'``) is read as ``default_format``'s, or (``bare=True``) as the one format
        that has it. ``known`` maps each acceptable format to its quant names, or to None to accept any
        well-formed quant (a device profile names quants of formats it may not have installed); the
        default is every registered export format with its ``quants``.
        """
        if isinstance(text, cls):
            return text
        known = _registered_quants() if known is None else known
        fmt, sep, quant = str(text).strip().partition(":")
        if not sep and (default_format or bare):  # a bare quant: whose is it?
            fmt, quant = default_format, fmt
            if bare and not _has(known, default_format, quant):
                fmt = _owner(str(text), quant, known, field)
        require(bool(fmt and quant) and ":" not in quant, field, f"{str(text)!r} is not 'format:quant' ({EXAMPLE})")
        require(fmt in known, field, f"unknown export format {fmt!r}; {did_you_mean(fmt, known)}")
        quants = known[fmt]
        if quants is None:
            require(bool(_QUANT_RE.match(quant)), field, f"{str(text)!r} is not 'format:quant' ({EXAMPLE})")
        else:
            require(quant in quants, field,
                    f"quantization {quant!r} is not available for format {fmt}; {did_you_mean(quant, quants)}")
        return cls(fmt, quant)

    @classmethod
    def parse_list(cls, items: object, *, field: str = "artifacts", **kw) -> list[FormatQuant]:
        """A list (or comma-separated string) of specs, each parsed; duplicates dropped, order kept."""
        if isinstance(items, str):
            items = [s for s in items.split(",") if s.strip()]
        require(isinstance(items, (list, tuple)), field, f"must be a list of 'format:quant' ({EXAMPLE})")
        return list(dict.fromkeys(cls.parse(i, field=field, **kw) for i in items))


def _registered_quants() -> dict[str, list[str]]:
    from edgedistill.export.formats import FORMATS  # its first lookup imports the built-in formats

    return {name: list(fmt.quants) for name, fmt in FORMATS.items()}


def _has(known: Mapping[str, object], fmt: str | None, quant: str) -> bool:
    return fmt in known and (known[fmt] is None or quant in known[fmt])


def _owner(text: str, quant: str, known: Mapping[str, object], field: str) -> str:
    """The one format that has ``quant``; an error naming the candidates (or all) otherwise."""
    owners = [f for f, qs in known.items() if qs is not None and quant in qs]
    if len(owners) == 1:
        return owners[0]
    listing = "; ".join(f"{f}: {', '.join(qs)}" for f, qs in known.items() if qs is not None)
    if owners:
        require(False, field, f"{text!r} is a quant of {' and '.join(owners)}; say which, e.g. {owners[0]}:{quant}")
    every = [q for qs in known.values() if qs is not None for q in qs]
    require(False, field, f"{text!r}: no format has this quantization; {did_you_mean(quant, every, label=None)} "
                          f"({listing})")
    raise AssertionError("unreachable")

"""The one exception type users see.

Library code raises :class:`EdgeDistillError` for anything the user can fix (bad input, missing file,
unknown name). The CLI prints its message and exits non-zero without a traceback; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class EdgeDistillError(Exception):
    """A problem with the user's input or environment, with a message that says what to do.

    ``hint`` is an optional second sentence telling the user how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ConfigError(EdgeDistillError):
    """A setting (a dataclass field, a YAML key, a CLI option) has an invalid value."""


class DataError(EdgeDistillError):
    """An input data file is malformed, empty or lacks fields."""


class VerificationError(EdgeDistillError):
    """An exported artifact does not behave like the model it came from."""

    exit_code = 3


def did_you_mean(name: str, known: Iterable[str], label: str | None = "valid") -> str:
    """The tail of every 'unknown X' message: what is valid (in the order given), then the closest valid
    name when ``name`` looks like a typo of it: "valid: q4_k_m, q8_0; did you mean 'q4_k_m'?"."""
    known = [str(k) for k in known]
    # 0.8: catches a dropped, doubled or swapped letter (onx, gguff, q4_k_n) without offering 'math' for 'chat'
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.8)
    listed = ", ".join(known) or "(none)"
    return (f"{label}: {listed}" if label else listed) + (f"; did you mean {close[0]!r}?" if close else "")

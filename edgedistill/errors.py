"""The one exception type users see.

Library code raises :class:`EdgeDistillError` for anything the user can fix (bad input, missing file,
unknown name). The CLI prints its message and exits non-zero without a traceback; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


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


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """'unknown X' messages always list what is valid."""
    return ", ".join(sorted(known)) or "(none)"

"""Click options made from settings fields, so an option's default, help and type are the field's own.

    @setting(DistillConfig, "loss_chunk_tokens")                 # --loss-chunk-tokens, default None
    @setting(DistillConfig, "gradient_accumulation_steps", "--grad-accum")
    @setting(TeacherConfig, "path", "--teacher", dest="teacher_path")
    @setting(BenchConfig, "verify_hashes")                       # --verify-hashes/--no-verify-hashes

A default or help text cannot be passed (a TypeError says so): it would be a second copy that drifts.
Each option records its field (``option.settings_field``); tests/test_cli_options.py walks every
command and fails on an option that re-declares a settings field by hand. Options with no field
behind them (--json, --stop) stay plain ``click.option``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Callable

import click

# What the field's type becomes on the command line (after dropping `| None`).
_SCALARS = {int: int, float: float, str: str, Path: str}


@dataclasses.dataclass(frozen=True)
class SettingsField:
    """Where an option came from; ``to_cli`` turns the field's default into the option's form."""

    cls: type
    name: str
    to_cli: Callable[[Any], Any] | None = None

    @property
    def field(self) -> dataclasses.Field:
        return field_of(self.cls, self.name)

    def cli_default(self) -> Any:
        """The option's default as derived from the field (None: the option has none)."""
        value = field_default(self.field)
        if value is None or value is dataclasses.MISSING:
            return None
        if self.to_cli is not None:
            return self.to_cli(value)
        return tuple(value) if isinstance(value, list) else value


def field_of(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise AttributeError(f"{cls.__name__} has no settings field {name!r}")


def field_default(f: dataclasses.Field) -> Any:
    """The field's default (calling its factory), or ``dataclasses.MISSING`` for a required field."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def cli_help(f: dataclasses.Field) -> str:
    """The field's help as --help shows it: the metadata text, a leading plain word capitalised."""
    text = f.metadata.get("help", "")
    if not text:  # a derived option without help is a programming error; fail when cli.py is imported
        raise ValueError(f"settings field {f.name!r} has no metadata help")
    first = text.split(" ", 1)[0]
    # "sampling temperature" reads as a sentence; "onnx:int4 ..." and "llama.cpp ..." are names, kept as written
    return text[0].upper() + text[1:] if first.isalpha() and first.islower() else text


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    # resolving a class's string annotations costs about a millisecond, and the CLI asks once per option
    return typing.get_type_hints(cls)


def _field_type(cls: type, name: str) -> tuple[Any, bool]:
    """(scalar type, is_list) of a field, with `X | None` unwrapped."""
    tp = _type_hints(cls)[name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0], True
    return tp, False


def _flag_decls(name: str, default: bool, decls: tuple[str, ...]) -> tuple[str, ...]:
    if decls:
        return decls
    flag = "--" + name.replace("_", "-")
    # A field that is on by default is turned off with --no-NAME (the spelling the CLI always had).
    return (f"{flag}/--no-{flag[2:]}",) if default else (flag,)


def setting(cls: type, name: str, *decls: str, dest: str | None = None,
            to_cli: Callable[[Any], Any] | None = None, **kwargs: Any) -> Callable:
    """A click option for field ``name`` of settings class ``cls``.

    ``decls``: the flag spellings (default ``--field-name``; a bool field on by default gets
    ``--name/--no-name``). ``dest``: the parameter name (default: the field's). ``to_cli``: converts
    the default to the option's form where that differs (a list given as "128,512"). Other keyword
    arguments go to ``click.option`` (metavar, hidden, type for a list typed as one string...).
    """
    for own in ("default", "help", "show_default"):
        if own in kwargs:
            raise TypeError(f"setting({cls.__name__}, {name!r}): {own} comes from the field; do not pass it")
    source = SettingsField(cls, name, to_cli)
    f = source.field
    default = field_default(f)
    scalar, is_list = _field_type(cls, name)
    if default is dataclasses.MISSING:
        kwargs.setdefault("required", True)
    if scalar is bool and not is_list:
        decls = _flag_decls(name, bool(default), decls)
        kwargs.update(is_flag=True, default=bool(default))
    else:
        decls = decls or ("--" + name.replace("_", "-"),)
        if is_list and "type" not in kwargs:
            kwargs.setdefault("multiple", True)
        if "type" not in kwargs and "choices" in f.metadata:
            kwargs["type"] = click.Choice([str(c) for c in f.metadata["choices"]])
        kwargs.setdefault("type", _SCALARS.get(scalar))
        if not kwargs.get("required"):
            kwargs["default"] = source.cli_default()
            kwargs["show_default"] = kwargs["default"] not in (None, ())

    def decorate(fn: Callable) -> Callable:
        fn = click.option(*decls, dest or name, help=cli_help(f), **kwargs)(fn)
        added = fn.params if isinstance(fn, click.Command) else fn.__click_params__
        added[-1].settings_field = source  # the option click.option just appended
        return fn

    return decorate

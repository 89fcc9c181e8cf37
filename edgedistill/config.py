"""Settings are dataclasses; this module turns YAML / dicts into them with clear errors.

Every settings class in edgedistill is a ``@dataclass`` whose fields carry ``metadata={"help": ...}``
(optionally ``"choices"``) and whose ``__post_init__`` validates values with :func:`require`. YAML
recipes are instances of them, loaded with :func:`load_yaml` + :func:`from_dict`, which name the file
and the offending key; CLI options are made from the same fields (edgedistill/cli_options.py).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from edgedistill.errors import ConfigError, did_you_mean
from edgedistill.registry import Registry

C = TypeVar("C")


def require(cond: bool, field: str, message: str) -> None:
    """Raise a :class:`ConfigError` naming ``field`` unless ``cond`` holds (use in __post_init__)."""
    if not cond:
        raise ConfigError(f"invalid setting {field!r}: {message}")


def one_of(value: Any, field: str, valid: typing.Iterable[Any]) -> None:
    valid = list(valid)
    require(value in valid, field, f"{value!r} is not one of {did_you_mean(str(value), valid, label=None)}")


def registered(value: Any, field: str, registry: Registry) -> None:
    """Raise a :class:`ConfigError` naming ``field`` unless ``value`` is registered in ``registry``; the
    message lists the valid names and the near miss ("did you mean 'qa'?")."""
    require(value in registry, field, f"unknown {registry.kind} {value!r}; {did_you_mean(str(value), registry.names())}")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error naming the valid ones.

    Nested dataclass fields are built recursively. ``where`` prefixes messages (e.g. the YAML file
    and section) so the user knows where to look.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where + ': ' if where else ''}unknown key(s) {', '.join(map(repr, unknown))} "
            f"for {cls.__name__}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        tp = hints.get(name)
        sub = _dataclass_in(tp)
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value, where=f"{where}.{name}" if where else name)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if where:
            raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
        raise
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def _dataclass_in(tp: Any) -> type | None:
    if _is_dataclass_type(tp):
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if _is_dataclass_type(arg):
                return arg
    return None


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    import yaml  # here, not at the top: every settings module (and so `--help`) imports this one

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data (for manifests, logs and recorded settings)."""
    return dataclasses.asdict(obj)

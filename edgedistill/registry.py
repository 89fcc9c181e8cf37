"""One registry style for everything pluggable: architectures, quant types, losses, tasks, runtimes,
teachers and transports.

    LOSSES = Registry("loss")

    @LOSSES.register("forward_kl")
    def forward_kl(...): ...

    LOSSES.get("forward_kl")      # -> the function
    LOSSES.get("nope")            # -> EdgeDistillError listing the valid names
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgedistill.errors import EdgeDistillError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with clear errors for unknown names."""

    def __init__(self, kind: str, loader: Callable[[], object] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        # Imports the modules that register the built-in entries, at the first lookup rather than when
        # the registry's module is imported (the CLI reads settings modules without needing any entry).
        self._loader = loader

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None  # what the loader registers must not call it again
            try:
                loader()
            except BaseException:
                self._loader = loader  # a failed import is reported again at the next lookup
                raise

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; used bare or as a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def deco(o: T) -> T:
            self._add(name, o)
            return o

        return deco

    def _add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise EdgeDistillError(f"unknown {self.kind} {name!r}; {did_you_mean(str(name), self.names())}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)

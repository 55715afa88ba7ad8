"""A small name → factory registry shared by models, datasets, metrics and cuboid patterns.

Look-up is case-insensitive; an unknown name raises ``ValueError`` listing the valid names.
Third-party packages may add entries through the entry-point group given at construction
(e.g. ``earthcast.models``); discovery is lazy and never overwrites a built-in entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-cased names to factories returning ``T``."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._entry_point_group = entry_point_group
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name`` (default: the function's name)."""

        def decorate(fn: F) -> F:
            self.add(name or fn.__name__, fn)
            return fn

        return decorate

    def add(self, name: str, factory: Callable[..., T]) -> None:
        key = name.lower()
        if key in self._entries and self._entries[key] is not factory:
            warnings.warn(f"{self.kind} '{name}' is registered twice; the later one wins", stacklevel=3)
        self._entries[key] = factory

    def get(self, name: str) -> Callable[..., T]:
        self._load_plugins()
        if not isinstance(name, str):
            raise ValueError(
                f"a {self.kind} is named by a string, got {name!r}. Valid names: {', '.join(self.names())}"
            )
        key = name.lower()
        if key not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}'. Valid names: {', '.join(self.names())}")
        return self._entries[key]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self._entry_point_group or ""):
            if ep.name.lower() in self._entries:
                continue  # never let a plug-in shadow a built-in
            try:
                self._entries[ep.name.lower()] = ep.load()
            except Exception as err:  # a broken plug-in must not break the library
                warnings.warn(f"could not load {self.kind} plug-in '{ep.name}': {err}", stacklevel=2)

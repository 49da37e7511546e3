"""One registry class for every kind of plug-in: entries by name, aliases, lazy factories, and
outside packages through the entry-point group ``whetstone.<kind>``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from whetstone.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one plug-in kind; a string value "module:attr" is imported on first use.

    Outside packages add entries through the entry-point group ``whetstone.<kind>``: each entry
    point names an object (or a callable returning one) that is registered under its name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = False

    def register(self, name: str, entry: T | str, *, aliases: tuple[str, ...] = ()) -> None:
        """Add ``entry`` under ``name`` (and its aliases); a name taken twice is refused."""
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[name] = entry
        self._aliases.update({alias: name for alias in aliases})

    def decorator(self, name: str, **kwargs: Any) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""

        def wrap(obj: T) -> T:
            self.register(name, obj, **kwargs)
            return obj

        return wrap

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself or an alias); unknown names refused."""
        self._load_plugins()
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known)}")

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries or name in self._aliases

    def get(self, name: str) -> T:
        """The entry behind ``name``, importing a lazy "module:attr" entry the first time."""
        key = self.canonical(name)
        entry = self._entries[key]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[key] = entry
        return entry

    def names(self) -> list[str]:
        """Registered names in registration order (aliases not included)."""
        self._load_plugins()
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs, lazy entries imported."""
        for name in self.names():
            yield name, self.get(name)

    def _load_plugins(self) -> None:
        """Register the entry points of ``whetstone.<kind>`` once."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=f"whetstone.{self.kind}"):
            obj = point.load()
            entry = obj() if callable(obj) and not isinstance(obj, type) else obj
            if point.name not in self._entries:
                self._entries[point.name] = entry

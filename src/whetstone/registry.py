"""One registry class for every kind of plug-in: entries by name, aliases, metadata, lazy
"module:attr" entries, and outside packages through the entry-point group ``whetstone.<kind>``."""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from whetstone.errors import ConfigError

T = TypeVar("T")


def _import(target: str) -> Any:
    """The object a "module:attr" string names (attr may be dotted)."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one plug-in kind (an object, a class or a factory function).

    An entry given as a "module:attr" string is imported on first use. Outside packages add
    entries through the entry-point group ``whetstone.<kind>``; those are read once, the first
    time the registry is asked anything, and registered as loaded. ``aliases_of`` gives the
    aliases an entry declares itself (a plug-in's, for example); ``noun`` names one entry in
    messages ("metric" for the kind "metrics").
    """

    def __init__(
        self,
        kind: str,
        *,
        noun: str | None = None,
        aliases_of: Callable[[T], Iterable[str]] | None = None,
    ) -> None:
        self.kind = kind
        self.noun = noun or kind
        self._aliases_of = aliases_of
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._plugins_loaded = False

    def register(
        self, name: str, entry: T | str, *, aliases: Iterable[str] = (), **metadata: Any
    ) -> None:
        """Add ``entry`` under ``name`` and its aliases, with free-form ``metadata``; a name
        taken twice is refused."""
        keys = [name, *aliases]
        for key in keys:
            if key in self._entries or key in self._aliases or keys.count(key) > 1:
                raise ValueError(f"{self.noun} {key!r} is registered twice")
        self._entries[name] = entry
        self._aliases.update({alias: name for alias in keys[1:]})
        self._metadata[name] = dict(metadata)

    def decorator(self, name: str, **kwargs: Any) -> Callable[[T], T]:
        """``@registry.decorator("name", aliases=(...), **metadata)`` registers the object."""

        def wrap(obj: T) -> T:
            self.register(name, obj, **kwargs)
            return obj

        return wrap

    @contextmanager
    def override(self, name: str, entry: T | str) -> Iterator[None]:
        """Stand ``entry`` in for the registered ``name`` inside a ``with`` block (tests)."""
        key = self.canonical(name)
        saved = self._entries[key]
        self._entries[key] = entry
        try:
            yield
        finally:
            self._entries[key] = saved

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself or an alias); unknown names refused
        with the closest known name."""
        self._load_plugins()
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown {self.noun} {name!r}{hint}; known: {', '.join(known)}")

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries or name in self._aliases

    def get(self, name: str) -> T:
        """The entry behind ``name`` (or an alias), importing a lazy "module:attr" entry once."""
        key = self.canonical(name)
        entry = self._entries[key]
        if isinstance(entry, str):
            entry = _import(entry)
            self._entries[key] = entry
        return entry

    def metadata(self, name: str) -> dict[str, Any]:
        """The metadata ``name`` (or an alias) was registered with."""
        return dict(self._metadata[self.canonical(name)])

    def names(self) -> list[str]:
        """Registered names in registration order (aliases not included)."""
        self._load_plugins()
        return list(self._entries)

    def aliases(self) -> dict[str, str]:
        """Every alias and the name it stands for."""
        self._load_plugins()
        return dict(self._aliases)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs in registration order, lazy entries imported."""
        for name in self.names():
            yield name, self.get(name)

    def _load_plugins(self) -> None:
        """Register the entry points of ``whetstone.<kind>`` (once); one whose name is taken
        or that ``aliases_of`` refuses (TypeError) is skipped with a warning."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=f"whetstone.{self.kind}"):
            obj = point.load()
            try:
                aliases = tuple(self._aliases_of(obj)) if self._aliases_of else ()
                self.register(point.name, obj, aliases=aliases, entry_point=point.value)
            except (TypeError, ValueError) as err:
                warnings.warn(f"entry point {point.value!r} skipped: {err}", stacklevel=3)

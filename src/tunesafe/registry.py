"""One plugin mechanism for every family (attacks, judges, backends, screeners): built-ins register on
import with a decorator; third-party plugins register through the entry-point group
`tunesafe.<family>` and are loaded the first time the registry is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from tunesafe.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}
        self._loaded_entry_points = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.family} '{name}' is registered twice")
        self._items[name] = obj

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=f"tunesafe.{self.family}"):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the built-ins down with it
                raise UserError(
                    f"plugin '{ep.name}' ({ep.value}) failed to load: {exc}",
                    where=f"entry point group tunesafe.{self.family}",
                    fix="fix or uninstall the plugin package",
                ) from exc
            self._items.setdefault(ep.name, obj)

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UserError(
                f"unknown {self.family} '{name}'", fix=f"use one of: {known}"
            ) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load_entry_points()
        yield from sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

"""A tiny name -> object registry shared by every kind of plug-in.

Estimators, set objectives, clusterers, reward functions and tasks each keep one
:class:`Registry`. Looking up an unknown name raises :class:`UnknownNameError`, whose
message lists every valid name (and the closest match, when there is one).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that no plug-in was registered under.

    Subclasses both :class:`KeyError` (it is a failed look-up) and :class:`ValueError`
    (it is a bad argument value), so either ``except`` clause catches it.
    """

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps names to plug-ins of one kind (``kind`` names it in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` adds the decorated object."""

        def add(obj: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``; :class:`UnknownNameError` if none."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: object) -> str:
        valid = ", ".join(self.names()) or "(none registered)"
        msg = f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}"
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        return msg

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

"""A tiny name -> object registry shared by every kind of plug-in.

Estimators, set objectives, clusterers, reward functions and tasks each keep one
:class:`Registry`. Looking up an unknown name raises :class:`UnknownNameError`, whose
message lists every valid name (and the closest match, when there is one).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

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


def check_options(factory: Callable[..., Any], options: Mapping[str, Any], what: str) -> None:
    """Raise ``ValueError`` for option names ``factory`` does not take, listing the valid ones
    (and the closest match). ``what`` names the plug-in, e.g. ``"task 'jsonl_code'"``.
    Factories that take ``**kwargs`` check their own options."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in options if k not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {what}{hint}; valid options: {', '.join(valid)}")

"""A tiny name -> object registry shared by every kind of plug-in.

Estimators, set objectives, clusterers, reward functions, tasks and bundled models each keep
one :class:`Registry`. The registries are complete whatever was imported first: the first
use of any registry imports every built-in plug-in package (:data:`BUILTIN_PACKAGES`), so a
fresh process can build the ``toy_paths`` clusterer without importing ``polyepo.tasks``
first. Looking up an unknown name raises :class:`UnknownNameError`, whose message lists
every valid name (and the closest match); :meth:`Registry.build` also checks the options
(:class:`UnknownOptionError`, with did-you-mean) and the packages the plug-in needs
(:class:`MissingDependencyError`, naming the package to install), before building anything.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from .settings import did_you_mean, unknown_keys_message

T = TypeVar("T")

#: Packages whose import registers the built-in plug-ins (light imports: no torch, no openai).
BUILTIN_PACKAGES = ("polyepo.advantages", "polyepo.clustering", "polyepo.rewards", "polyepo.tasks",
                    "polyepo.models")
_builtins_state = "unloaded"


def load_builtins() -> None:
    """Import every built-in plug-in package once (re-entrant: a no-op while it runs)."""
    global _builtins_state
    if _builtins_state != "unloaded":
        return
    _builtins_state = "loading"
    try:
        for name in BUILTIN_PACKAGES:
            importlib.import_module(name)
    except BaseException:
        _builtins_state = "unloaded"
        raise
    _builtins_state = "loaded"


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that no plug-in was registered under.

    Subclasses both :class:`KeyError` (it is a failed look-up) and :class:`ValueError`
    (it is a bad argument value), so either ``except`` clause catches it.
    """

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return str(self.args[0]) if self.args else ""


class UnknownOptionError(TypeError, ValueError):
    """An option that the plug-in does not take (a ``TypeError`` as Python's own, and a ``ValueError``)."""


class MissingDependencyError(ImportError, ValueError):
    """A package the chosen plug-in needs is not installed; the message names it."""


class Registry(Generic[T]):
    """Maps names to plug-ins of one kind (``kind`` names it in error messages).

    Args:
        kind: what a plug-in is called in messages ("estimator", "task" ...).
        skip: leading positional parameters of a plug-in that are inputs, not options
            (2 for estimators: ``rewards, clusters``).
    """

    def __init__(self, kind: str, *, skip: int = 0) -> None:
        self.kind = kind
        self.skip = skip
        self._items: dict[str, T] = {}
        self._requires: dict[str, dict[str, str]] = {}
        self._options: dict[str, Callable[[], Mapping[str, Any]]] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` adds the decorated object."""

        def add(obj: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def require(self, name: str, **packages: str) -> None:
        """Declare what plug-in ``name`` needs: ``import_name="pip-name"`` (checked by :meth:`build`)."""
        self._requires.setdefault(name, {}).update(packages)

    def describe_options(self, name: str, options: Callable[[], Mapping[str, Any] | Iterable[str]]) -> None:
        """Give the options (names, or name -> default) of a plug-in whose factory takes ``**options``."""
        self._options[name] = options

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``; :class:`UnknownNameError` if none."""
        load_builtins()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: object) -> str:
        valid = ", ".join(self.names()) or "(none registered)"
        return f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}{did_you_mean(name, self.names())}"

    def options(self, name: str) -> dict[str, Any] | None:
        """Options of plug-in ``name`` and their defaults; None when they cannot be known."""
        obj = self.get(name)
        if name in self._options:
            described = self._options[name]()
            return dict(described) if isinstance(described, Mapping) else dict.fromkeys(described)
        return _signature_options(obj, self.skip)

    def check_options(self, name: str, options: Mapping[str, Any]) -> None:
        """Raise :class:`UnknownOptionError` for any option plug-in ``name`` does not take."""
        valid = self.options(name)
        if valid is None:
            return
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise UnknownOptionError(unknown_keys_message(unknown, list(valid), what="option",
                                                          where=f"{self.kind} {name!r}"))

    def check_requirements(self, name: str) -> None:
        """Raise :class:`MissingDependencyError` naming any package plug-in ``name`` needs but lacks."""
        self.get(name)
        missing = [pip for module, pip in self._requires.get(name, {}).items() if _absent(module)]
        if missing:
            raise MissingDependencyError(
                f"{self.kind} {name!r} needs the package(s) {', '.join(missing)}, which are not installed: "
                f"pip install {' '.join(repr(m) if ' ' in m else m for m in missing)} "
                "(or the polyepo extra that holds them; see the README)"
            )

    def build(self, name: str, **options: Any) -> Any:
        """``factory(**options)`` after checking the name, the packages and the options."""
        factory = self.get(name)
        self.check_requirements(name)
        self.check_options(name, options)
        return factory(**options)  # type: ignore[operator]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        load_builtins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        load_builtins()
        return len(self._items)


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def _signature_options(obj: Any, skip: int) -> dict[str, Any] | None:
    """Keyword options of a callable or class (after ``skip`` inputs); for a ``**options``
    factory, those of the class its return annotation names; None if unknowable."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    params = params[skip:]
    out = {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return out
    try:
        target = typing.get_type_hints(obj).get("return")
    except Exception:  # unresolvable annotations: leave the check to the factory
        return None
    if inspect.isclass(target) and target is not obj:
        inner = _signature_options(target, 0)
        return None if inner is None else {**out, **inner}
    return None

"""Helpers shared by the command modules: parsing, printing, clean error exits."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console

# soft_wrap: a message is one line however narrow the terminal (or the 80 columns rich assumes
# without one): paths and commands in it stay whole, and logs stay greppable.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., object])


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error (verbatim: brackets in it are not markup) and return the Exit to raise."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def error_message(e: BaseException) -> str:
    """The text of an exception as a user should read it: a KeyError's message without the
    quotes ``str(KeyError)`` adds, every other message exactly as raised."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e)


def user_errors(fn: F) -> F:
    """Turn ValueError/KeyError/OSError raised by library code into a one-line error exit."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, OSError, OverflowError) as e:
            raise fail(error_message(e)) from None

    return wrapper  # type: ignore[return-value]


def old_out(out: Path | None, short: Path | None) -> Path | None:
    """``--out`` from ``--out`` or from ``-o``, its deprecated spelling in eval, rescore and report
    (``-o`` means ``--option`` in every command that has options)."""
    if short is None:
        return out
    if out is not None:
        raise ValueError("give --out once (-o PATH is its deprecated spelling)")
    err_console.print("note: -o PATH for --out is deprecated and will go away; write --out PATH "
                      "(-o means --option key=value in the other commands)", highlight=False, soft_wrap=True)
    return short


#: the hidden, deprecated ``-o PATH`` of eval, rescore and report
OldOutOpt = Annotated[Optional[Path], typer.Option("-o", hidden=True, help="Deprecated spelling of --out.")]


def parse_number_list(text: str, name: str, cast: Callable[[str], object] = float) -> list:
    """``"1,0,0.5"`` or ``"[1, 0, 0.5]"`` -> list; clear error naming the option."""
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: not valid JSON ({e})") from None
        return [cast(str(v)) for v in values]
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from None


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``["key=value", ...]`` -> dict through the one ``key=value`` parser
    (:func:`polyepo.settings.parse_key_values`: 1, 0.5, true, null, [0, 100], {a: 1}, text)."""
    from ..settings import parse_key_values

    return parse_key_values(pairs, what="--option")


def quiet_libraries() -> None:
    """Silence library chatter (weight-loading bars, per-example dataset bars, warnings) so
    that polyepo's own progress and results stay readable. Errors still print."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "datasets", "trl", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.utils.logging.disable_progress_bar()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:
        pass


class GivenOptions(dict):
    """The values of :func:`dataclass_options`' options, defaults included; ``given``: the names
    set on the command line."""

    given: set[str] = set()


def dataclass_options(cls: type, *, into: str, short: dict[str, str] | None = None) -> Callable[[F], F]:
    """Decorator: one command-line option per field of dataclass ``cls`` (``--top-p``; help and
    default from the field, so the setting is defined once), collected into the dict argument
    ``into`` of the decorated command."""
    import dataclasses
    import inspect
    import typing
    from typing import Annotated

    from ..settings import field_default, field_help

    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = {f.name: field_default(f) for f in dataclasses.fields(cls)}

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name != into]
        for f in dataclasses.fields(cls):
            decls = [f"--{f.name.replace('_', '-')}", *([short[f.name]] if short and f.name in short else [])]
            default = field_default(f)  # shown in the help; None as the option's value tells "not given"
            shown = f" \\[default: {default}]" if default is not None else ""  # "\\[": not rich markup
            option = typer.Option(*decls, help=field_help(f) + shown, show_default=False)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[Optional[hints[f.name]], option]))

        @wraps(fn)
        def wrapper(*args, **kwargs):
            values = GivenOptions({name: kwargs.pop(name) for name in names if name in kwargs})
            values.given = {name for name, value in values.items() if value is not None}
            values.update({name: defaults[name] for name, value in values.items() if value is None})
            return fn(*args, **{into: values}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {}
        return wrapper  # type: ignore[return-value]

    return decorate

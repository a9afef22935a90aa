"""Helpers shared by the command modules: parsing, printing, clean error exits."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

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
    """``["key=value", ...]`` -> dict; values parsed as JSON when they can be (1, 0.5, true, [0,100])."""
    out: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--option expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


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

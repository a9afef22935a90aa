"""Settings defined once: ``key=value`` parsing, did-you-mean, and option help from dataclass fields.

Every setting of polyepo is a dataclass field whose ``metadata["help"]`` is its one description:
the CLI help, config-file checks and docs read it from there. This module holds the helpers
they share:

- :func:`parse_key_values`: the one parser of ``key=value`` pairs (command-line overrides,
  ``--option``, ``--task-option`` ...);
- :func:`did_you_mean` and :func:`unknown_keys_message`: one wording for unknown names;
- :func:`field_help` / :func:`help_field`: a field's help text, and a field built with one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_MISSING = dataclasses.MISSING


def parse_value(raw: str) -> Any:
    """A ``key=value`` value: JSON when it parses (``1``, ``0.5``, ``true``, ``null``, ``[0, 100]``),
    a YAML flow collection (``{set_size: 4}``, ``[a, b]``), else the text itself.
    An empty value is None; a value that opens a collection but is not valid YAML raises
    ``ValueError`` saying where it breaks."""
    text = raw.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if text[0] in "[{":
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"column {mark.column + 1}: " if mark is not None else ""
            raise ValueError(f"the value is not valid YAML ({where}{getattr(e, 'problem', None) or e})") from None
    return raw


def yaml_problem(e: Exception) -> str:
    """``line L, column C: what`` of a YAML error (lines and columns counted from 1)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def read_yaml_mapping(path: str | Path, what: str = "a mapping of keys") -> dict[str, Any]:
    """A YAML file whose top level is a mapping, as a dict (empty file: {}); ValueError naming
    the file, and the line and column where it breaks, otherwise."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be {what}, got {type(data).__name__}")
    return data


def parse_key_values(pairs: Iterable[str], *, what: str = "option", dotted: bool = False) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed by :func:`parse_value`.

    With ``dotted=True`` a key ``a.b.c`` fills nested dicts (config overrides). A pair without
    ``=``, and a key given twice (one value would be dropped), raise ``ValueError`` naming ``what``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} {pair!r} must look like key=value (e.g. set_size=4)")
        node = out
        parts = key.split(".") if dotted else [key]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{what} {pair!r} conflicts with another {what} of {p!r}")
        if parts[-1] in node:
            raise ValueError(f"{what} {key!r} is given twice ({pair!r} and an earlier value); give it once")
        try:
            node[parts[-1]] = parse_value(raw)
        except ValueError as e:
            raise ValueError(f"{what} {pair!r}: {e}") from None
    return out


def did_you_mean(name: object, valid: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys_message(unknown: Sequence[str], valid: Sequence[str], *, what: str, where: str) -> str:
    """One wording for unknown options/keys: names them, suggests the closest, lists the valid ones."""
    names = ", ".join(f"{u!r}{did_you_mean(u, valid)}" for u in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown {what}{plural} {names} for {where}; valid {what}s: {', '.join(valid) or '(none)'}"


def field_help(field: dataclasses.Field) -> str:
    """The help text of a dataclass field (its ``metadata["help"]``)."""
    return str((field.metadata or {}).get("help", ""))


def help_field(default: Any = _MISSING, help: str = "", *, default_factory: Any = _MISSING) -> Any:
    """A dataclass field with its help text (``metadata={"help": help}``), as HfArgumentParser reads it."""
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def field_default(field: dataclasses.Field) -> Any:
    """A field's default value (calling its default factory)."""
    if field.default is not _MISSING:
        return field.default
    if field.default_factory is not _MISSING:
        return field.default_factory()
    return _MISSING

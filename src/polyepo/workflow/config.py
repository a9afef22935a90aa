"""Run configuration: one YAML file (plus ``key=value`` overrides) describes a training run.

Every top-level key is a field of :class:`RunConfig`; the ``trainer`` section holds the fields
of :class:`polyepo.train.trl.PolyEPOConfig` (TRL's ``GRPOConfig`` plus the set-RL settings).
Unknown keys and invalid values fail before anything heavy is loaded, with a message that names
the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..settings import did_you_mean, parse_key_values, read_yaml_mapping


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


@dataclass
class RunConfig:
    """One training run. ``output_dir`` may use ``{task}``, ``{estimator}``, ``{label}``, ``{seed}`` and ``{model}``."""

    model: str = "toy-paths-base"
    """A bundled model name (see `polyepo models`), a model directory, or a run directory."""
    task: str = "toy_paths"
    """A registered task (see `polyepo tasks`)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of the task's factory."""
    train_split: str = "train"
    """The task split to train on."""
    train_limit: int | None = None
    """Use only the first N rows of the split."""
    reward: str | None = None
    """Reward function name; default: the task's."""
    reward_options: dict[str, Any] = field(default_factory=dict)
    """Options of the reward function; with reward unset, they update the task's defaults."""
    clusterer: str | None = None
    """Strategy clusterer name; default: the task's. 'none' disables clustering."""
    clusterer_options: dict[str, Any] = field(default_factory=dict)
    """Options of the clusterer; with clusterer unset, they update the task's defaults."""
    output_dir: str = "runs/{task}/{estimator}-seed{seed}"
    """Where checkpoints, log.jsonl, run.yaml and the final model go."""
    label: str | None = None
    """The run's name in reports and {label} in output_dir; default: the estimator."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """PolyEPOConfig / GRPOConfig settings (estimator, set_size, learning_rate, max_steps, ...)."""
    eval: dict[str, Any] = field(default_factory=dict)
    """Evaluation settings used by `polyepo compare` after training (splits, n, ...)."""
    estimators: list[Any] = field(default_factory=list)
    """The runs of `polyepo compare`: estimator names, or {name, label, options} mappings (options: the
    estimator's own, over trainer.estimator_options); --estimators replaces them."""

    def resolved_label(self) -> str:
        return str(self.label or self.trainer.get("estimator", "poly_epo"))

    def resolved_output_dir(self) -> Path:
        seed = self.trainer.get("seed", 42)
        estimator = self.trainer.get("estimator", "poly_epo")
        return Path(self.output_dir.format(task=self.task, estimator=estimator, label=self.resolved_label(), seed=seed,
                                           model=Path(str(self.model)).name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """YAML reads ``1e-3`` as a string; turn such values into the field's scalar type."""
    if isinstance(annotation, str):
        annotation = {"float": float, "int": int, "bool": bool, "str": str}.get(annotation.split("|")[0].strip(), Any)
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    if value is None or not isinstance(value, str):
        if float in options and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    for typ in options:
        if typ is float:
            try:
                return float(value)
            except ValueError:
                pass
        if typ is int:
            try:
                return int(value)
            except ValueError:
                pass
        if typ is bool and value.lower() in ("true", "false"):
            return value.lower() == "true"
    if str in options or Any in options:
        return value
    raise ConfigError(f"{key}: expected {annotation}, got {value!r}")


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_label(label: Any, where: str = "label") -> str:
    """A run label: letters, digits and ``_ . + -`` (it names a directory and a report column)."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ConfigError(f"{where} {label!r}: a label is letters, digits and _ . + - (it is used in output_dir "
                          "and as the run's name in reports)")
    return label


def trainer_fields() -> dict[str, dataclasses.Field]:
    from ..train.trl import PolyEPOConfig

    return {f.name: f for f in dataclasses.fields(PolyEPOConfig) if f.init}


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["trainer.learning_rate=1e-4", "model=smollm2-135m"]`` -> nested dict, through the one
    ``key=value`` parser (:func:`polyepo.settings.parse_key_values`)."""
    try:
        return parse_key_values(overrides, what="override", dotted=True)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply overrides, check every key, coerce scalar types."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = read_yaml_mapping(p)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    data = _merge(data, parse_overrides(overrides or []))
    valid = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key in data:
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r}{did_you_mean(key, list(valid))}; valid keys: {', '.join(valid)}")
    hints = typing.get_type_hints(RunConfig)
    kwargs = {k: _coerce(v, hints[k], k) for k, v in data.items()}
    for key in ("task_options", "reward_options", "clusterer_options", "trainer", "eval"):
        if key in kwargs and kwargs[key] is not None and not isinstance(kwargs[key], dict):
            raise ConfigError(f"{key} must be a mapping, got {kwargs[key]!r}")
    if kwargs.get("estimators") is not None and not isinstance(kwargs["estimators"], list):
        raise ConfigError(f"estimators must be a list of names or {{name, label, options}} mappings, got {kwargs['estimators']!r}")
    cfg = RunConfig(**{k: v for k, v in kwargs.items() if v is not None or k in ("reward", "clusterer", "train_limit", "label")})
    if cfg.label is not None:
        check_label(cfg.label)
    tf = trainer_fields()
    trainer = {}
    for key, value in (cfg.trainer or {}).items():
        if key not in tf:
            raise ConfigError(f"unknown trainer key {key!r}{did_you_mean(key, list(tf))}; see `polyepo train --list-trainer-keys`")
        trainer[key] = _coerce(value, tf[key].type, f"trainer.{key}")
    cfg.trainer = trainer
    return cfg


def dump_run_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _empty(value: Any) -> bool:
    """Unset, or an empty mapping or list (the same settings)."""
    return value is None or value == {} or value == []


def run_differences(cfg: RunConfig, run_dir: Path) -> list[str]:
    """How ``run_dir/run.yaml`` (what the run was trained with) differs from ``cfg``, as
    ``key: run's -> cfg's`` lines (``output_dir``, the ``eval`` section and compare's
    ``estimators`` aside: they do not change what is trained)."""
    path = run_dir / "run.yaml"
    if not path.is_file():
        return []
    try:
        old = read_yaml_mapping(path)
    except ValueError as e:
        return [str(e)]
    new = cfg.to_dict()
    out = []
    for key in new:
        if key in ("output_dir", "eval", "estimators"):
            continue
        a, b = old.get(key), new[key]
        if key == "label":  # unset: the estimator's name
            a = a or (old.get("trainer") or {}).get("estimator", "poly_epo")
            b = cfg.resolved_label()
        if isinstance(a, dict) or isinstance(b, dict):
            a, b = a or {}, b or {}
            out += [f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k) and not (_empty(a.get(k)) and _empty(b.get(k)))]
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out

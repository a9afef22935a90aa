"""The ``algorithm.polyepo`` section of a verl config, as one validated dataclass.

verl hands its ``algorithm`` config to every advantage estimator, so this section sits
there: the estimators read ``estimator_options`` and the group-step settings from it, the
trainer's grouping step reads where the cluster ids come from. The defaults are repeated in ``config/polyepo_trainer.yaml`` (Hydra needs
the keys to exist to accept ``algorithm.polyepo.clusterer=...`` on the command line); a
test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ...groups.options import GroupOptions
from ...settings import help_field, unknown_keys_message


def plain(obj: Any) -> Any:
    """``obj`` with every mapping turned into a dict and every list-like into a list.

    verl passes OmegaConf ``DictConfig``/``ListConfig`` objects; our estimators and factories
    take plain Python values. Works without importing omegaconf.
    """
    if isinstance(obj, Mapping) or (hasattr(obj, "items") and hasattr(obj, "keys")):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (str, bytes)):
        return obj
    if isinstance(obj, Sequence) or type(obj).__name__ == "ListConfig":
        return [plain(v) for v in obj]
    return obj


@dataclass
class VerlSettings(GroupOptions):
    """Poly-EPO settings for a verl run (``algorithm.polyepo.*``): the group step's settings
    (inherited from :class:`polyepo.groups.GroupOptions`, the same as ``PolyEPOConfig``'s) plus
    where the cluster ids come from."""

    estimator_options: dict[str, Any] = help_field(
        help="Options of the estimator named by algorithm.adv_estimator (set_size, reduction, min_distinct, "
             "degenerate ...); `polyepo estimators` lists them.", default_factory=dict)
    clusterer: str | None = help_field(
        None, "Name in polyepo.clustering.CLUSTERERS: run once per group, on all N responses of the group "
              "together (the judge sees the whole group). Exclusive with cluster_extra_key.")
    clusterer_options: dict[str, Any] = help_field(
        help="Options passed to the clusterer's factory (model, endpoint, on_failure, cache path ...).",
        default_factory=dict)
    cluster_extra_key: str | None = help_field(
        None, "Take ready-made integer cluster ids from this reward-extra key instead (a reward function that "
              "returns {'score': ..., '<key>': id}). Exclusive with clusterer.")
    cluster_workers: int = help_field(
        8, "Groups clustered concurrently (threads) by a clusterer without cluster_many; one with it (the "
           "judge) gets every group in one call and runs its own concurrency. Use 1 for a clusterer that is "
           "not thread-safe.")

    @classmethod
    def from_config(cls, algorithm: Any) -> VerlSettings:
        """Read ``algorithm.polyepo`` (absent -> defaults); unknown keys raise, listing valid ones."""
        section = None
        if algorithm is not None:
            getter = getattr(algorithm, "get", None)
            section = getter("polyepo", None) if getter else getattr(algorithm, "polyepo", None)
        return cls.from_mapping(plain(section) if section is not None else {})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> VerlSettings:
        """Build and validate from a plain mapping."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(unknown_keys_message(unknown, valid, what="key", where="algorithm.polyepo"))
        kwargs = {k: v for k, v in values.items()}
        for key in ("estimator_options", "clusterer_options"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
            elif not isinstance(kwargs[key], Mapping):
                raise ValueError(f"algorithm.polyepo.{key} must be a mapping, got {kwargs[key]!r}")
            else:
                kwargs[key] = dict(kwargs[key])
        settings = cls(**kwargs)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.clusterer is not None and self.cluster_extra_key is not None:
            raise ValueError(
                "algorithm.polyepo: set clusterer (cluster each group) OR cluster_extra_key (ids "
                f"returned by the reward function), not both; got clusterer={self.clusterer!r}, "
                f"cluster_extra_key={self.cluster_extra_key!r}"
            )
        if not isinstance(self.cluster_workers, int) or self.cluster_workers < 1:
            raise ValueError(f"algorithm.polyepo.cluster_workers must be an int >= 1, got {self.cluster_workers!r}")
        try:
            self.check_group_options()
        except ValueError as e:
            raise ValueError(f"algorithm.polyepo.{e}") from None

    @property
    def cluster_source(self) -> str:
        """``"clusterer"``, ``"reward_extra"`` or ``"none"``."""
        if self.clusterer is not None:
            return "clusterer"
        return "reward_extra" if self.cluster_extra_key is not None else "none"


def defaults() -> dict[str, Any]:
    """Every setting and its default, as plain values (what the YAML file must hold)."""
    return {f.name: plain(getattr(VerlSettings(), f.name)) for f in fields(VerlSettings)}


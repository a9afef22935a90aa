"""The ``algorithm.polyepo`` section of a verl config, as one validated dataclass.

verl hands its ``algorithm`` config to every advantage estimator, so this section sits
there: the estimators read ``estimator_options`` from it and the trainer's grouping step
reads the rest. The defaults are repeated in ``config/polyepo_trainer.yaml`` (Hydra needs
the keys to exist to accept ``algorithm.polyepo.clusterer=...`` on the command line); a
test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


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


@dataclass(frozen=True)
class VerlSettings:
    """Poly-EPO settings for a verl run (``algorithm.polyepo.*``)."""

    estimator_options: dict[str, Any] = field(default_factory=dict)
    """Options of the estimator named by ``algorithm.adv_estimator`` (``set_size``,
    ``reduction``, ``min_distinct``, ``degenerate`` ...); `polyepo estimators` lists them."""

    clusterer: str | None = None
    """Name in ``polyepo.clustering.CLUSTERERS``: run once per group, on all N responses of
    the group together (the judge sees the whole group). Exclusive with ``cluster_extra_key``."""

    clusterer_options: dict[str, Any] = field(default_factory=dict)
    """Options passed to the clusterer's factory (model, endpoint, cache path ...)."""

    cluster_extra_key: str | None = None
    """Take ready-made integer cluster ids from this reward-extra key instead (a reward
    function that returns ``{"score": ..., "<key>": id}``). Exclusive with ``clusterer``."""

    cluster_workers: int = 8
    """Groups clustered concurrently (threads; an LLM judge is network-bound). The clusterer
    is shared by the threads: use 1 for a clusterer that is not thread-safe."""

    max_failed_group_fraction: float = 0.5
    """A group whose clusterer reports ``failed`` keeps the ids of the clusterer's own failure
    policy and is counted; if more than this fraction of a step's groups failed, the step
    stops with an error instead of training on them."""

    correct_threshold: float = 1.0
    """A rollout counts as correct (for the diversity metrics) when its reward >= this."""

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
            raise ValueError(
                f"algorithm.polyepo has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(valid)}"
            )
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
        if not 0.0 <= float(self.max_failed_group_fraction) <= 1.0:
            raise ValueError(
                "algorithm.polyepo.max_failed_group_fraction must be in [0, 1], "
                f"got {self.max_failed_group_fraction!r}"
            )

    @property
    def cluster_source(self) -> str:
        """``"clusterer"``, ``"reward_extra"`` or ``"none"``."""
        if self.clusterer is not None:
            return "clusterer"
        return "reward_extra" if self.cluster_extra_key is not None else "none"


def defaults() -> dict[str, Any]:
    """Every setting and its default, as plain values (what the YAML file must hold)."""
    return {f.name: plain(getattr(VerlSettings(), f.name)) for f in fields(VerlSettings)}

"""Poly-EPO on TRL: ``PolyEPOTrainer`` (a ``GRPOTrainer``) and ``PolyEPOConfig`` (a ``GRPOConfig``).

A TRL user switches by changing the two class names and setting ``estimator`` and
``clusterer``. TRL still samples, scores, clips and normalises the loss; only the advantage
changes. After TRL has computed the rewards of the whole generation batch (gathered from every
process, groups of ``num_generations`` adjacent completions), the trainer clusters each complete
group once (on the main process, broadcast to the others), computes the advantages of the
global batch with the chosen estimator from :mod:`polyepo.advantages`, and hands each process
its own rows. ``estimator="dr_grpo"`` and ``"poly_epo"`` therefore differ in the advantage
only: same samples, same loss, same optimiser.

TRL's trainer internals are private API; this module relies on ``GRPOTrainer._calculate_rewards``
(returns the gathered ``[B_global, n_reward_funcs]`` rewards) and
``GRPOTrainer._generate_and_score_completions`` (returns the local batch with ``"advantages"``)
of the TRL versions in :data:`SUPPORTED_TRL`. :func:`check_trl_compatibility` fails loudly when
they change.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from ..advantages import NEEDS_CLUSTERS, check_options, estimator_options, get_estimator
from ..clustering import ClusterResult, make_clusterer
from ..clustering.base import prompt_text
from ..clustering.metrics import aggregate_metrics, group_metrics
from ..rewards.extract import completion_text

logger = logging.getLogger(__name__)

#: TRL versions whose private trainer API this module was written and tested against.
SUPPORTED_TRL = (">=1.16", "<1.17")


def check_trl_compatibility() -> None:
    """Raise a clear error if TRL's private methods that the trainer overrides have changed."""
    import trl
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(",".join(SUPPORTED_TRL))
    expected = {
        "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
        "_generate_and_score_completions": ["self", "inputs"],
    }
    problems = []
    for name, params in expected.items():
        fn = getattr(GRPOTrainer, name, None)
        if fn is None:
            problems.append(f"GRPOTrainer.{name} no longer exists")
        elif list(inspect.signature(fn).parameters) != params:
            problems.append(f"GRPOTrainer.{name} now takes {list(inspect.signature(fn).parameters)}, expected {params}")
    if problems:
        raise RuntimeError(
            f"TRL {trl.__version__} changed the private API PolyEPOTrainer overrides: " + "; ".join(problems)
            + f". polyepo supports TRL {','.join(SUPPORTED_TRL)}."
        )
    if trl.__version__ not in spec:
        logger.warning("TRL %s is outside the tested range %s; the compatibility check passed.",
                       trl.__version__, ",".join(SUPPORTED_TRL))


@dataclass
class PolyEPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the set-RL settings. Defaults follow the Poly-EPO paper: no KL
    (``beta=0``), clip 0.2/0.28, Dr.GRPO loss normalisation (divide by the max completion
    length), no std scaling of rewards."""

    estimator: str = field(default="poly_epo", metadata={"help": "Advantage estimator: a name in polyepo.advantages.ESTIMATORS (poly_epo, dr_grpo, grpo, rloo, grpo_div, pass_at_k, set_rl)."})
    set_size: int = field(default=4, metadata={"help": "Set size n for set estimators (poly_epo, pass_at_k, set_rl)."})
    reduction: str = field(default="sum", metadata={"help": "Marginal advantage over the sets holding a rollout: sum (seed 002) or mean (the Poly-EPO authors' code)."})
    min_distinct: int = field(default=2, metadata={"help": "Poly-EPO gate: sets with fewer distinct non-degenerate strategies score 0 (2 = seed 002's |U| > 1; 1 = no gate)."})
    degenerate: list[int] = field(default_factory=lambda: [0, 100], metadata={"help": "Cluster ids that are no real strategy."})
    estimator_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "Further options of the estimator (see `polyepo estimators`)."})
    clusterer: str | None = field(default=None, metadata={"help": "Strategy clusterer: a name in polyepo.clustering.CLUSTERERS. Needed by poly_epo and grpo_div; with other estimators it is run for the diversity logs only."})
    clusterer_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "Options of the clusterer (judge endpoint, failure policy, ...)."})
    correct_threshold: float = field(default=0.5, metadata={"help": "A rollout counts as correct in the diversity logs when its reward is at least this."})
    log_jsonl: bool = field(default=True, metadata={"help": "Also append every logged step to output_dir/log.jsonl."})

    # Paper defaults for inherited settings.
    loss_type: str = field(default="dr_grpo", metadata={"help": "TRL loss aggregation; dr_grpo divides by max_completion_length (Dr.GRPO, as the Poly-EPO paper)."})
    scale_rewards: str = field(default="none", metadata={"help": "Unused by polyepo's estimators (they do their own scaling); kept 'none'."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clip bound (DAPO / Poly-EPO paper: 0.28)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.learning_rate >= 0:  # the optimiser would refuse it at the first step
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate!r}")
        check_report_to(self.report_to)
        get_estimator(self.estimator)  # unknown names list the valid ones
        check_options(self.estimator, self.estimator_kwargs())
        if self.estimator in NEEDS_CLUSTERS and not self.clusterer:
            raise ValueError(f"estimator {self.estimator!r} needs strategy clusters: set clusterer "
                             "(e.g. 'python_ast', 'judge', or a task's own clusterer)")
        if self.num_generations is not None and "set_size" in self.estimator_kwargs() and self.set_size > self.num_generations:
            raise ValueError(f"set_size={self.set_size} exceeds num_generations={self.num_generations}: "
                             "a set is drawn from one prompt's completions")

    def estimator_kwargs(self) -> dict[str, Any]:
        """The options passed to the estimator: the shared fields it accepts, then ``estimator_options``."""
        valid = estimator_options(self.estimator)
        shared = {"set_size": self.set_size, "reduction": self.reduction, "min_distinct": self.min_distinct,
                  "degenerate": tuple(self.degenerate)}
        return {**{k: v for k, v in shared.items() if k in valid}, **self.estimator_options}


def check_report_to(report_to: Any) -> None:
    """Every ``report_to`` integration is known to transformers and installed (the trainer would
    otherwise fail when it starts, after the model has loaded)."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = get_available_reporting_integrations()
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            raise ValueError(f"report_to: unknown integration {name!r}; valid: {', '.join(INTEGRATION_TO_CALLBACK)}")
        if name not in available:
            raise ValueError(f"report_to: {name!r} is not installed (pip install {name}), or is disabled; "
                             f"installed: {', '.join(available) or 'none'}")


def _context(row: dict[str, Any]) -> dict[str, Any]:
    """Per-row columns that are safe to send between processes and to clusterers."""
    skip = {"prompt", "completion", "completion_ids"}
    return {k: v for k, v in row.items() if k not in skip and isinstance(v, (str, int, float, bool, list, dict, type(None)))}


class PolyEPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages come from a polyepo estimator over complete groups.

    Args:
        *args, **kwargs: as ``GRPOTrainer``; ``args`` must be a :class:`PolyEPOConfig`.
        clusterer: an object with ``.cluster(prompt, responses, **context) -> ClusterResult``
            (optional ``.cluster_many(list of (prompt, responses, context))``); built from
            ``args.clusterer`` when not given.
    """

    def __init__(self, *args: Any, clusterer: Any = None, **kwargs: Any) -> None:
        check_trl_compatibility()
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, PolyEPOConfig):
            raise TypeError("PolyEPOTrainer needs args=PolyEPOConfig(...)")
        if clusterer is None and self.args.clusterer:
            clusterer = make_clusterer(self.args.clusterer, **self.args.clusterer_options)
        self.clusterer = clusterer
        self._estimator = get_estimator(self.args.estimator)
        self._estimator_kwargs = self.args.estimator_kwargs()
        self._pending: dict[str, Any] | None = None
        if self.args.log_jsonl:
            self.add_callback(JsonlLogCallback(Path(self.args.output_dir) / "log.jsonl"))

    # -- rewards and clusters of the global batch -------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        t0 = time.perf_counter()
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        t1 = time.perf_counter()
        clusters, results = self._cluster_global_batch(inputs, prompts, completions)
        t2 = time.perf_counter()
        if clusters is not None:
            start = self.accelerator.process_index * len(prompts)
            self._pending_extra_logs["cluster"].extend(clusters[start:start + len(prompts)])
        self._pending = {"rewards_per_func": rewards_per_func, "clusters": clusters, "results": results,
                         "reward_s": t1 - t0, "cluster_s": t2 - t1}
        return rewards_per_func

    def _cluster_global_batch(self, inputs, prompts, completions) -> tuple[list[int] | None, list[ClusterResult]]:
        if self.clusterer is None:
            return None, []
        all_prompts = gather_object([prompt_text(p) for p in prompts])
        all_texts = gather_object([completion_text(c) for c in completions])
        all_context = gather_object([_context(x) for x in inputs])
        G = self.num_generations if self.model.training else self.num_generations_eval
        payload: list[Any] = [None]
        if self.accelerator.is_main_process:
            groups = [(all_prompts[s], all_texts[s:s + G], all_context[s]) for s in range(0, len(all_texts), G)]
            if hasattr(self.clusterer, "cluster_many"):
                results = list(self.clusterer.cluster_many(groups))
            else:
                results = [self.clusterer.cluster(p, r, **ctx) for p, r, ctx in groups]
            for (_, r, _), res in zip(groups, results, strict=True):
                if len(res.ids) != len(r):
                    raise RuntimeError(f"clusterer {getattr(self.clusterer, 'name', self.clusterer)!r} returned "
                                       f"{len(res.ids)} ids for a group of {len(r)} responses")
            payload = [results]
        broadcast_object_list(payload, from_process=0)
        results = payload[0]
        return [int(i) for res in results for i in res.ids], results

    # -- advantages ---------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("PolyEPOTrainer did not see the rewards of this batch: TRL no longer calls "
                               "_calculate_rewards from _generate_and_score_completions (unsupported TRL version)")
        mode = "train" if self.model.training else "eval"
        G = self.num_generations if mode == "train" else self.num_generations_eval
        rpf = pending["rewards_per_func"]
        local = output["advantages"].shape[0]
        if rpf.shape[0] != local * self.accelerator.num_processes or rpf.shape[0] % G:
            raise RuntimeError(f"PolyEPOTrainer expected {local} x {self.accelerator.num_processes} gathered rewards "
                               f"in groups of {G}, got {tuple(rpf.shape)} (unsupported TRL version?)")
        weights = self.reward_weights.to(rpf.device).unsqueeze(0)
        rewards = (rpf * weights).nansum(dim=1).double().cpu().numpy()
        rewards[torch.isnan(rpf).all(dim=1).cpu().numpy()] = np.nan
        t0 = time.perf_counter()
        adv, stats = self._global_advantages(rewards, pending["clusters"], G)
        adv_s = time.perf_counter() - t0
        start = self.accelerator.process_index * local
        output["advantages"] = torch.as_tensor(adv[start:start + local], dtype=output["advantages"].dtype,
                                               device=output["advantages"].device)
        for _ in range(min(len(adv), len(self._logs["advantages"]))):  # replace TRL's logged GRPO advantages
            self._logs["advantages"].pop()
        self._logs["advantages"].extend(adv.tolist())
        self._log_step_metrics(mode, rewards, adv, pending, stats, adv_s, G)
        return output

    def _global_advantages(self, rewards: np.ndarray, clusters: list[int] | None, G: int):
        """Advantages of every row of the global batch, group by group. Unscorable rows (every
        reward function returned None) are left out of their group and get 0."""
        adv = np.zeros_like(rewards)
        c = None if clusters is None else np.asarray(clusters)
        shrunk = empty = 0
        for s in range(0, rewards.size, G):
            ok = ~np.isnan(rewards[s:s + G])
            idx = np.flatnonzero(ok) + s
            if idx.size == 0:
                empty += 1
                continue
            kwargs = dict(self._estimator_kwargs)
            if idx.size < G:
                shrunk += 1
                if "set_size" in kwargs:
                    kwargs["set_size"] = min(kwargs["set_size"], idx.size)
                if idx.size == 1:  # a lone scorable rollout has no baseline: advantage 0
                    continue
            adv[idx] = self._estimator(rewards[idx], None if c is None else c[idx], **kwargs)
        return adv, {"groups_with_unscorable": shrunk, "groups_unscorable": empty}

    def _log_step_metrics(self, mode, rewards, adv, pending, stats, adv_s, G) -> None:
        m = self._metrics[mode]
        m["polyepo/advantage_mean"].append(float(adv.mean()))
        m["polyepo/advantage_std"].append(float(adv.std()))
        m["polyepo/advantage_abs_max"].append(float(np.abs(adv).max()))
        groups = adv.reshape(-1, G)
        m["polyepo/frac_groups_zero_advantage"].append(float((np.abs(groups).max(axis=1) == 0).mean()))
        m["polyepo/unscorable"].append(float(np.isnan(rewards).sum()))
        for k, v in stats.items():
            m[f"polyepo/{k}"].append(float(v))
        m["polyepo/time_reward_s"].append(pending["reward_s"])
        m["polyepo/time_cluster_s"].append(pending["cluster_s"])
        m["polyepo/time_advantage_s"].append(adv_s)
        if pending["clusters"] is None:
            return
        results: list[ClusterResult] = pending["results"]
        r = np.nan_to_num(rewards, nan=-math.inf).reshape(-1, G)
        step = aggregate_metrics([
            group_metrics(res, rewards=ri, correct_threshold=self.args.correct_threshold, degenerate=self.args.degenerate)
            for res, ri in zip(results, r, strict=True)
        ])
        for key, value in step.items():
            if key in CLUSTER_LOG_KEYS:
                m[CLUSTER_LOG_KEYS[key]].append(float(value))


#: clustering.metrics key -> logged name (see docs/training.md)
CLUSTER_LOG_KEYS = {
    "distinct": "polyepo/clusters_distinct",
    "distinct_correct": "polyepo/clusters_distinct_correct",
    "distinct_incorrect": "polyepo/clusters_distinct_incorrect",
    "degenerate": "polyepo/degenerate_per_group",
    "correct": "polyepo/correct_per_group",
    "judge_failed": "polyepo/cluster_failures",
    "fallback": "polyepo/cluster_fallbacks",
    "zero_diversity": "polyepo/cluster_zero_diversity",
    "cache_hit": "polyepo/cluster_cache_hits",
    "requests": "polyepo/judge_requests",
    "retries": "polyepo/judge_retries",
    "reasks": "polyepo/judge_reasks",
}


class JsonlLogCallback(TrainerCallback):
    """Appends every log event (step + metrics) as one JSON line; only on the main process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed run repeats the steps after its checkpoint: drop their old rows first."""
        if state.is_world_process_zero and self.path.is_file():
            lines = self.path.read_text().splitlines(keepends=True)
            keep = [line for line in lines if _log_step(line) <= state.global_step]
            if len(keep) < len(lines):
                self.path.write_text("".join(keep))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _log_step(line: str) -> float:
    """The ``step`` of a log.jsonl line (lines without one count as step 0: they are kept)."""
    try:
        step = json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return 0
    return step if isinstance(step, (int, float)) else 0

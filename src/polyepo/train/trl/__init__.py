"""Poly-EPO on TRL: ``PolyEPOTrainer`` (a ``GRPOTrainer``) and ``PolyEPOConfig`` (a ``GRPOConfig``).

A TRL user switches by changing the two class names and setting ``estimator`` and
``clusterer``. TRL still samples, scores, clips and normalises the loss; only the advantage
changes. While TRL computes the rewards of the whole generation batch (gathered from every
process, groups of ``num_generations`` adjacent completions), the trainer clusters each complete
group once (on the main process, on a background thread, broadcast to the others:
:mod:`polyepo.train.trl.clusters`), then computes the advantages of the global batch with the
chosen estimator from :mod:`polyepo.advantages`, and hands each process its own rows.
``estimator="dr_grpo"`` and ``"poly_epo"`` therefore differ in the advantage only: same
samples, same loss, same optimiser.

The step itself (unscorable rollouts, failed clustering, advantages, step metrics) is
:func:`polyepo.groups.group_step`, the code verl's adapter runs too; this module only gathers
TRL's tensors into it and slices its advantages back. Every estimator runs this way, its batch
step (``reinforce_pp_baseline``) over the whole global batch. The historical
``outcome_explore`` keeps per-prompt answer counts across steps: each process owns an equal
:class:`polyepo.advantages.AnswerHistory` fed the same global batch with the rows' prompt keys
(:func:`prompt_key`); evaluation batches do not count; the main process writes it into every
checkpoint (``checkpoint-N/answer_history.json``) and every process reads it back on resume. :class:`PolyEPOConfig` rejects the
GRPOConfig options that would change the advantage in a way polyepo's step does not
reproduce (``scale_rewards`` other than ``"none"``, ``multi_objective_aggregation`` other than
``"sum_then_normalize"``): the estimator is the one place the advantage is defined.

TRL's trainer internals are private API; this module relies on ``GRPOTrainer._calculate_rewards``
(returns the gathered ``[B_global, n_reward_funcs]`` rewards) and
``GRPOTrainer._generate_and_score_completions`` (returns the local batch with ``"advantages"``)
of the TRL versions in :data:`SUPPORTED_TRL`. :func:`check_trl_compatibility` fails loudly when
they change.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer

from ...advantages import (
    ESTIMATORS,
    NEEDS_CLUSTERS,
    SHARED_OPTIONS,
    AnswerHistory,
    check_option_values,
    check_options,
    estimator_options,
    get_estimator,
    needs_history,
    shared_option_default,
)
from ...clustering import ClusterResult, make_clusterer
from ...clustering.base import prompt_key
from ...groups import GroupOptions, group_step
from ...groups.watch import DiversityWatch
from ...settings import help_field
from .clusters import finish_clustering, resolve_ddp_timeout, start_clustering, wait_limits
from .group_log import JsonlLog, group_lines, log_path

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
        "_save_checkpoint": ["self", "model", "trial"],
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


def _shared(name: str) -> Any:
    """A PolyEPOConfig field for shared estimator option ``name``: help and default from
    :data:`polyepo.advantages.SHARED_OPTIONS` and the estimators' signatures."""
    default = shared_option_default(name)
    if isinstance(default, (tuple, list)):
        return help_field(help=SHARED_OPTIONS[name], default_factory=lambda d=tuple(default): list(d))
    return help_field(default, SHARED_OPTIONS[name])


#: GRPOConfig options that change TRL's own advantage, which polyepo replaces: the only value
#: the trainer honours, and what to do instead.
UNSUPPORTED = {
    "scale_rewards": ("none", "std scaling is part of the estimator here: estimator=grpo scales by the "
                              "group's std (scale_rewards='group'); scaling by the batch's std is not available"),
    "multi_objective_aggregation": ("sum_then_normalize", "the weighted reward functions are summed first, "
                                                          "then the estimator runs on the sum"),
}


@dataclass
class PolyEPOConfig(GRPOConfig, GroupOptions):
    """``GRPOConfig`` plus the set-RL settings and the group step's (:class:`polyepo.groups.GroupOptions`).
    Defaults follow the Poly-EPO paper: no KL (``beta=0``), clip 0.2/0.28, Dr.GRPO loss
    normalisation (divide by the max completion length), no std scaling of rewards."""

    estimator: str = help_field("poly_epo", "Advantage estimator: a name in polyepo.advantages.ESTIMATORS ("
                                + ", ".join(ESTIMATORS.names()) + "); docs/estimators.md.")
    set_size: int = _shared("set_size")
    reduction: str = _shared("reduction")
    min_distinct: int = _shared("min_distinct")
    degenerate: list[int] = _shared("degenerate")
    estimator_options: dict[str, Any] = help_field(help="Further options of the estimator (see `polyepo estimators`).", default_factory=dict)
    clusterer: str | None = help_field(None, "Strategy clusterer: a name in polyepo.clustering.CLUSTERERS. Needed by poly_epo and grpo_div; with other estimators it is run for the diversity logs only.")
    clusterer_options: dict[str, Any] = help_field(help="Options of the clusterer (judge endpoint, failure policy, ...).", default_factory=dict)
    log_jsonl: bool = help_field(True, "Also append every logged step to output_dir/log.jsonl.")
    log_groups: bool = help_field(False, "Also append every group of every step (prompt, responses, rewards, cluster ids, failure policy, advantages) to output_dir/groups.jsonl.")
    ddp_timeout: int | None = help_field(None, "Seconds a process waits in a collective (transformers' ddp_timeout). Unset: 1800, raised to the clusterer's judge's max_wait_s + 300 under on_failure=wait (the other processes wait for the main process's clustering; polyepo train also counts a reward's judge); a set value shorter than that is refused.")

    # Paper defaults for inherited settings.
    loss_type: str = help_field("dr_grpo", "TRL loss aggregation; dr_grpo divides by max_completion_length (Dr.GRPO, as the Poly-EPO paper).")
    scale_rewards: str = help_field("none", "Must stay 'none': the estimator does any scaling (estimator=grpo scales by the group's std).")
    epsilon_high: float | None = help_field(0.28, "Upper clip bound (DAPO / Poly-EPO paper: 0.28).")

    def __post_init__(self) -> None:
        self.ddp_timeout = resolve_ddp_timeout(self.ddp_timeout, wait_limits(self.clusterer, self.clusterer_options))
        super().__post_init__()
        for key, (honoured, instead) in UNSUPPORTED.items():
            if getattr(self, key) != honoured:
                raise ValueError(f"{key}={getattr(self, key)!r} is not supported by PolyEPOTrainer (only {honoured!r}): "
                                 f"{instead}")
        self.check_group_options()
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
        check_option_values(self.estimator, self.estimator_kwargs(), self.num_generations or 8)

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
        if self.accelerator.num_processes > 1:  # built judges (a clusterer, rewards): their waits against ddp_timeout
            resolve_ddp_timeout(self.args.ddp_timeout, wait_limits(clusterer, None, self.reward_funcs))
        self.clusterer = clusterer
        self._estimator_kwargs = self.args.estimator_kwargs()
        self._group_options = self.args.group_options()
        #: per-prompt answer counts of the historical outcome_explore (None for every other
        #: estimator): the same on every process, saved in each checkpoint, restored by train()
        self.answer_history = AnswerHistory() if needs_history(self.args.estimator, self._estimator_kwargs) else None
        self._pending: dict[str, Any] | None = None
        self._jsonl = JsonlLogCallback(Path(self.args.output_dir) / "log.jsonl") if self.args.log_jsonl else None
        if self._jsonl is not None:
            self.add_callback(self._jsonl)
        self.group_log = JsonlLog(log_path(self.args.output_dir)) if self.args.log_groups else None
        if self.group_log is not None:
            self.add_callback(GroupLogCallback(self.group_log))
        name = self.args.clusterer or getattr(clusterer, "name", type(clusterer).__name__)
        self.diversity_watch = DiversityWatch(name, degenerate=self.args.degenerate) if clusterer is not None else None

    # -- rewards and clusters of the global batch -------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards, with the global batch's clustering running beside them (started first,
        collected after; :mod:`polyepo.train.trl.clusters`)."""
        step = start_clustering(self, inputs, prompts, completions, gather_texts=self.group_log is not None)
        t0 = time.perf_counter()
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        t1 = time.perf_counter()
        results, cluster_s, wait_s = finish_clustering(self, step)
        if results is not None:
            start = self.accelerator.process_index * len(prompts)
            clusters = [int(i) for res in results for i in res.ids]
            self._pending_extra_logs["cluster"].extend(clusters[start:start + len(prompts)])
        keys = None
        if self.answer_history is not None:  # every process gets the global batch's keys, in order
            keys = gather_object([prompt_key(x.get("problem_id"), p) for x, p in zip(inputs, prompts)])
        self._pending = {"rewards_per_func": rewards_per_func, "results": results, "step": step,
                         "prompt_keys": keys, "reward_s": t1 - t0, "cluster_s": cluster_s, "cluster_wait_s": wait_s}
        return rewards_per_func

    # -- advantages ---------------------------------------------------------------------------

    def group_step(self, rewards_per_func: torch.Tensor, results: list[ClusterResult] | None, G: int,
                   prompt_keys: list[str] | None = None):
        """The group step of a gathered batch: ``rewards_per_func[B, n_funcs]`` (NaN where a
        function returned None) in adjacent groups of ``G``, one ClusterResult per group (or None),
        ``prompt_keys[B]`` (:func:`prompt_key`) for the historical ``outcome_explore``.

        The weighted functions are summed (NaN-skipping); a row where every function returned
        None is unscorable (None). Returns :class:`polyepo.groups.StepResult`.
        """
        rewards = self._summed_rewards(rewards_per_func)
        self.last_rewards = rewards
        options = self._estimator_kwargs
        if self.answer_history is not None:
            options = {**options, "history": self.answer_history}
        return group_step(rewards, np.arange(rewards.size) // G, results, estimator=self.args.estimator,
                          estimator_options=options, options=self._group_options, prompt_keys=prompt_keys)

    def _summed_rewards(self, rewards_per_func: torch.Tensor) -> np.ndarray:
        """``float64[B]``: the weighted sum of the functions (NaN-skipping), NaN where all returned None."""
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1).double().cpu().numpy()
        rewards[torch.isnan(rewards_per_func).all(dim=1).cpu().numpy()] = np.nan  # unscorable
        return rewards

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
        paused = self.answer_history.paused() if self.answer_history is not None and mode == "eval" \
            else contextlib.nullcontext()
        with paused:  # evaluation batches leave the answer counts as they are
            step = self.group_step(rpf, pending["results"], G,
                                   pending["prompt_keys"])
        adv = step.advantages
        start = self.accelerator.process_index * local
        output["advantages"] = torch.as_tensor(adv[start:start + local], dtype=output["advantages"].dtype,
                                               device=output["advantages"].device)
        for _ in range(min(len(adv), len(self._logs["advantages"]))):  # replace TRL's logged GRPO advantages
            self._logs["advantages"].pop()
        self._logs["advantages"].extend(adv.tolist())
        self._log_groups(pending, adv, mode)
        metrics = {**step.metrics, "polyepo/time_reward_s": pending["reward_s"],
                   "polyepo/time_cluster_s": pending["cluster_s"], "polyepo/time_cluster_wait_s": pending["cluster_wait_s"]}
        for key, value in metrics.items():  # the group step's vocabulary (docs/training.md)
            self._metrics[mode][key].append(float(value))
        self.last_step_metrics = metrics
        scored = self.last_rewards[~np.isnan(self.last_rewards)]
        self.last_step_reward = float(scored.mean()) if scored.size else float("nan")  # for the progress display
        if mode == "train" and self.diversity_watch is not None:
            self._warn(self.diversity_watch.observe(pending["results"], step=self.state.global_step + 1))
        return output

    def _warn(self, message: str | None) -> None:
        """A warning in the training output and in ``log.jsonl`` (main process only)."""
        if message and self.accelerator.is_main_process:
            logger.warning("warning: %s", message)
            if self._jsonl is not None:
                self._jsonl.write({"step": self.state.global_step + 1, "warning": message})

    def _log_groups(self, pending: dict[str, Any], advantages: np.ndarray, mode: str) -> None:
        """Append the step's groups to groups.jsonl (``log_groups``; main process)."""
        step = pending["step"]
        if self.group_log is None or step is None or step.texts is None:
            return
        self.group_log.write(group_lines(self.state.global_step, mode, step.prompts, step.texts,
                                         self.last_rewards, advantages, pending["results"], step.group_size))

    # -- the historical state in checkpoints ----------------------------------------------------

    def _save_checkpoint(self, model, trial):
        """The answer history goes into the checkpoint first (main process), so a checkpoint that
        transformers completes always holds it."""
        if self.answer_history is not None and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self.answer_history.save_to_checkpoint(folder)
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """``Trainer.train``; on resume, every process first restores the answer history from the
        checkpoint (a checkpoint without one is an error, not a fresh start)."""
        if self.answer_history is not None and resume_from_checkpoint:
            path = resume_from_checkpoint
            if isinstance(path, bool):
                path = get_last_checkpoint(self.args.output_dir)  # None: transformers raises below
            if path is not None:
                self.answer_history = AnswerHistory.from_checkpoint(path)
        return super().train(resume_from_checkpoint, *args, **kwargs)


class GroupLogCallback(TrainerCallback):
    """A resumed run repeats the steps after its checkpoint: drop their groups.jsonl lines first."""

    def __init__(self, log: JsonlLog) -> None:
        self.log = log

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.log.drop_from(state.global_step)


class JsonlLogCallback(TrainerCallback):
    """Appends every log event (step + metrics) as one JSON line; only on the main process."""

    def __init__(self, path: Path) -> None:
        self.log = JsonlLog(path)

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed run repeats the steps after its checkpoint: drop their old rows first."""
        if state.is_world_process_zero:
            self.log.drop_from(state.global_step + 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.write({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}})

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (a log step, or a warning ``{"step", "warning"}``)."""
        self.log.write([row])

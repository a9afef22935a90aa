"""The group step, one home for every engine: rows in groups -> advantages -> step metrics.

A step is a batch of rollouts in groups (one group = one prompt's N rollouts): their rewards
(None where every reward function declined), their groups' cluster results, and a group id
per row. :func:`group_step` turns them into advantages (through ONE
:func:`polyepo.advantages.compute_advantages` call) and one dictionary of step metrics whose
names are :data:`STEP_METRICS`. TRL (``polyepo.train.trl``), verl (``polyepo.train.verl``),
evaluation and the dry run call it; they only translate their own data to and from it.

- :mod:`.step`: :func:`group_step`, :func:`group_rows`, :func:`as_rewards`;
- :mod:`.clusters`: :func:`cluster_groups`, the one clustering call path (:class:`PendingClusters`:
  the same on a background thread, beside the rewards);
- :mod:`.metrics`: :data:`STEP_METRICS` and :func:`step_metrics`;
- :mod:`.options`: :class:`GroupOptions`, the step's settings (defined once, inherited by the
  engines' configs).

Pure Python + NumPy: nothing heavy is imported.
"""

from __future__ import annotations

from .clusters import PendingClusters, cluster_groups, results_from_ids
from .metrics import STEP_METRICS, step_metrics
from .options import UNSCORABLE, GroupOptions, group_option_names
from .step import StepResult, UnscorableRowsError, as_rewards, group_rows, group_step

__all__ = [
    "STEP_METRICS",
    "UNSCORABLE",
    "GroupOptions",
    "PendingClusters",
    "StepResult",
    "UnscorableRowsError",
    "as_rewards",
    "cluster_groups",
    "group_option_names",
    "group_rows",
    "group_step",
    "results_from_ids",
    "step_metrics",
]

"""Outcome-based exploration (Song, Kempe & Munos 2025, arXiv 2509.06941) and its state.

The exploration bonus depends on the *final answer* of a rollout only. Answer identities
arrive as the estimator's ``clusters``: ids from a clusterer whose ids name the answer itself,
the same id for the same answer in every step (the toy task's route ids; the ``answer``
clusterer with ``stable_ids=True``). Per-group ids numbered by first appearance do not qualify
for the historical variant.

``variant="batch"``
    ``r_i - coef * (m_i - 1) / (N - 1)``: a penalty for each other rollout of the group that gave
    the same answer (``m_i`` rollouts share i's answer); then centred.
``variant="historical"``
    ``r_i + coef / sqrt(n_i)``, a UCB-style bonus, ``n_i`` = how often this prompt produced this
    answer over every step so far, this group included; then centred. The counts live in an
    :class:`AnswerHistory` passed as the ``history`` option; the prompt's key arrives as
    ``prompt_key`` (``compute_advantages(..., prompt_keys=...)`` fills it per group).

A degenerate rollout (no answer) gets the least exploration credit: the full penalty ``coef``
(batch) or no bonus (historical), and it is never counted.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import check_clusters, check_degenerate, check_finite_number, check_rewards
from .baselines import center
from .diversity import cluster_sizes

OUTCOME_VARIANTS = ("batch", "historical")
HISTORY_FORMAT = "polyepo-answer-history"
HISTORY_VERSION = 1
#: The history's file name inside a checkpoint directory (TRL's ``checkpoint-N``, verl's ``global_step_N``).
HISTORY_FILE = "answer_history.json"


class AnswerHistory:
    """Per-prompt counts of final answers across training steps: the historical variant's state.

    One object per training run, owned by whoever computes the advantages (every TRL process
    keeps its own copy and feeds it the same global batch, so the copies stay equal; verl keeps
    one on the driver). :meth:`state_dict` / :meth:`load_state_dict` (or :meth:`save` /
    :meth:`load`, a JSON file) carry it through checkpoints. Prompt keys are compared by their
    string form. Inside ``with history.paused():`` (evaluation batches) the bonus is computed as
    usual but nothing is recorded.
    """

    def __init__(self) -> None:
        self._counts: dict[str, dict[int, int]] = {}
        self.groups = 0
        self._paused = False

    def __len__(self) -> int:
        return len(self._counts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnswerHistory) and self.state_dict() == other.state_dict()

    def count(self, prompt_key: Any, answer: int) -> int:
        """How often ``answer`` was recorded for ``prompt_key``."""
        return self._counts.get(str(prompt_key), {}).get(int(answer), 0)

    def record(self, prompt_key: Any, answers: np.ndarray) -> np.ndarray:
        """Add one group's answers (ints, none degenerate); returns each one's count afterwards."""
        key = str(prompt_key)
        seen = self._counts.get(key, {})
        ids, counts = np.unique(np.asarray(answers, dtype=np.int64), return_counts=True)
        after = {int(a): seen.get(int(a), 0) + int(n) for a, n in zip(ids, counts)}
        if not self._paused:
            self._counts[key] = {**seen, **after}
            self.groups += 1
        return np.array([after[int(a)] for a in np.asarray(answers).tolist()], dtype=np.float64)

    @contextmanager
    def paused(self) -> Iterator[AnswerHistory]:
        """Compute bonuses without recording (evaluation batches, dry runs)."""
        before, self._paused = self._paused, True
        try:
            yield self
        finally:
            self._paused = before

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: ``{"format", "version", "groups", "counts": {prompt: {answer: n}}}``."""
        counts = {k: {str(a): n for a, n in sorted(v.items())} for k, v in sorted(self._counts.items())}
        return {"format": HISTORY_FORMAT, "version": HISTORY_VERSION, "groups": self.groups, "counts": counts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the counts by those of ``state`` (from :meth:`state_dict`); bad input raises."""
        if not isinstance(state, Mapping) or state.get("format") != HISTORY_FORMAT:
            raise ValueError(f"not an answer-history state (expected format {HISTORY_FORMAT!r})")
        if state.get("version") != HISTORY_VERSION:
            raise ValueError(f"answer-history version {state.get('version')!r} is not supported "
                             f"(this polyepo reads version {HISTORY_VERSION})")
        counts: dict[str, dict[int, int]] = {}
        try:
            for key, answers in dict(state["counts"]).items():
                counts[str(key)] = {int(a): int(n) for a, n in dict(answers).items()}
            groups = int(state["groups"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed answer-history state: {e}") from None
        if any(n < 1 for v in counts.values() for n in v.values()) or groups < 0:
            raise ValueError("malformed answer-history state: counts must be >= 1 and groups >= 0")
        self._counts, self.groups = counts, groups

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` as JSON, atomically (a crash never leaves half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.state_dict(), f)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnswerHistory:
        """An :class:`AnswerHistory` read from a file written by :meth:`save`."""
        try:
            state = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read the answer history: {e}") from None
        history = cls()
        try:
            history.load_state_dict(state)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        return history

    def save_to_checkpoint(self, checkpoint_dir: str | os.PathLike) -> Path:
        """Write the history into ``checkpoint_dir`` as :data:`HISTORY_FILE` (atomically)."""
        return self.save(Path(checkpoint_dir) / HISTORY_FILE)

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | os.PathLike) -> AnswerHistory:
        """The history saved in ``checkpoint_dir`` (:data:`HISTORY_FILE`). A checkpoint without it
        is an error (``FileNotFoundError``), never a fresh start: the counts of every step before
        the checkpoint would be lost and the run would train on other advantages than an
        uninterrupted one."""
        path = Path(checkpoint_dir) / HISTORY_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{checkpoint_dir} holds no {HISTORY_FILE}: the historical outcome_explore keeps per-prompt answer "
                "counts across steps, and resuming without them would start the counts afresh (a checkpoint written "
                "by another estimator, or by a polyepo that did not save them?); resume from a checkpoint of this "
                "run, or start afresh")
        return cls.load(path)


def uses_history(*, variant: str = "batch", **_: Any) -> bool:
    """Whether ``outcome_explore`` with these options keeps an :class:`AnswerHistory` (the
    historical variant); attached to the estimator as ``uses_history``."""
    return variant == "historical"


def outcome_explore_advantages(
    rewards,
    clusters,
    *,
    variant: str = "batch",
    coef: float = 0.5,
    scale_by_std: bool = False,
    epsilon: float = 1e-6,
    degenerate=(0, 100),
    history: AnswerHistory | None = None,
    prompt_key: Any = None,
) -> np.ndarray:
    """Outcome-based exploration (Song, Kempe & Munos 2025, arXiv 2509.06941): a bonus by final answer.

    ``clusters`` are answer ids. ``batch``: ``r - coef * (m_i - 1)/(N - 1)``; ``historical``:
    ``r + coef / sqrt(n_i)`` with per-prompt counts from ``history`` (it records this group).
    The shaped reward is centred (Dr.GRPO; ``scale_by_std=True`` divides by its std + epsilon).
    """
    r = check_rewards(rewards)
    c = check_clusters(clusters, r.size)
    if variant not in OUTCOME_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(OUTCOME_VARIANTS)}; got {variant!r}")
    k = check_finite_number(coef, "coef")
    eps = check_finite_number(epsilon, "epsilon")
    deg = np.isin(c, check_degenerate(degenerate))
    N = r.size
    if variant == "batch":
        others = (cluster_sizes(c) - 1) / (N - 1) if N > 1 else np.zeros(N)
        shaped = r - k * np.where(deg, 1.0, others)
    else:
        if not isinstance(history, AnswerHistory):
            raise ValueError("variant='historical' needs history=AnswerHistory() (the per-prompt answer counts "
                             f"across steps), got {type(history).__name__}; see docs/estimators.md")
        if prompt_key is None:
            raise ValueError("variant='historical' needs the prompt's key: prompt_key=..., or "
                             "compute_advantages(..., prompt_keys=[one per rollout])")
        bonus = np.zeros(N)
        if (~deg).any():
            bonus[~deg] = k / np.sqrt(history.record(prompt_key, c[~deg]))
        shaped = r + bonus
    return center(shaped, bool(scale_by_std), eps)


outcome_explore_advantages.uses_history = uses_history  # type: ignore[attr-defined]

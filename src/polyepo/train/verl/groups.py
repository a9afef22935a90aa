"""verl's batch -> the group step's inputs: cluster results per group, unscorable rows, sessions.

verl 0.9 scores rollouts one at a time (its reward loop calls the reward function per
sample), so no reward function sees a whole group. Strategy clustering therefore runs in the
trainer's advantage step, where the whole batch is at hand: rows are grouped by verl's ``uid``
(rows of one group need not be adjacent: verl balances the batch across data-parallel ranks
first), each group's responses go to the clusterer together
(:func:`polyepo.groups.cluster_groups`), and the results are handed to the estimator, which
runs :func:`polyepo.groups.group_step` (:mod:`.estimators`).

Multi-output agent sessions: verl's v1 agent loop may store several outputs of one session
under keys ``{uid}_{session}_{index}``; verl's own ``grpo`` lets only the final output of each
session (highest index) enter the group and gives the session's other outputs its advantage.
polyepo does the same (:func:`session_finals`): only final outputs are clustered and enter
the group step. Pure Python + NumPy: no verl import, testable anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...clustering import Clusterer, ClusterResult
from ...clustering.base import Group, prompt_key
from ...groups import cluster_groups, group_rows, results_from_ids
from .settings import VerlSettings


@dataclass(frozen=True)
class BatchRows:
    """One verl batch (without its padding rows), row-aligned (row i of every field is one rollout).

    Attributes:
        uids: ``[B]`` group label of each row (verl's ``uid``).
        prompts: ``[B]`` prompt text of each row.
        responses: ``[B]`` decoded response text.
        rewards: ``float64[B]`` scalar reward of each row (sum of its token-level scores).
        extras: ``[B]`` the ``reward_extra_info`` dict the reward function returned for each row.
        keys: ``[B]`` verl's TransferQueue keys (``{uid}_{session}_{index}``), or None (one
            output per session).
        problem_ids: ``[B]`` the dataset row's ``extra_info["problem_id"]`` (None where it has
            none), or None when not read.
    """

    uids: Sequence[Any]
    prompts: Sequence[str]
    responses: Sequence[str]
    rewards: np.ndarray
    extras: Sequence[Mapping[str, Any]]
    keys: Sequence[str] | None = None
    problem_ids: Sequence[str | None] | None = None

    def __post_init__(self) -> None:
        B = len(self.uids)
        optional = tuple(name for name in ("keys", "problem_ids") if getattr(self, name) is not None)
        for name in ("prompts", "responses", "rewards", "extras") + optional:
            if len(getattr(self, name)) != B:
                raise ValueError(f"BatchRows.{name} has {len(getattr(self, name))} rows but uids has {B}")


def session_finals(keys: Sequence[str] | None, size: int) -> tuple[list[str], np.ndarray]:
    """``(session of each row, bool[B] final output of its session)`` from verl's keys.

    A key ``{uid}_{session}_{index}`` belongs to session ``{uid}_{session}``; the row with the
    highest index is the session's final output (verl's ``compute_advantage_for_multi_trajectories``).
    Without keys (or for a key of another form) every row is its own session.
    """
    if keys is None:
        return [str(i) for i in range(size)], np.ones(size, dtype=bool)
    sessions: list[str] = []
    best: dict[str, tuple[int, int]] = {}
    for i, key in enumerate(keys):
        parts = str(key).rsplit("_", 2)
        if len(parts) == 3 and parts[2].lstrip("-").isdigit():
            session, index = f"{parts[0]}_{parts[1]}", int(parts[2])
        else:
            session, index = f"row:{i}", 0
        sessions.append(session)
        if session not in best or best[session][0] < index:
            best[session] = (index, i)
    final = np.zeros(size, dtype=bool)
    final[[i for _, i in best.values()]] = True
    return sessions, final


def _group_context(rows: BatchRows, idx: np.ndarray) -> dict[str, Any]:
    context: dict[str, Any] = {"rewards": [float(rows.rewards[i]) for i in idx]}
    for key in sorted({k for i in idx for k in rows.extras[i]}):
        context.setdefault(key, [rows.extras[i].get(key) for i in idx])
    return context


def ids_from_extras(rows: BatchRows, key: str) -> np.ndarray:
    """``int64[B]`` cluster ids that the reward function returned under extra ``key``."""
    out = np.empty(len(rows.uids), dtype=np.int64)
    for i, extra in enumerate(rows.extras):
        if key not in extra:
            have = ", ".join(sorted(extra)) or "(none)"
            raise ValueError(
                f"row {i} (uid={rows.uids[i]!r}): the reward function returned no extra {key!r} "
                f"(algorithm.polyepo.cluster_extra_key); its extras: {have}"
            )
        value = extra[key]
        try:
            ok = not isinstance(value, (bool, np.bool_)) and float(value).is_integer()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"row {i} (uid={rows.uids[i]!r}): extra {key!r} = {value!r} is not an integer id")
        out[i] = int(value)
    return out


def final_groups(rows: BatchRows) -> tuple[list[Any], list[np.ndarray]]:
    """``(uid of each group, row indices of its final outputs)``, groups in order of first
    appearance, rows in batch order: what is clustered (the final output of each agent session)."""
    _, final = session_finals(rows.keys, len(rows.uids))
    idx = np.flatnonzero(final)
    groups = [idx[g] for g in group_rows([rows.uids[i] for i in idx])]
    return [rows.uids[int(g[0])] for g in groups], groups


def group_inputs(rows: BatchRows, groups: Sequence[np.ndarray]) -> list[Group]:
    """What the clusterer sees of each group: its prompt, its responses, and its context (the
    rewards and every reward extra, one value per response)."""
    return [Group(rows.prompts[int(g[0])], [rows.responses[i] for i in g], _group_context(rows, g)) for g in groups]


#: ``(uid, TransferQueue keys of the group's rows, in batch order) -> ClusterResult or None``:
#: results computed before the advantage step (:mod:`.early`), in that row order
Ready = Callable[[Any, list[str]], "ClusterResult | None"]


def cluster_results(
    rows: BatchRows, settings: VerlSettings, clusterer: Clusterer | None = None, ready: Ready | None = None,
) -> tuple[dict[Any, ClusterResult] | None, float]:
    """uid -> the :class:`ClusterResult` of that group's final outputs (batch order), and the
    seconds this call took.

    From ``settings.clusterer`` (each group clustered once, on all its responses together;
    a group that ``ready`` already has is taken from it) or from reward extras
    (``settings.cluster_extra_key``); None when there is no cluster source.
    """
    start = time.perf_counter()
    labels, groups = final_groups(rows)
    if settings.cluster_source == "none":
        return None, 0.0
    if settings.cluster_source == "reward_extra":
        ids = ids_from_extras(rows, str(settings.cluster_extra_key))
        return dict(zip(labels, results_from_ids(ids, groups, backend="reward_extra"))), 0.0
    if clusterer is None:
        raise ValueError(f"algorithm.polyepo.clusterer={settings.clusterer!r} but no clusterer was built")
    found: dict[Any, ClusterResult] = {}
    if ready is not None and rows.keys is not None:
        for label, g in zip(labels, groups):
            result = ready(label, [rows.keys[i] for i in g])
            if result is not None:
                found[label] = result
    todo = [k for k, label in enumerate(labels) if label not in found]
    if todo:
        late, _ = cluster_groups(clusterer, group_inputs(rows, [groups[k] for k in todo]),
                                 labels=[labels[k] for k in todo], workers=settings.cluster_workers)
        found.update(zip([labels[k] for k in todo], late))
    return {label: found[label] for label in labels}, time.perf_counter() - start


def row_columns(rows: BatchRows, none_reward: float | None = None) -> dict[str, np.ndarray]:
    """Per-row columns for the estimator: every reward extra (object arrays, None where a row
    lacks the key), ``unscorable`` (bool: the polyepo reward returned None and no
    ``none_reward`` scored it), ``session`` (the row's agent-loop session),
    ``session_final`` (bool: the session's final output) and ``prompt_key`` (the row's problem
    id, else its prompt text: stable across steps, unlike verl's ``uid``)."""
    B = len(rows.uids)
    columns: dict[str, np.ndarray] = {}
    for key in sorted({k for extra in rows.extras for k in extra}):
        col = np.empty(B, dtype=object)
        for i, extra in enumerate(rows.extras):  # one by one: list-valued extras stay whole
            col[i] = extra.get(key)
        columns[key] = col
    flags = columns.get("reward_none")
    columns["unscorable"] = np.array([none_reward is None and bool(v) for v in flags] if flags is not None
                                     else [False] * B, dtype=bool)
    sessions, final = session_finals(rows.keys, B)
    columns["session"] = np.array(sessions, dtype=object)
    columns["session_final"] = final
    ids = rows.problem_ids if rows.problem_ids is not None else [None] * B
    columns["prompt_key"] = np.array([prompt_key(p, text) for p, text in zip(ids, rows.prompts)], dtype=object)
    return columns


def scatter_columns(columns: Mapping[str, np.ndarray], rows: np.ndarray, total: int) -> dict[str, np.ndarray]:
    """Columns computed for the ``rows`` subset of a batch, placed in a batch of ``total`` rows.

    The other rows (verl's synthetic padding rows) get None (False for ``unscorable``, their
    own session, of which they are the final output, for ``session`` and ``session_final``).
    """
    out: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        if name == "unscorable":
            full = np.zeros(total, dtype=bool)
        elif name == "session_final":
            full = np.ones(total, dtype=bool)
        else:
            full = np.empty(total, dtype=object)
            if name == "session":
                full[:] = [f"padding:{i}" for i in range(total)]
        full[rows] = col
        out[name] = full
    return out

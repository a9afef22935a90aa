"""verl's ``custom_reward_function`` for polyepo rewards.

Point verl at it with::

    reward.custom_reward_function.path=pkg://polyepo.train.verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.reward=code_tests

(``config/polyepo_trainer.yaml`` sets all three). verl 0.9's reward loop calls
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)``
once per rollout; this adapter calls the polyepo reward function registered under
``reward`` with TRL's contract, ``f(prompts, completions, **columns)``, on a batch of one:
``prompts = [row[prompt_key]]``, ``completions = [solution_str]`` and every other column of
the row (plus ``ground_truth`` and ``data_source``) as a one-element column, where the row is
``extra_info`` with the task row that :mod:`polyepo.train.verl.data` stores as JSON under
``extra_info["polyepo_row"]`` decoded into it.
It returns ``{"score": float, "reward_none": 0 | 1}``; verl stores the dict as the row's
``reward_extra_info``, which the trainer's grouping step reads back (docs/verl.md): a row with
``reward_none = 1`` and no ``none_reward`` is unscorable, and the group step's policy applies.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

from ...rewards import RewardFunction, make_reward
from .settings import plain


@lru_cache(maxsize=32)
def _cached_reward(name: str, options_json: str) -> RewardFunction:
    return make_reward(name, **json.loads(options_json))


def reward_function(name: str, options: dict[str, Any] | None = None) -> RewardFunction:
    """The reward function ``name`` built with ``options``, built once per process."""
    opts = plain(options or {})
    try:
        key = json.dumps(opts, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"reward_options for {name!r} must be JSON-like values: {e}") from None
    return _cached_reward(name, key)


def _score(value: Any, name: str, none_reward: float | None, where: str) -> tuple[float, int]:
    if value is None:  # not applicable: flagged; the group step's `unscorable` policy decides (docs/verl.md)
        return (0.0 if none_reward is None else float(none_reward)), 1
    score = float(value)
    if not math.isfinite(score):
        raise ValueError(f"reward {name!r} returned {value!r} for {where}; rewards must be finite")
    return score, 0


def compute_score(
    data_source: Any = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: dict[str, Any] | None = None,
    *,
    reward: str | None = None,
    reward_options: dict[str, Any] | None = None,
    none_reward: float | None = None,
    prompt_key: str = "prompt",
    **verl_kwargs: Any,
) -> dict[str, Any]:
    """Score one rollout with the polyepo reward ``reward`` (verl's custom reward contract).

    Args:
        data_source: the dataset row's ``data_source`` (passed on as a column).
        solution_str: the decoded response.
        ground_truth: the row's ``reward_model.ground_truth`` (passed on as a column).
        extra_info: the row's ``extra_info`` dict: the reward's columns (``test``,
            ``entry_point``, ``answer`` ...) and the prompt under ``prompt_key``, directly or
            inside the JSON string ``extra_info["polyepo_row"]``.
        reward: name in ``polyepo.rewards.REWARDS`` (from ``reward_kwargs``).
        reward_options: options for the reward's factory.
        none_reward: the score given to a row the reward returns None for ("not
            applicable"). None (default): the row is unscorable, its ``score`` a 0.0 stand-in
            that the group step never uses (``algorithm.polyepo.unscorable`` decides: drop it
            from its group, score it 0, or stop); a number: the row is scored with it.
        prompt_key: the ``extra_info`` field holding the prompt text.
        **verl_kwargs: other keywords verl may pass (reward-model router ...); unused.

    Returns:
        ``{"score": float, "reward_none": 0 or 1}`` (``reward_none`` = 1: the reward returned None).
    """
    if not reward:
        raise ValueError(
            "reward_kwargs.reward is not set: name a polyepo reward function "
            "(e.g. +reward.custom_reward_function.reward_kwargs.reward=code_tests)"
        )
    info = dict(plain(extra_info) if extra_info is not None else {})
    if "polyepo_row" in info:  # the task row, stored whole by polyepo.train.verl.data
        info.update(json.loads(info.pop("polyepo_row")))
    fn = reward_function(reward, reward_options)
    columns = {k: [v] for k, v in info.items() if k != prompt_key}  # as TRL: the prompt is not a column
    columns.setdefault("ground_truth", [plain(ground_truth)])
    columns.setdefault("data_source", [data_source])
    values = fn([info.get(prompt_key, "")], [solution_str], **columns)
    where = f"data_source={data_source!r}, index={info.get('index')!r}"
    if len(values) != 1:
        raise ValueError(f"reward {reward!r} returned {len(values)} values for 1 completion ({where})")
    score, none = _score(values[0], reward, none_reward, where)
    return {"score": score, "reward_none": none}

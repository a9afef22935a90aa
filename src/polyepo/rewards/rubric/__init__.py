"""Rubric rewards from reference solutions (ExpRL): dense, judged credit for partial progress.

From a problem and its human-written reference solution, an LLM writes a short rubric of
checkable milestones (outcome items and process items), kept as an editable YAML file per
problem. An LLM judge, shown the reference (which the policy never sees), grades each response
item by item; the verdicts give an outcome score and a process score in [0, 1], combined with
documented weights and optionally mixed with a verifiable reward. Registered as the reward
``rubric``: ``make_reward("rubric", model=..., verifiable="math_answer")``. See docs/rubric.md.

Importing this package is light: ``openai`` is imported when a judge client is built.
"""

from __future__ import annotations

from .. import REWARDS
from .echo import EchoResult, echo_check
from .judging import Problem, Resolved, RubricBook
from .model import VERDICTS, Rubric, RubricItem, RubricStore, fingerprint
from .options import RubricOptions
from .reward import RowResult, RubricReward, combine, completion_text, leaked_lines, make_rubric_reward

REWARDS.register("rubric")(make_rubric_reward)


def option_names() -> list[str]:
    """Every option of the ``rubric`` reward: RubricOptions fields, JudgeConfig fields, ``client``."""
    from ...judge.config import JudgeConfig

    return [*RubricOptions.fields(), *JudgeConfig.fields(), "client"]

__all__ = [
    "VERDICTS",
    "EchoResult",
    "Problem",
    "Resolved",
    "RowResult",
    "Rubric",
    "RubricBook",
    "RubricItem",
    "RubricOptions",
    "RubricReward",
    "RubricStore",
    "combine",
    "completion_text",
    "echo_check",
    "fingerprint",
    "leaked_lines",
    "make_rubric_reward",
    "option_names",
]

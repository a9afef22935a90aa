"""Every option of the rubric reward, defined once (the fields' docstrings are its reference)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

#: Where built rubrics are written and edited ones read, unless ``rubric_dir`` says otherwise.
DEFAULT_RUBRIC_DIR = "~/.cache/polyepo/rubrics"
ON_FAILURE = ("raise", "none", "verifiable_only", "wait")
#: what a completion gets under ``on_failure=wait`` when the judge fails on it while answering others
ON_ITEM_FAILURE = ("raise", "none", "verifiable_only")
ECHO_ACTIONS = ("flag", "penalize", "zero")
EVIDENCE_CHECKS = ("downgrade", "off")


@dataclass
class RubricOptions:
    """Settings of :class:`~polyepo.rewards.rubric.RubricReward` (the judge's own settings are
    :class:`polyepo.judge.JudgeConfig` fields, passed alongside these)."""

    outcome_weight: float = 0.5
    """Weight of the outcome score in the judged score (``w_o``)."""
    process_weight: float = 0.5
    """Weight of the process score in the judged score (``w_p``); judged = (w_o O + w_p P) / (w_o + w_p)."""
    verifiable: str | None = None
    """Name of a registered reward mixed in where it applies (``math_answer``, ``code_tests``, ...)."""
    verifiable_options: dict[str, Any] = field(default_factory=dict)
    """Options of the verifiable reward."""
    verifiable_weight: float = 0.5
    """Weight ``w_v`` of the verifiable reward: reward = (1 - w_v) judged + w_v verifiable."""
    on_failure: str = "raise"
    """A failed judge call (rubric build or scoring): ``raise`` (stop; replies already received
    stay cached), ``none`` (the completion gets None: TRL leaves it out of its group),
    ``verifiable_only`` (the verifiable reward alone; None where it does not apply), or ``wait``
    (during a judge outage the reward waits until the judge answers again, for at most the
    judge's ``max_wait_s``, then stops with ``JudgeUnavailableError``; a call the judge fails on
    while it answers others gets ``on_item_failure``)."""
    on_item_failure: str = "raise"
    """With ``on_failure=wait``: what a completion gets when the judge fails on it while it
    answers others (invalid replies after the re-asks, a 4xx): ``raise``, ``none`` or
    ``verifiable_only``, as ``on_failure``."""
    echo_action: str = "penalize"
    """A response flagged by the echo check: ``flag`` (count it only), ``penalize`` (the judged
    score times 1 - ``echo_penalty``) or ``zero`` (judged score 0; the verifiable part stays)."""
    echo_penalty: float = 0.5
    """Fraction of the judged score removed from a flagged response with ``echo_action=penalize``."""
    echo_ngram: int = 3
    """Word n-gram length of the echo check."""
    echo_threshold: float = 0.5
    """Flag when at least this fraction of the rubric's n-grams occurs in the response ..."""
    echo_density: float = 0.5
    """... and at least this fraction of the response's n-grams is rubric wording (or the
    verifiable reward says the response is wrong)."""
    evidence_check: str = "downgrade"
    """``downgrade``: a met/partial verdict whose evidence quote is not found in the response
    counts as missed (and is counted); ``off``: verdicts are taken as given."""
    show_reference: bool = True
    """Show the reference solution to the scoring judge (it is always shown to the rubric builder)."""
    leak_check: bool = True
    """Stop with an error when a policy prompt contains the reference solution (see docs)."""
    max_items: int = 6
    """Most items the builder may write (1-2 outcome, the rest process)."""
    max_response_chars: int = 12000
    """Longer responses are cut in the middle before scoring (0 = never)."""
    rubric_dir: str = DEFAULT_RUBRIC_DIR
    """Directory of rubric files ``<problem_id>.yaml``: built ones are written there, edited ones
    read from there. ``$POLYEPO_RUBRIC_DIR`` overrides the default."""
    build_missing: bool = True
    """Build a rubric with the judge when a problem has none; False makes a missing rubric an error."""
    build_prompt: str = "default"
    """``default`` or a template file with ``{{PROBLEM}}`` and ``{{REFERENCE}}``."""
    score_prompt: str = "default"
    """``default`` or a template file with ``{{PROBLEM}}``, ``{{RUBRIC}}``, ``{{RESPONSE}}``."""
    build_judge: dict[str, Any] = field(default_factory=dict)
    """JudgeConfig fields that differ for rubric building (e.g. a stronger ``model``)."""
    reference_column: str = "reference"
    """Dataset column holding the reference solution (never part of the prompt)."""
    problem_column: str = "problem"
    """Column with the problem statement shown to the judge; the prompt's text when absent."""
    id_column: str = "problem_id"
    """Column with the problem id (names the rubric file); a digest of the problem when absent."""
    rubric_column: str = "rubric"
    """Optional column with a rubric file path or an inline rubric; wins over ``rubric_dir``."""

    def __post_init__(self) -> None:
        choices = {"on_failure": ON_FAILURE, "on_item_failure": ON_ITEM_FAILURE, "echo_action": ECHO_ACTIONS,
                   "evidence_check": EVIDENCE_CHECKS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        for name in ("outcome_weight", "process_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.outcome_weight + self.process_weight > 0:
            raise ValueError("outcome_weight + process_weight must be > 0")
        for name in ("verifiable_weight", "echo_penalty", "echo_threshold", "echo_density"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.echo_ngram < 1:
            raise ValueError(f"echo_ngram must be >= 1, got {self.echo_ngram!r}")
        if self.max_items < 2:
            raise ValueError(f"max_items must be >= 2 (an outcome and a process item), got {self.max_items!r}")
        if self.item_policy == "verifiable_only" and not self.verifiable:
            what = "on_item_failure" if self.on_failure == "wait" else "on_failure"
            raise ValueError(f"{what}='verifiable_only' needs a verifiable reward: set verifiable=NAME "
                             f"(e.g. math_answer or code_tests), or choose {what}='none' or 'raise'")

    @property
    def item_policy(self) -> str:
        """What a completion gets when its judge call failed: ``on_failure``, or under ``wait``
        (where an outage never fails a call) ``on_item_failure``."""
        return self.on_item_failure if self.on_failure == "wait" else self.on_failure

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def resolved_rubric_dir(self) -> str:
        if self.rubric_dir == DEFAULT_RUBRIC_DIR:
            return os.environ.get("POLYEPO_RUBRIC_DIR", DEFAULT_RUBRIC_DIR)
        return self.rubric_dir

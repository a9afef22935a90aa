"""Asking the judge: building rubrics (once per problem, kept as files) and scoring responses.

Both go through :class:`polyepo.judge.JudgeClient` (retries, limits, re-asks, the SQLite reply
cache, the circuit breaker), namespace ``rubric``. Nothing here applies a failure policy: a
failure comes back as an error string for :class:`~polyepo.rewards.rubric.RubricReward`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from ...clustering.judge import shorten
from ...judge.client import JudgeClient, JudgeOutcome, JudgeRequest
from .model import Rubric, RubricStore, fingerprint, items_from_lists, rubric_from_value
from .prompts import NOT_SHOWN, fill, keys_text, validate_build, validate_score

log = logging.getLogger("polyepo.rewards.rubric")


@dataclass
class Problem:
    """One problem of a batch: what the judge is told about it."""

    problem_id: str
    problem: str
    reference: str | None
    rubric_value: Any = None


@dataclass
class Resolved:
    """The rubric of one problem, or why there is none (``error`` = a judge failure;
    ``missing`` = no reference and no rubric: the rubric reward does not apply)."""

    rubric: Rubric | None = None
    how: str = ""
    """``column`` | ``file`` | ``built`` (or ``""`` when there is no rubric)."""
    error: str | None = None
    missing: bool = False
    stale: bool = False


def build_request(template: str, problem: str, reference: str, max_items: int, template_id: str) -> JudgeRequest:
    message = fill(template, {"PROBLEM": problem.strip(), "REFERENCE": reference.strip(),
                              "MAX_ITEMS": str(max_items), "MAX_PROCESS": str(max_items - 1)})
    return JudgeRequest(messages=[{"role": "user", "content": message}],
                        validate=partial(validate_build, max_items=max_items),
                        cache_extra={"kind": "rubric_build", "template": template_id, "max_items": max_items})


def score_request(template: str, rubric: Rubric, problem: str, reference: str | None, response: str, *,
                  show_reference: bool, max_chars: int, template_id: str) -> JudgeRequest:
    shown_ref = reference.strip() if (show_reference and reference) else NOT_SHOWN
    message = fill(template, {"PROBLEM": problem.strip(), "REFERENCE": shown_ref, "RUBRIC": rubric.render(),
                              "RESPONSE": shorten(response.strip(), max_chars), "KEYS": keys_text(rubric.ids)})
    return JudgeRequest(messages=[{"role": "user", "content": message}],
                        validate=partial(validate_score, ids=rubric.ids),
                        cache_extra={"kind": "rubric_score", "template": template_id})


class RubricBook:
    """Finds the rubric of each problem: the row's rubric column, else ``<rubric_dir>/<id>.yaml``,
    else (``build_missing``) one built by the judge and written to that file.

    A file is used as it is, even when its fingerprint says it was built from another problem
    text or reference (``stale``: counted and logged once; delete the file to rebuild).
    """

    def __init__(self, store: RubricStore, client: JudgeClient, template: str, template_id: str, *,
                 max_items: int, build_missing: bool, wait: bool = False) -> None:
        self.store, self.client, self.wait = store, client, wait
        self.template, self.template_id = template, template_id
        self.max_items, self.build_missing = max_items, build_missing
        self._warned: set[str] = set()

    def resolve(self, problems: list[Problem], *, rebuild: bool = False) -> list[Resolved]:
        """One :class:`Resolved` per problem; missing rubrics are built concurrently."""
        out: list[Resolved] = []
        to_build: list[int] = []
        for k, p in enumerate(problems):
            res = Resolved() if rebuild else self._existing(p)
            if res.rubric is None and p.reference and p.reference.strip():
                if not (self.build_missing or rebuild):
                    raise ValueError(f"problem {p.problem_id!r} has no rubric (no {self.store.path_for(p.problem_id)} "
                                     "and no rubric column) and build_missing=False")
                to_build.append(k)
            elif res.rubric is None:
                res.missing = True
            out.append(res)
        requests = [build_request(self.template, problems[k].problem, problems[k].reference or "", self.max_items,
                                  self.template_id) for k in to_build]
        for k, outcome in zip(to_build, self.client.complete_many(requests, wait=self.wait)):
            out[k] = self._built(problems[k], outcome)
        return out

    def _existing(self, p: Problem) -> Resolved:
        rubric = rubric_from_value(p.rubric_value, p.problem_id)
        how = "column"
        if rubric is None:
            rubric, how = self.store.load(p.problem_id), "file"
        if rubric is None:
            return Resolved()
        stale = bool(rubric.fingerprint and p.reference
                     and rubric.fingerprint != fingerprint(p.problem, p.reference))
        if stale and p.problem_id not in self._warned:
            self._warned.add(p.problem_id)
            log.warning("rubric %s was built from another problem text or reference; using it as it is "
                        "(delete it to build it again)", rubric.path or p.problem_id)
        return Resolved(rubric, how, stale=stale)

    def _built(self, p: Problem, outcome: JudgeOutcome) -> Resolved:
        if not outcome.ok:
            return Resolved(error=f"building the rubric of {p.problem_id!r} failed: {outcome.error}")
        outcome_texts, process_texts = outcome.value
        rubric = Rubric(p.problem_id, items_from_lists(outcome_texts, process_texts),
                        fingerprint=fingerprint(p.problem, p.reference or ""), source="judge", model=self.client.model)
        self.store.save(rubric)
        return Resolved(rubric, "built")

"""``rubric``: the ExpRL reward, with TRL's reward-function contract.

For every completion: find the problem's rubric (:class:`~.judging.RubricBook`), ask the judge
for a verdict per rubric item, turn the verdicts into an outcome score O and a process score P
(:meth:`Rubric.scores`), and combine them, optionally with a verifiable reward V::

    judged = e * (w_o O + w_p P) / (w_o + w_p)        e = echo factor (1, 1 - echo_penalty, or 0)
    reward = (1 - w_v) judged + w_v V                  where V applies (not None), else judged

A failed judge call is handled by ``on_failure`` (``raise`` | ``none`` | ``verifiable_only``, or
``wait``: an outage pauses the reward until the judge is back, and the calls it fails on while
up get ``on_item_failure``), never turned into 0. The reference solution is read from a dataset column and shown only to
the judge; with ``leak_check`` a prompt that contains it stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...judge.client import JudgeClient
from ...judge.config import JudgeConfig
from ...judge.policy import JudgeFailedError
from .. import column, make_reward
from ..extract import completion_text
from .echo import EchoResult, echo_check
from .judging import Problem, RubricBook, score_request
from .model import RubricStore, fingerprint
from .options import RubricOptions
from .prompts import evidence_found, load_template

log = logging.getLogger("polyepo.rewards.rubric")

#: numeric ``last_stats`` keys (docs/rubric.md explains each)
STAT_KEYS = ("rows", "scored", "empty", "not_applicable", "none", "verifiable_fallbacks",
             "judge_failures", "build_failures", "rubrics_built", "rubrics_loaded", "stale_rubrics",
             "calls", "cache_hits", "requests", "retries", "reasks", "echo_flags", "unsupported_verdicts")
LEAK_MIN_LINE = 30


@dataclass
class RowResult:
    """What one completion came to: ``status`` is ``scored`` | ``empty`` | ``not_applicable`` |
    ``failed``; verdicts are after the evidence check (``unsupported`` lists the downgraded ids)."""

    status: str
    reward: float | None = None
    outcome: float | None = None
    process: float | None = None
    judged: float | None = None
    verifiable: float | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    echo: EchoResult | None = None
    cache_hit: bool = False
    error: str | None = None


def all_prompt_text(prompt: Any) -> str:
    """Every message of a prompt (system and user turns alike), or the prompt string."""
    if isinstance(prompt, (list, tuple)):
        return "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))
    return "" if prompt is None else str(prompt)


def leaked_lines(prompt: str, reference: str, problem: str | None = None) -> list[str]:
    """Parts of ``reference`` found in ``prompt``: the whole reference, or any of its lines with at
    least 30 non-space characters, except lines that are also in the problem statement (a
    signature or docstring a code reference repeats from the problem is public)."""
    norm = lambda s: " ".join(s.split())  # noqa: E731
    p, ref = norm(prompt), norm(reference)
    if not ref:
        return []
    public = norm(problem or "")
    if ref in p and ref not in public:
        return [ref]
    lines = {norm(line) for line in reference.splitlines()}
    return sorted(x for x in lines if len(x.replace(" ", "")) >= LEAK_MIN_LINE and x in p and x not in public)


def combine(outcome: float, process: float, *, outcome_weight: float, process_weight: float,
            verifiable: float | None = None, verifiable_weight: float = 0.0, echo_factor: float = 1.0) -> float:
    """The reward of one completion (module docstring); ``verifiable=None`` = judged score alone."""
    judged = echo_factor * (outcome_weight * outcome + process_weight * process) / (outcome_weight + process_weight)
    return judged if verifiable is None else (1.0 - verifiable_weight) * judged + verifiable_weight * float(verifiable)


class RubricReward:
    """The ``rubric`` reward function. Build it with :func:`make_rubric_reward` or
    ``make_reward("rubric", **options)``; ``options`` are :class:`RubricOptions` and
    :class:`~polyepo.judge.JudgeConfig` fields. ``last_stats`` and ``last_results`` describe
    the last call."""

    __name__ = "rubric"

    def __init__(self, options: RubricOptions | None = None, judge: JudgeConfig | None = None, *,
                 client: JudgeClient | None = None, build_client: JudgeClient | None = None) -> None:
        self.options = opts = options or RubricOptions()
        self.verifiable = None
        if opts.verifiable:
            if opts.verifiable == "rubric":
                raise ValueError("verifiable='rubric' would mix the rubric reward with itself; name a verifiable reward")
            self.verifiable = make_reward(opts.verifiable, **opts.verifiable_options)
        self.client = client or JudgeClient(judge or JudgeConfig(), namespace="rubric")
        if build_client is None and opts.build_judge:
            base = {f: getattr(self.client.config, f) for f in JudgeConfig.fields()}
            build_client = JudgeClient(JudgeConfig(**{**base, **opts.build_judge}), namespace="rubric")
        self.build_client = build_client or self.client
        build_template = load_template("build", opts.build_prompt)
        self.score_template = load_template("score", opts.score_prompt)
        self.score_template_id = hashlib.sha256(self.score_template.encode()).hexdigest()[:16]
        self.waits = opts.on_failure == "wait"
        self.book = RubricBook(RubricStore(opts.resolved_rubric_dir()), self.build_client, build_template,
                               hashlib.sha256(build_template.encode()).hexdigest()[:16],
                               max_items=opts.max_items, build_missing=opts.build_missing, wait=self.waits)
        self.last_stats: dict[str, Any] = {}
        self.last_results: list[RowResult] = []

    @property
    def wait_limit_s(self) -> float | None:
        """Under ``on_failure=wait``: the longest a judge outage may pause one call (``max_wait_s``)."""
        if not self.waits:
            return None
        return max(c.config.max_wait_s for c in (self.client, self.build_client))

    # -- the reward contract ------------------------------------------------------------------

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        start = time.perf_counter()
        before = self._judge_counts()
        n = len(completions)
        texts = [completion_text(c) for c in completions]
        problems = self._problems(prompts, n, columns)
        verifiable = self._verifiable(prompts, completions, columns, n)
        ids = list(dict.fromkeys(p.problem_id for p in problems))
        first = {pid: next(p for p in problems if p.problem_id == pid) for pid in ids}
        resolved = dict(zip(ids, self.book.resolve([first[pid] for pid in ids])))
        results = self._score(problems, texts, resolved, verifiable)
        rewards = self._apply_policy(results)
        self.last_results = results
        self.last_stats = self._stats(results, resolved, before, time.perf_counter() - start)
        self._report(columns, results)
        failed = [k for k, r in enumerate(results) if r.status == "failed"]
        if failed and self.options.item_policy == "raise":
            what = "on_item_failure" if self.waits else "on_failure"
            raise JudgeFailedError(
                f"the rubric judge failed on {len(failed)} of {n} completion(s) (first: {results[failed[0]].error}). "
                f"{what}='raise' stops here; set {what}='none' (the completion gets None) or "
                "'verifiable_only' (with verifiable=NAME) to continue through judge failures.")
        return rewards

    # -- steps ----------------------------------------------------------------------------------

    def _problems(self, prompts: Sequence[Any], n: int, columns: dict[str, Any]) -> list[Problem]:
        o = self.options
        if len(prompts) != n:
            raise ValueError(f"got {len(prompts)} prompts for {n} completions")
        refs, stmts = column(columns, o.reference_column, n), column(columns, o.problem_column, n)
        pids, rubrics = column(columns, o.id_column, n), column(columns, o.rubric_column, n)
        out, checked = [], set()
        for k in range(n):
            ptext = all_prompt_text(prompts[k])
            problem = str(stmts[k]) if stmts[k] is not None else ptext
            ref = None if refs[k] is None else str(refs[k])
            if o.leak_check and ref and (ptext, ref) not in checked:
                checked.add((ptext, ref))
                leaks = leaked_lines(ptext, ref, None if stmts[k] is None else problem)
                if leaks:
                    raise ValueError(
                        f"the policy prompt of row {k} contains the reference solution ({leaks[0][:80]!r}): the "
                        f"reference must only be in the {o.reference_column!r} column, never in the prompt. "
                        "Fix the task's prompt template (leak_check=False turns this check off).")
            pid = str(pids[k]) if pids[k] is not None else "p-" + fingerprint(problem, ref or "")
            out.append(Problem(pid, problem, ref, rubrics[k]))
        return out

    def _verifiable(self, prompts, completions, columns, n: int) -> list[float | None]:
        if self.verifiable is None:
            return [None] * n
        values = list(self.verifiable(prompts, completions, **columns))
        if len(values) != n:
            raise ValueError(f"verifiable reward {self.options.verifiable!r} returned {len(values)} values for {n} completions")
        return [None if v is None else float(v) for v in values]

    def _score(self, problems, texts, resolved, verifiable) -> list[RowResult]:
        o = self.options
        results: list[RowResult | None] = [None] * len(texts)
        asks: list[int] = []
        for k, (p, text) in enumerate(zip(problems, texts)):
            res = resolved[p.problem_id]
            if res.error:
                results[k] = RowResult("failed", verifiable=verifiable[k], error=res.error)
            elif res.missing:
                results[k] = RowResult("not_applicable", verifiable=verifiable[k])
            elif not text.strip():
                results[k] = self._finish(res.rubric, text, {i: ("missed", "") for i in res.rubric.ids},
                                          verifiable[k], status="empty")
            else:
                asks.append(k)
        requests = [score_request(self.score_template, resolved[problems[k].problem_id].rubric, problems[k].problem,
                                  problems[k].reference, texts[k], show_reference=o.show_reference,
                                  max_chars=o.max_response_chars, template_id=self.score_template_id) for k in asks]
        for k, outcome in zip(asks, self.client.complete_many(requests, wait=self.waits)):
            if outcome.ok:
                rubric = resolved[problems[k].problem_id].rubric
                results[k] = self._finish(rubric, texts[k], outcome.value, verifiable[k], cache_hit=outcome.cache_hit)
            else:
                results[k] = RowResult("failed", verifiable=verifiable[k], error=f"scoring failed: {outcome.error}")
        return [r for r in results if r is not None]

    def _finish(self, rubric, text: str, judged: dict[str, tuple[str, str]], verifiable: float | None, *,
                status: str = "scored", cache_hit: bool = False) -> RowResult:
        o = self.options
        verdicts = {i: v for i, (v, _) in judged.items()}
        evidence = {i: e for i, (_, e) in judged.items()}
        unsupported = []
        if o.evidence_check == "downgrade":
            unsupported = [i for i, v in verdicts.items() if v != "missed" and not evidence_found(evidence[i], text)]
            verdicts.update(dict.fromkeys(unsupported, "missed"))
        outcome, process = rubric.scores(verdicts)
        echo = echo_check(text, [i.text for i in rubric.items], n=o.echo_ngram, threshold=o.echo_threshold,
                          density_threshold=o.echo_density, verifiable=verifiable)
        factor = 1.0
        if echo.flagged:
            factor = {"flag": 1.0, "penalize": 1.0 - o.echo_penalty, "zero": 0.0}[o.echo_action]
        judged_score = combine(outcome, process, outcome_weight=o.outcome_weight, process_weight=o.process_weight,
                               echo_factor=factor)
        reward = combine(outcome, process, outcome_weight=o.outcome_weight, process_weight=o.process_weight,
                         verifiable=verifiable, verifiable_weight=o.verifiable_weight, echo_factor=factor)
        return RowResult(status, reward, outcome, process, judged_score, verifiable, verdicts, evidence, unsupported,
                         echo, cache_hit)

    def _apply_policy(self, results: list[RowResult]) -> list[float | None]:
        out: list[float | None] = []
        for r in results:
            if r.status in ("scored", "empty"):
                out.append(r.reward)
            elif r.status == "not_applicable":  # no rubric: the verifiable reward alone, where it applies
                r.reward = r.verifiable
                out.append(r.reward)
            else:
                r.reward = r.verifiable if self.options.item_policy == "verifiable_only" else None
                out.append(r.reward)
        return out

    # -- statistics -------------------------------------------------------------------------------

    def _judge_counts(self) -> dict[str, int]:
        clients = {id(c): c for c in (self.client, self.build_client)}.values()
        total: dict[str, int] = {}
        for c in clients:
            for k, v in c.stats.snapshot().items():
                total[k] = total.get(k, 0) + v
        return total

    def _stats(self, results: list[RowResult], resolved, before: dict[str, int], seconds: float) -> dict[str, Any]:
        s: dict[str, Any] = dict.fromkeys(STAT_KEYS, 0)
        s["rows"] = len(results)
        for r in results:
            s["judge_failures" if r.status == "failed" else r.status] += 1
            s["none"] += r.reward is None
            s["echo_flags"] += bool(r.echo and r.echo.flagged)
            s["unsupported_verdicts"] += len(r.unsupported)
            s["verifiable_fallbacks"] += r.status == "failed" and r.reward is not None
        for res in resolved.values():
            s["build_failures"] += res.error is not None
            s["rubrics_built"] += res.how == "built"
            s["rubrics_loaded"] += res.how in ("file", "column")
            s["stale_rubrics"] += res.stale
        after = self._judge_counts()
        for key in ("calls", "cache_hits", "requests", "retries", "reasks"):
            s[key] = after.get(key, 0) - before.get(key, 0)
        for key in sorted(k for k in after if k.startswith("errors/")):  # failures by kind
            if after[key] - before.get(key, 0):
                s[key] = after[key] - before.get(key, 0)
        scored = [r for r in results if r.status in ("scored", "empty")]
        for key in ("outcome", "process", "judged"):
            s[f"{key}_mean"] = sum(getattr(r, key) for r in scored) / len(scored) if scored else 0.0
        given = [r.reward for r in results if r.reward is not None]
        s["reward_mean"] = sum(given) / len(given) if given else 0.0
        s["seconds"] = seconds
        s["policy"] = self.options.on_failure if not self.waits else f"wait, then {self.options.on_item_failure}"
        return s

    def _report(self, columns: dict[str, Any], results: list[RowResult]) -> None:
        """Hand the statistics to TRL's ``log_metric`` / ``log_extra`` hooks when it passes them."""
        log_metric, log_extra = columns.get("log_metric"), columns.get("log_extra")
        if callable(log_metric):
            for key, value in self.last_stats.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    log_metric(f"rubric/{key}", float(value))
        if callable(log_extra):
            log_extra("rubric_outcome", [r.outcome for r in results])
            log_extra("rubric_process", [r.process for r in results])
            log_extra("rubric_echo", [bool(r.echo and r.echo.flagged) for r in results])

    # -- building by hand ---------------------------------------------------------------------------

    def build(self, problems: list[Problem], *, rebuild: bool = False):
        """Resolve (and build where missing, or all with ``rebuild``) the rubrics of ``problems``."""
        return self.book.resolve(problems, rebuild=rebuild)


def make_rubric_reward(**options: Any) -> RubricReward:
    """``RubricReward`` from one flat dict of :class:`RubricOptions` and JudgeConfig fields
    (``client=`` shares an existing :class:`JudgeClient`)."""
    client = options.pop("client", None)
    mine = set(RubricOptions.fields())
    judge_fields = set(JudgeConfig.fields())
    unknown = sorted(set(options) - mine - judge_fields)
    if unknown:
        raise ValueError(f"unknown rubric option(s) {', '.join(unknown)}; valid options: "
                         f"{', '.join([*RubricOptions.fields(), *JudgeConfig.fields(), 'client'])}")
    bad = sorted(set(options.get("build_judge") or {}) - judge_fields)
    if bad:
        raise ValueError(f"unknown build_judge option(s) {', '.join(bad)}; valid: {', '.join(JudgeConfig.fields())}")
    rubric = RubricOptions(**{k: v for k, v in options.items() if k in mine})
    judge = None if client else JudgeConfig(**{k: v for k, v in options.items() if k in judge_fields})
    return RubricReward(rubric, judge, client=client)


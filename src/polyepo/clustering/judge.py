"""``judge``: strategy clusters from an LLM judge, one request per group, as in the papers.

The prompt (``prompts/math.md`` or ``prompts/code.md``, or a file of your own) asks for a
macro- and a micro-strategy per response, same cluster iff both match, a degenerate id, and
a strict JSON reply ``{"1": {"reasoning": ..., "cluster_id": int}, ..., "N": ...}``. The
request goes through :class:`polyepo.judge.JudgeClient` (retries, limits, cache, re-asks).

Before asking: code can be canonicalised (comments, docstrings and local names removed, so
the judge cannot split on them), exact duplicates are shown once, empty responses are
degenerate without asking, and over-long responses are cut in the middle. When the judge
fails, the explicit ``on_failure`` policy applies (docs/clustering.md says what each one does to
the gradient):

* ``wait`` (default): during an outage, block until the judge answers again (a status line
  every ``status_interval_s``), for at most ``max_wait_s``, then stop with
  :class:`~polyepo.judge.JudgeUnavailableError`, which says how to resume; a group the judge
  fails on while it is up (invalid replies after the re-asks, a 4xx) gets ``on_group_failure``
  (default ``reward_only``);
* ``reward_only``: the group is marked ``policy="reward_only"`` (ids all degenerate), and the
  group step (:func:`polyepo.groups.group_step`) gives it exactly ``dr_grpo``'s advantage
  (``r - mean(r)``, whatever the estimator) and leaves it out of the diversity means;
* ``zero_diversity``: every response of the group degenerate, so no set earns diversity;
* ``fallback:NAME``: an offline backend clusters the group;
* ``raise``: stop the run.

Never "all distinct".
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ..judge.client import JudgeClient, JudgeOutcome, JudgeRequest
from ..judge.config import JudgeConfig
from ..judge.policy import FailurePolicy, JudgeFailedError
from ..judge.replies import InvalidReply, excerpt, parse_json_object, short_repr
from ..settings import did_you_mean
from .base import CLUSTERERS, BaseClusterer, ClusterResult, Group, GroupLike, as_group, make_clusterer
from .code import CANONICAL_MODES, canonicalize_response

log = logging.getLogger("polyepo.clustering")

PROMPT_DIR = Path(__file__).with_name("prompts")
BUILTIN_PROMPTS = ("code", "math")
PLACEHOLDERS = ("{{PROBLEM}}", "{{RESPONSES}}", "{{N}}")
#: the clusterer's neutral answers to a failed group (the first is what "neutral" means)
NEUTRAL = ("zero_diversity", "reward_only")
#: fallbacks that invent strategies on sampled text, refused unless ``force_fallback``: why
UNSAFE_FALLBACKS = {
    "exact": "'exact' clusters by identical text, and sampled responses almost never repeat word for word, so "
             "nearly every response becomes its own strategy (on the shipped labelled set every response is "
             "distinct: 3.8 more strategies per group than the labels hold), a spurious diversity bonus for "
             "exactly the groups the judge did not see",
}
_PLACEHOLDER = re.compile(r"\{\{(PROBLEM|RESPONSES|N|KEYS|DEGENERATE)\}\}")


def wait_limit_s(name: str | None, options: dict[str, Any] | None) -> float | None:
    """The longest a clusterer built as ``make_clusterer(name, **options)`` may pause a training
    step: the judge's ``max_wait_s`` under ``on_failure=wait`` (its default), else None (it never
    waits). Read from the config alone, before anything is built; a bad ``on_failure`` raises."""
    if name != "judge":
        return None
    opts = dict(options or {})
    policy = FailurePolicy.parse(opts.get("on_failure", "wait"), neutral_name=NEUTRAL)
    if policy.action != "wait":
        return None
    return float(opts.get("max_wait_s", JudgeConfig.max_wait_s))


def load_template(prompt: str) -> str:
    """Template text of a built-in prompt (``code``, ``math``) or of a file path."""
    if prompt in BUILTIN_PROMPTS:
        return (PROMPT_DIR / f"{prompt}.md").read_text(encoding="utf-8")
    path = Path(prompt).expanduser()
    if not path.is_file():
        raise ValueError(f"prompt must be one of {', '.join(BUILTIN_PROMPTS)} or a template file; {prompt!r} is neither")
    text = path.read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ValueError(f"prompt template {path} lacks the placeholder(s) {', '.join(missing)}")
    return text


def render_prompt(template: str, problem: str, responses: Sequence[str], degenerate: int) -> str:
    """The user message: ``template`` with the problem, the numbered responses, N and the keys."""
    n = len(responses)
    blocks = "\n".join(f"<response {i}>\n{r.strip()}\n</response {i}>" for i, r in enumerate(responses, 1))
    keys = ", ".join(f'"{i}"' for i in range(1, n + 1)) if n <= 3 else f'"1", "2", ..., "{n}"'
    values = {"PROBLEM": problem.strip(), "RESPONSES": blocks, "N": str(n), "KEYS": keys, "DEGENERATE": str(degenerate)}
    # one pass: text substituted in (a response quoting "{{N}}") is never scanned again
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def validate_reply(text: str, n: int) -> list[tuple[int, str]]:
    """``[(cluster_id, reasoning)] * n`` from a reply, or :class:`InvalidReply` saying what is wrong.

    The reply must be a JSON object with exactly the keys "1".."n"; each value an object with an
    integer ``cluster_id`` (a bare integer is accepted too) and an optional ``reasoning``.
    Raises nothing but :class:`InvalidReply`, whatever the reply holds.
    """
    data = parse_json_object(text)
    expected = [str(i) for i in range(1, n + 1)]
    missing = [k for k in expected if k not in data]
    extra = [k for k in data if k not in expected]
    if missing or extra:
        parts = [f"expected exactly {n} keys \"1\"..\"{n}\""]
        if missing:
            parts.append("missing " + ", ".join(f'"{k}"' for k in missing[:10]))
        if extra:
            parts.append("unexpected " + ", ".join(short_repr(k).replace("'", '"') for k in extra[:10])
                         + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))
        raise InvalidReply("; ".join(parts))
    out = []
    for k in expected:
        value = data[k]
        cid = value.get("cluster_id") if isinstance(value, dict) else value
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise InvalidReply(f'the cluster_id of "{k}" must be an integer, got {short_repr(cid)}')
        reasoning = value.get("reasoning", "") if isinstance(value, dict) else ""
        out.append((cid, excerpt(reasoning, 2000) if isinstance(reasoning, str) else short_repr(reasoning)))
    return out


def shorten(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and tail."""
    if limit <= 0 or len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


@CLUSTERERS.register("judge")
class JudgeClusterer(BaseClusterer):
    """LLM-judge clustering; see the module docstring.

    Args:
        prompt: ``code``, ``math`` or the path of a template file with ``{{PROBLEM}}``,
            ``{{RESPONSES}}``, ``{{N}}`` (and optionally ``{{KEYS}}``, ``{{DEGENERATE}}``).
        on_failure: ``wait`` (default: pause through an outage, up to ``max_wait_s``) |
            ``reward_only`` (the group step gives a failed group ``dr_grpo``'s advantage,
            rewards centred, and leaves it out of the diversity means) | ``zero_diversity``
            (every response degenerate: no gradient from the group under Poly-EPO) |
            ``fallback:NAME`` (e.g. ``fallback:python_ast``) | ``raise``.
        on_group_failure: with ``on_failure=wait``, what a group gets when the judge fails on
            it while answering others (invalid replies after the re-asks, a 4xx such as a
            prompt too long): ``reward_only`` (default), ``zero_diversity``, ``fallback:NAME``
            or ``raise``. Only valid with ``wait``.
        fallback_options: options of the fallback backend.
        force_fallback: accept a fallback that invents strategies on sampled text (``exact``).
        canonicalize: ``none`` | ``strip_comments`` | ``normalize_names`` (Python code blocks).
        max_response_chars: longer responses are cut in the middle before judging (0 = never).
        degenerate: id of degenerate responses (also the id the prompt tells the judge to use).
        client: an existing :class:`JudgeClient` to share (its options then come from it).
        **judge_options: fields of :class:`polyepo.judge.JudgeConfig` (model, base_url,
            max_concurrency, requests_per_minute, max_retries, max_wait_s, cache_path, ...).
    """

    name = "judge"
    OPTIONS = ("prompt", "on_failure", "on_group_failure", "fallback_options", "force_fallback", "canonicalize",
               "max_response_chars", "degenerate", "client")

    def __init__(self, *, prompt: str = "code", on_failure: str = "wait", on_group_failure: str | None = None,
                 fallback_options: dict | None = None, force_fallback: bool = False, canonicalize: str = "none",
                 max_response_chars: int = 12000, degenerate: int = 100, client: JudgeClient | None = None,
                 **judge_options: Any) -> None:
        super().__init__(degenerate=degenerate)
        unknown = sorted(set(judge_options) - set(JudgeConfig.fields()))
        if unknown:
            valid = [*self.OPTIONS, *JudgeConfig.fields()]
            hint = did_you_mean(unknown[0], valid)
            raise ValueError(f"unknown judge option(s) {', '.join(unknown)}{hint}; valid options: {', '.join(valid)}")
        if canonicalize not in CANONICAL_MODES:
            raise ValueError(f"canonicalize must be one of {', '.join(CANONICAL_MODES)}, got {canonicalize!r}")
        self.template = load_template(prompt)
        self.template_id = hashlib.sha256(self.template.encode()).hexdigest()[:16]
        self.policy = FailurePolicy.parse(on_failure, neutral_name=NEUTRAL)
        if on_group_failure is not None and self.policy.action != "wait":
            raise ValueError(f"on_group_failure applies only with on_failure='wait' (got on_failure={on_failure!r}, "
                             "which every failed group gets)")
        #: what a failed group gets: the policy, or under ``wait`` the second policy
        self.group_policy = self.policy if self.policy.action != "wait" else FailurePolicy.parse(
            on_group_failure or "reward_only", neutral_name=NEUTRAL, what="on_group_failure", allow_wait=False)
        self.fallback = self._make_fallback(self.group_policy, fallback_options, force_fallback)
        self.canonicalize, self.max_response_chars = canonicalize, int(max_response_chars)
        self.client = client or JudgeClient(JudgeConfig(**judge_options), namespace="cluster")

    def _make_fallback(self, policy: FailurePolicy, options: dict | None, force: bool) -> Any:
        if policy.action != "fallback":
            return None
        what = "on_group_failure" if self.policy.action == "wait" else "on_failure"
        if policy.fallback == "judge":
            raise ValueError(f"{what}='fallback:judge' would ask the failing judge again; pick an offline backend")
        if policy.fallback in UNSAFE_FALLBACKS:
            if not force:
                raise ValueError(f"{what}='fallback:{policy.fallback}' is refused: {UNSAFE_FALLBACKS[policy.fallback]}. "
                                 "Use fallback:python_ast (code) or fallback:answer (math), reward_only, or "
                                 "force_fallback=true to accept it anyway (e.g. for greedy, repeatable responses)")
            log.warning("fallback:%s forced: %s", policy.fallback, UNSAFE_FALLBACKS[policy.fallback])
        return make_clusterer(policy.fallback, degenerate=self.degenerate, **(options or {}))

    @property
    def wait_limit_s(self) -> float | None:
        """``max_wait_s`` under ``on_failure=wait`` (how long a judge outage may pause a call), else None."""
        return self.client.config.max_wait_s if self.policy.action == "wait" else None

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        return self.cluster_many([Group(prompt, list(responses), context)])[0]

    def cluster_many(self, groups: Sequence[GroupLike]) -> list[ClusterResult]:
        """All groups' requests concurrently (``max_concurrency``), then the policy per failure.

        With ``on_failure=wait`` this blocks through a judge outage (raising
        :class:`~polyepo.judge.JudgeUnavailableError` past ``max_wait_s``)."""
        gs = [as_group(g) for g in groups]
        plans = [self._plan(g) for g in gs]
        asks = [i for i, p in enumerate(plans) if p["unique"]]
        wait = self.policy.action == "wait"
        outcomes = dict(zip(asks, self.client.complete_many([plans[i]["request"] for i in asks], wait=wait)))
        results = [self._finish(g, p, outcomes.get(i)) for i, (g, p) in enumerate(zip(gs, plans))]
        failed = [i for i, r in enumerate(results) if r.failed]
        if failed and self.group_policy.action == "raise":
            first = results[failed[0]]
            what = "on_group_failure" if wait else "on_failure"
            raise JudgeFailedError(
                f"the strategy judge failed on {len(failed)} of {len(gs)} group(s) (first: group {failed[0]}: "
                f"{first.error}). {what}='raise' stops here; set {what}='reward_only' (the group keeps its "
                f"reward-only advantage), 'fallback:python_ast' (or another offline backend) or 'zero_diversity' "
                f"to continue through judge failures."
            )
        return results

    def _plan(self, g: Group) -> dict[str, Any]:
        texts = [canonicalize_response(r, self.canonicalize).strip() for r in g.responses]
        unique: dict[str, int] = {}
        for t in texts:
            if t:
                unique.setdefault(t, len(unique) + 1)
        plan: dict[str, Any] = {"index": [unique.get(t) for t in texts], "unique": list(unique)}
        if unique:
            shown = [shorten(t, self.max_response_chars) for t in unique]
            message = render_prompt(self.template, g.prompt, shown, self.degenerate)
            plan["request"] = JudgeRequest(
                messages=[{"role": "user", "content": message}],
                validate=partial(validate_reply, n=len(unique)),
                cache_extra={"backend": "judge", "template": self.template_id},
            )
        return plan

    def _finish(self, g: Group, plan: dict[str, Any], outcome: JudgeOutcome | None) -> ClusterResult:
        index = plan["index"]
        extra: dict[str, Any] = {"unique": len(plan["unique"])}
        if outcome is None:  # nothing to ask: every response empty
            return self.result([None] * len(index), extra=extra)
        meta = {"cache_hit": outcome.cache_hit, "retries": outcome.retries, "requests": outcome.requests,
                "reasks": outcome.reasks}
        if outcome.waited_s:
            extra["waited_s"] = round(outcome.waited_s, 3)
        if outcome.ok:
            judged = outcome.value
            keys = [None if j is None or judged[j - 1][0] == self.degenerate else judged[j - 1][0] for j in index]
            extra["reasoning"] = ["" if j is None else judged[j - 1][1] for j in index]
            return self.result(keys, extra=extra, **meta)
        extra["error_kind"] = outcome.error_kind
        policy = self.group_policy
        meta.update(failed=True, policy=policy.label, error=outcome.error)
        if policy.action == "fallback":
            assert self.fallback is not None
            fb = self.fallback.cluster(g.prompt, g.responses, **g.context)
            extra["fallback"] = {"backend": fb.backend, **fb.extra}
            log.warning("judge failed (%s); group clustered by %s instead", outcome.error_kind, fb.backend)
            return ClusterResult(ids=fb.ids, backend=self.name, degenerate=self.degenerate, extra=extra, **meta)
        if policy.label == "reward_only":
            log.warning("judge failed (%s); group gets the reward-only (dr_grpo) advantage", outcome.error_kind)
        elif policy.label == "zero_diversity":
            log.warning("judge failed (%s); group gets zero diversity (all responses degenerate)", outcome.error_kind)
        # every response degenerate: no set earns diversity; reward_only is recognised by its policy
        return ClusterResult(ids=[self.degenerate] * len(index), backend=self.name, degenerate=self.degenerate,
                             extra=extra, **meta)

    def stats(self) -> dict[str, int]:
        """The judge client's counters (calls, failures, retries, cache hits, errors by kind)."""
        return self.client.stats.snapshot()

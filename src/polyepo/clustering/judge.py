"""``judge``: strategy clusters from an LLM judge, one request per group, as in the papers.

The prompt (``prompts/math.md`` or ``prompts/code.md``, or a file of your own) asks for a
macro- and a micro-strategy per response, same cluster iff both match, a degenerate id, and
a strict JSON reply ``{"1": {"reasoning": ..., "cluster_id": int}, ..., "N": ...}``. The
request goes through :class:`polyepo.judge.JudgeClient` (retries, limits, cache, re-asks).

Before asking: code can be canonicalised (comments, docstrings and local names removed, so
the judge cannot split on them), exact duplicates are shown once, empty responses are
degenerate without asking, and over-long responses are cut in the middle. When the judge
fails, the explicit ``on_failure`` policy applies: ``raise`` (stop the run), ``zero_diversity``
(every response of the group degenerate, so no set of that group earns diversity), or
``fallback:NAME`` (an offline backend clusters the group). Never "all distinct".
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
from ..judge.replies import InvalidReply, parse_json_object
from .base import CLUSTERERS, BaseClusterer, ClusterResult, Group, GroupLike, as_group, make_clusterer
from .code import CANONICAL_MODES, canonicalize_response

log = logging.getLogger("polyepo.clustering")

PROMPT_DIR = Path(__file__).with_name("prompts")
BUILTIN_PROMPTS = ("code", "math")
PLACEHOLDERS = ("{{PROBLEM}}", "{{RESPONSES}}", "{{N}}")
_PLACEHOLDER = re.compile(r"\{\{(PROBLEM|RESPONSES|N|KEYS|DEGENERATE)\}\}")


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
            parts.append("unexpected " + ", ".join(f'"{k}"' for k in extra[:10]))
        raise InvalidReply("; ".join(parts))
    out = []
    for k in expected:
        value = data[k]
        cid = value.get("cluster_id") if isinstance(value, dict) else value
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise InvalidReply(f'the cluster_id of "{k}" must be an integer, got {cid!r}')
        reasoning = value.get("reasoning", "") if isinstance(value, dict) else ""
        out.append((cid, str(reasoning)))
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
        on_failure: ``raise`` | ``zero_diversity`` | ``fallback:NAME`` (e.g. ``fallback:python_ast``).
        fallback_options: options of the fallback backend.
        canonicalize: ``none`` | ``strip_comments`` | ``normalize_names`` (Python code blocks).
        max_response_chars: longer responses are cut in the middle before judging (0 = never).
        degenerate: id of degenerate responses (also the id the prompt tells the judge to use).
        client: an existing :class:`JudgeClient` to share (its options then come from it).
        **judge_options: fields of :class:`polyepo.judge.JudgeConfig` (model, base_url,
            max_concurrency, requests_per_minute, max_retries, cache_path, ...).
    """

    name = "judge"

    def __init__(self, *, prompt: str = "code", on_failure: str = "raise", fallback_options: dict | None = None,
                 canonicalize: str = "none", max_response_chars: int = 12000, degenerate: int = 100,
                 client: JudgeClient | None = None, **judge_options: Any) -> None:
        super().__init__(degenerate=degenerate)
        unknown = sorted(set(judge_options) - set(JudgeConfig.fields()))
        if unknown:
            valid = ["prompt", "on_failure", "fallback_options", "canonicalize", "max_response_chars",
                     "degenerate", "client", *JudgeConfig.fields()]
            raise ValueError(f"unknown judge option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
        if canonicalize not in CANONICAL_MODES:
            raise ValueError(f"canonicalize must be one of {', '.join(CANONICAL_MODES)}, got {canonicalize!r}")
        self.template = load_template(prompt)
        self.template_id = hashlib.sha256(self.template.encode()).hexdigest()[:16]
        self.policy = FailurePolicy.parse(on_failure, neutral_name="zero_diversity")
        self.fallback = None
        if self.policy.action == "fallback":
            if self.policy.fallback == "judge":
                raise ValueError("on_failure='fallback:judge' would ask the failing judge again; pick an offline backend")
            self.fallback = make_clusterer(self.policy.fallback, degenerate=degenerate, **(fallback_options or {}))
        self.canonicalize, self.max_response_chars = canonicalize, int(max_response_chars)
        self.client = client or JudgeClient(JudgeConfig(**judge_options), namespace="cluster")

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        return self.cluster_many([Group(prompt, list(responses), context)])[0]

    def cluster_many(self, groups: Sequence[GroupLike]) -> list[ClusterResult]:
        """All groups' requests concurrently (``max_concurrency``), then the policy per failure."""
        gs = [as_group(g) for g in groups]
        plans = [self._plan(g) for g in gs]
        asks = [i for i, p in enumerate(plans) if p["unique"]]
        outcomes = dict(zip(asks, self.client.complete_many([plans[i]["request"] for i in asks])))
        results = [self._finish(g, p, outcomes.get(i)) for i, (g, p) in enumerate(zip(gs, plans))]
        failed = [i for i, r in enumerate(results) if r.failed]
        if failed and self.policy.action == "raise":
            first = results[failed[0]]
            raise JudgeFailedError(
                f"the strategy judge failed on {len(failed)} of {len(gs)} group(s) (first: group {failed[0]}: "
                f"{first.error}). on_failure='raise' stops here; set on_failure='fallback:python_ast' (or "
                f"another offline backend) or 'zero_diversity' to continue through judge failures."
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
        if outcome.ok:
            judged = outcome.value
            keys = [None if j is None or judged[j - 1][0] == self.degenerate else judged[j - 1][0] for j in index]
            extra["reasoning"] = ["" if j is None else judged[j - 1][1] for j in index]
            return self.result(keys, extra=extra, **meta)
        extra["error_kind"] = outcome.error_kind
        meta.update(failed=True, policy=self.policy.label, error=outcome.error)
        if self.policy.action == "fallback":
            assert self.fallback is not None
            fb = self.fallback.cluster(g.prompt, g.responses, **g.context)
            extra["fallback"] = {"backend": fb.backend, **fb.extra}
            log.warning("judge failed (%s); group clustered by %s instead", outcome.error_kind, fb.backend)
            return ClusterResult(ids=fb.ids, backend=self.name, degenerate=self.degenerate, extra=extra, **meta)
        if self.policy.action == "neutral":
            log.warning("judge failed (%s); group gets zero diversity (all responses degenerate)", outcome.error_kind)
        return ClusterResult(ids=[self.degenerate] * len(index), backend=self.name, degenerate=self.degenerate,
                             extra=extra, **meta)

    def stats(self) -> dict[str, int]:
        """The judge client's counters (calls, failures, retries, cache hits, errors by kind)."""
        return self.client.stats.snapshot()

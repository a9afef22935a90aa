"""Agreement of a clusterer with labelled groups: adjusted Rand index and pairwise scores.

A labelled group is a mapping with ``prompt``, ``responses`` and ``labels`` (true strategy
ids, the degenerate id for degenerate responses); other keys are passed to the backend as
context. Agreement is measured per group (cluster ids mean nothing across groups):

* adjusted Rand index (Hubert and Arabie 1985), averaged over groups: 1 = same partition,
  ~0 = chance agreement, negative = worse than chance;
* pairwise precision / recall / F1, pooled over the pairs of all groups: of the pairs the
  backend puts together, the fraction truly together (precision), and of the pairs truly
  together, the fraction it puts together (recall); splitting on names or comments lowers
  recall, merging different algorithms lowers precision;
* degenerate precision / recall of the degenerate id, and the mean absolute error of the
  number of distinct strategies per group.

The shipped set is ``humaneval_strategies`` (``load_labelled("humaneval_strategies")``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from importlib import resources
from math import comb
from pathlib import Path
from typing import Any

from .base import DEGENERATE, Clusterer, Group

BUILTIN_SETS = ("humaneval_strategies",)


def adjusted_rand_index(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """ARI of two labelings of the same items, from the contingency table.

    ``(sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E)`` with
    ``E = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2)``. Two identical partitions give 1.0,
    including the degenerate cases (fewer than 2 items, all singletons, one cluster each).
    """
    if len(truth) != len(pred):
        raise ValueError(f"truth has {len(truth)} labels but pred has {len(pred)}")
    n = len(truth)
    if n < 2:
        return 1.0
    together = sum(comb(c, 2) for c in Counter(zip(truth, pred)).values())
    a = sum(comb(c, 2) for c in Counter(truth).values())
    b = sum(comb(c, 2) for c in Counter(pred).values())
    expected = a * b / comb(n, 2)
    top = (a + b) / 2
    if top == expected:  # both partitions all singletons, or both one cluster: identical
        return 1.0
    return (together - expected) / (top - expected)


def pair_counts(truth: Sequence[Hashable], pred: Sequence[Hashable]) -> dict[str, int]:
    """Counts over unordered pairs: ``tp`` (together in both), ``fp`` (only in pred), ``fn`` (only in truth)."""
    if len(truth) != len(pred):
        raise ValueError(f"truth has {len(truth)} labels but pred has {len(pred)}")
    together = sum(comb(c, 2) for c in Counter(zip(truth, pred)).values())
    in_pred = sum(comb(c, 2) for c in Counter(pred).values())
    in_truth = sum(comb(c, 2) for c in Counter(truth).values())
    return {"tp": together, "fp": in_pred - together, "fn": in_truth - together}


def _ratio(num: float, den: float) -> float:
    return num / den if den else 1.0


def load_labelled(source: str | Path) -> list[dict[str, Any]]:
    """Labelled groups from a built-in set name, or a ``.jsonl``, ``.json`` or ``.yaml`` file."""
    if str(source) in BUILTIN_SETS:
        text = resources.files("polyepo").joinpath(f"data/clustering/{source}.yaml").read_text(encoding="utf-8")
        suffix = ".yaml"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"labelled set {source!r} is neither a file nor one of: {', '.join(BUILTIN_SETS)}")
        text, suffix = path.read_text(encoding="utf-8"), path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        groups = yaml.safe_load(text)
    elif text.lstrip().startswith("["):
        groups = json.loads(text)
    else:
        groups = [json.loads(line) for line in text.splitlines() if line.strip()]
    for i, g in enumerate(groups or []):
        if not isinstance(g, Mapping) or "responses" not in g or "labels" not in g:
            raise ValueError(f"{source}: group {i} needs 'responses' and 'labels'")
        if len(g["labels"]) != len(g["responses"]):
            raise ValueError(f"{source}: group {i} has {len(g['labels'])} labels for {len(g['responses'])} responses")
    return list(groups or [])


def evaluate_clusterer(clusterer: Clusterer, groups: Sequence[Mapping[str, Any]], *,
                       degenerate: int = DEGENERATE) -> dict[str, Any]:
    """Cluster every labelled group with ``clusterer`` and score the agreement.

    Returns ``{"summary": {...}, "groups": [...]}``: per group its ids, labels, ARI and pair
    counts; the summary holds ``ari`` (mean over groups), ``pair_precision``,
    ``pair_recall``, ``pair_f1`` (pooled), ``degenerate_precision``, ``degenerate_recall``,
    ``distinct_mae`` and ``failed`` (groups the backend failed on).
    """
    context_skip = ("prompt", "responses", "labels", "strategies")
    requests = [Group(str(g.get("prompt", "")), [str(r or "") for r in g["responses"]],
                      {k: v for k, v in g.items() if k not in context_skip}) for g in groups]
    results = clusterer.cluster_many(requests)
    rows, total, deg = [], Counter(), Counter()
    for g, res in zip(groups, results):
        labels, ids = [int(x) for x in g["labels"]], list(res.ids)
        counts = pair_counts(labels, ids)
        total.update(counts)
        deg.update(tp=sum(t == degenerate and p == res.degenerate for t, p in zip(labels, ids)),
                   pred=sum(p == res.degenerate for p in ids), true=sum(t == degenerate for t in labels))
        true_k = len(set(labels) - {degenerate})
        pred_k = len(set(ids) - {res.degenerate})
        rows.append({"task_id": g.get("task_id"), "labels": labels, "ids": ids,
                     "ari": adjusted_rand_index(labels, ids), **counts,
                     "distinct_true": true_k, "distinct_pred": pred_k, "failed": res.failed})
    precision = _ratio(total["tp"], total["tp"] + total["fp"])
    recall = _ratio(total["tp"], total["tp"] + total["fn"])
    summary = {
        "groups": len(rows),
        "ari": sum(r["ari"] for r in rows) / len(rows) if rows else float("nan"),
        "pair_precision": precision,
        "pair_recall": recall,
        "pair_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "degenerate_precision": _ratio(deg["tp"], deg["pred"]),
        "degenerate_recall": _ratio(deg["tp"], deg["true"]),
        "distinct_mae": sum(abs(r["distinct_true"] - r["distinct_pred"]) for r in rows) / len(rows) if rows else 0.0,
        "failed": sum(r["failed"] for r in rows),
    }
    return {"summary": summary, "groups": rows}

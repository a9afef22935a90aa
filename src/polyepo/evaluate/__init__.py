"""Evaluation: sample n answers per problem, score and cluster them, and measure test-time scaling.

- :func:`evaluate` draws and stores the samples (resumable), :func:`rescore` recomputes rewards
  and clusters of a stored file without sampling again (``polyepo eval`` / ``polyepo rescore``);
- :func:`read_results` reads a results file back;
- :func:`summarize` turns one into metrics with standard errors: pass@k, distinct correct
  strategies, majority@k, best-of-k (``polyepo metrics``); :func:`pass_rate_filter` keeps the
  problems a base model solves between a and b times out of m.

Importing this package is light (no torch); sampling loads transformers or vLLM on first use.
See docs/evaluation.md.
"""

from __future__ import annotations

from .results import Results, read_results
from .runner import evaluate
from .sampling import SamplingSettings
from .scoring import rescore
from .summary import Estimate, Summary, pass_rate_filter, summarize

__all__ = ["Estimate", "Results", "SamplingSettings", "Summary", "evaluate", "pass_rate_filter",
           "read_results", "rescore", "summarize"]

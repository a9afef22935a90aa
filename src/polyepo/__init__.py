"""polyepo: set reinforcement learning (Poly-EPO) for language models.

Importing ``polyepo`` is light: it pulls in neither torch, transformers nor openai. The
sub-packages (``polyepo.advantages``, ``polyepo.metrics`` ...) load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

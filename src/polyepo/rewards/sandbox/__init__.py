"""Isolated execution of untrusted Python programs (host pool + sandbox server).

Public entry points live in :mod:`polyepo.rewards.code`; this package holds the machinery:
``pool`` (host side), ``server``/``supervise``/``init``/``runner`` (inside the sandbox),
``rootfs`` and ``_linux`` (the OS mechanisms), ``protocol``/``verdict``/``jobs`` (shared).
See docs/rewards.md for the threat model and what is and is not covered.
"""

from .jobs import Job, Limits, SandboxResult, StdioCase
from .pool import SandboxBroken, SandboxConfig, SandboxPool, shared_pool
from .protocol import STATUSES, outputs_match

__all__ = ["Job", "Limits", "STATUSES", "SandboxBroken", "SandboxConfig", "SandboxPool", "SandboxResult",
           "StdioCase", "outputs_match", "shared_pool"]

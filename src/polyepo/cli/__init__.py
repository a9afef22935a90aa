"""The ``polyepo`` command line. Each command lives in its own module of this package.

Only the console script imports this package, so ``import polyepo`` stays light.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="polyepo",
    help="Set reinforcement learning (Poly-EPO) for language models: train models whose "
    "sampled answers are correct and diverse in strategy, and measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Importing a command module registers its commands on ``app``.
from . import advantage, cluster, evaluate, judge, rubric, score, train  # noqa: E402,F401


def main() -> None:
    """Entry point of the ``polyepo`` console script."""
    app()

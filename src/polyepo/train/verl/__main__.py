"""``python -m polyepo.train.verl [hydra overrides]``: verl's ``main_ppo`` on polyepo's config.

Equivalent to ``python -m verl.trainer.main_ppo --config-dir <CONFIG_DIR> --config-name
polyepo_trainer [overrides]``: verl's own entry point (config validation, Ray start-up,
its ``TaskRunnerV1``), with polyepo's config, whose Ray setup hook registers the estimators
and the ``polyepo_sync`` trainer in every Ray worker.
"""

from __future__ import annotations

import sys

from . import CONFIG_DIR, CONFIG_NAME


def hydra_argv(overrides: list[str]) -> list[str]:
    """The argv verl's Hydra main needs to load polyepo's config, then ``overrides``."""
    for arg in overrides:
        if arg.startswith(("--config-name", "--config-dir", "-cn", "-cd")):
            raise SystemExit(f"{arg!r}: the config is polyepo_trainer; use verl's main_ppo for another one")
    return ["--config-dir", CONFIG_DIR, "--config-name", CONFIG_NAME, *overrides]


def main(argv: list[str] | None = None) -> None:
    """Run verl's ``main_ppo`` with polyepo's config and ``argv`` as Hydra overrides."""
    from . import register

    register()  # in this process too, so a local (non-Ray) failure names the cause early
    from verl.trainer.main_ppo import main as verl_main

    args = sys.argv[1:] if argv is None else list(argv)
    sys.argv = [sys.argv[0], *hydra_argv(args)]
    verl_main()


if __name__ == "__main__":
    main()

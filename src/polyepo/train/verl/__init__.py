"""Poly-EPO on verl 0.9 (Ray controller, FSDP/Megatron workers, vLLM/SGLang rollout).

Importing this package imports neither verl nor torch; :func:`register` does. The pieces:

- :mod:`.estimators`: every polyepo estimator in verl's advantage-estimator registry
  (``poly_epo``, ``dr_grpo``, ``grpo_div``, ``pass_at_k``, ``set_rl``, ``polyepo_grpo``,
  ``polyepo_rloo``), adapters around :func:`polyepo.advantages.compute_advantages`.
- :mod:`.reward`: verl's ``custom_reward_function`` for polyepo rewards (per rollout).
- :mod:`.groups`: cluster ids computed once per group, on all N responses together.
- :mod:`.trainer`: verl's sync trainer + that grouping step, as ``trainer_mode=polyepo_sync``.
- :mod:`.settings`: the ``algorithm.polyepo`` config section.
- ``config/polyepo_trainer.yaml``: verl's ``ppo_trainer`` config with all of the above set;
  ``python -m polyepo.train.verl [hydra overrides]`` runs verl's own ``main_ppo`` on it.

See docs/verl.md.
"""

from __future__ import annotations

from pathlib import Path

#: Hydra config directory holding ``polyepo_trainer.yaml`` (pass it as ``--config-dir``).
CONFIG_DIR = str(Path(__file__).resolve().parent / "config")
CONFIG_NAME = "polyepo_trainer"
#: verl versions this integration is tested with (pyproject's ``verl`` extra).
TESTED_VERL = ">=0.9.1,<0.10"


def register() -> dict[str, str]:
    """Register polyepo's estimators and the ``polyepo_sync`` trainer with verl.

    Idempotent. verl looks both up by name in the process that trains (a Ray actor), so
    ``polyepo_trainer.yaml`` makes Ray run this in every worker process at start-up
    (``ray_kwargs.ray_init.runtime_env.worker_process_setup_hook``). Returns polyepo
    estimator name -> verl name.
    """
    from .estimators import register_estimators
    from .trainer import TRAINER_MODE  # noqa: F401  (registers the trainer on import)

    return register_estimators()


__all__ = ["CONFIG_DIR", "CONFIG_NAME", "TESTED_VERL", "register"]

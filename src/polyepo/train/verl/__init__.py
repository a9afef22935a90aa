"""Poly-EPO on verl 0.9 (Ray controller, FSDP/Megatron workers, vLLM/SGLang rollout).

Importing this package imports neither verl nor torch; :func:`register` does. The pieces:

- :mod:`.estimators`: every polyepo estimator in verl's advantage-estimator registry
  (``poly_epo``, ``dr_grpo``, ``grpo_div``, ``pass_at_k``, ``set_rl``, ``pkpo``, ``darling``,
  ``uniqueness``, ``outcome_explore``, ``reinforce_pp_baseline``, and ``polyepo_grpo``,
  ``polyepo_rloo`` beside verl's own ``grpo`` and ``rloo``), adapters around
  :func:`polyepo.groups.group_step`.
- :mod:`.reward`: verl's ``custom_reward_function`` for polyepo rewards (per rollout).
- :mod:`.groups`: verl's batch -> the group step's inputs (cluster results computed once per
  group on all N responses together, unscorable rows, agent-loop sessions).
- :mod:`.trainer`: verl's sync trainer + that step, as ``trainer_mode=polyepo_sync``; checks
  the whole config at start-up; keeps the historical ``outcome_explore``'s answer counts and
  saves them in verl's checkpoints.
- :mod:`.settings`: the ``algorithm.polyepo`` config section.
- ``config/polyepo_trainer.yaml``: verl's ``ppo_trainer`` config with all of the above set;
  ``python -m polyepo.train.verl [hydra overrides]`` runs verl's own ``main_ppo`` on it.

See docs/verl.md.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

#: Hydra config directory holding ``polyepo_trainer.yaml`` (pass it as ``--config-dir``).
CONFIG_DIR = str(Path(__file__).resolve().parent / "config")
CONFIG_NAME = "polyepo_trainer"
#: verl versions this integration is tested with (pyproject's ``verl`` extra).
TESTED_VERL = ">=0.9.1,<0.10"


#: Set to 1 to run on a verl outside :data:`TESTED_VERL` (a warning instead of an error).
ANY_VERSION_ENV = "POLYEPO_VERL_ANY_VERSION"


def check_verl_version(version: str | None = None) -> str:
    """Raise ``RuntimeError`` unless verl's version (or ``version``) is in :data:`TESTED_VERL`.

    polyepo relies on verl internals that change between minor versions (docs/verl.md lists
    them); ``POLYEPO_VERL_ANY_VERSION=1`` turns the error into a warning. Returns the version.
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if version is None:
        import verl

        version = str(getattr(verl, "__version__", "unknown"))
    try:
        ok = Version(version) in SpecifierSet(TESTED_VERL)
    except InvalidVersion:
        ok = False
    if not ok:
        msg = (f"polyepo.train.verl is tested with verl {TESTED_VERL} and relies on its internals; this is verl "
               f"{version}. Install a tested verl (pip install 'polyepo[verl]'), or set {ANY_VERSION_ENV}=1 to "
               "try this one anyway (tests/test_verl.py checks the internals polyepo uses)")
        if os.environ.get(ANY_VERSION_ENV) != "1":
            raise RuntimeError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return version


def register() -> dict[str, str]:
    """Check verl's version, then register polyepo's estimators and the ``polyepo_sync`` trainer.

    Idempotent. verl looks both up by name in the process that trains (a Ray actor), so
    ``polyepo_trainer.yaml`` makes Ray run this in every worker process at start-up
    (``ray_kwargs.ray_init.runtime_env.worker_process_setup_hook``). Returns polyepo
    estimator name -> verl name.
    """
    check_verl_version()
    from .estimators import register_estimators
    from .trainer import TRAINER_MODE  # noqa: F401  (registers the trainer on import)

    return register_estimators()


__all__ = ["ANY_VERSION_ENV", "CONFIG_DIR", "CONFIG_NAME", "TESTED_VERL", "check_verl_version", "register"]

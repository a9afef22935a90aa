"""The train / compare workflow: run configs, one training run, several runs + evaluation + report.

- :mod:`.config`: :class:`RunConfig` (YAML + ``key=value`` overrides), validated early;
- :mod:`.run`: ``prepare`` / ``dry_run`` / ``train`` one run on the TRL engine;
- :mod:`.compare`, :mod:`.compare_eval`: estimators x seeds, then evaluation and a report.

Nothing heavy is imported here.
"""

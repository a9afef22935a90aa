"""Training: TRL integration (PolyEPOTrainer), bundled models, warm starts, run configs.

Nothing heavy is imported here; import ``polyepo.train.trl`` for the trainer.
"""

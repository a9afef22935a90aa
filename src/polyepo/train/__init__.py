"""Training engines: TRL (:mod:`.trl`, ``PolyEPOTrainer``) and verl (:mod:`.verl`).

Nothing heavy is imported here; import ``polyepo.train.trl`` for the trainer.
"""

"""Models by name, all offline: the bundled models and the toy task's warm-started base model.

- :mod:`.bundled`: the :data:`MODELS` registry, ``resolve_model`` / ``load_model_and_tokenizer``,
  run directories and checkpoints, the builders of the bundled models;
- :mod:`.warmstart`: the toy task's base model, a deterministic SFT with TRL's SFTTrainer.

Importing this package is light (no torch or transformers until a model is built or loaded).
"""

from __future__ import annotations

from .bundled import (
    MODELS,
    cache_dir,
    is_model_dir,
    latest_checkpoint,
    load_model_and_tokenizer,
    resolve_model,
)
from .warmstart import tiny_llama, toy_tokenizer

__all__ = ["MODELS", "cache_dir", "is_model_dir", "latest_checkpoint", "load_model_and_tokenizer",
           "resolve_model", "tiny_llama", "toy_tokenizer"]

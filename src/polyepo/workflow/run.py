"""Build a training run from a :class:`RunConfig` and run it with :class:`PolyEPOTrainer`.

``prepare`` checks everything that can be checked without loading the model (task, split,
reward, clusterer, estimator and trainer settings); ``dry_run`` then also loads the model and
pushes one group through generation, reward, clustering and the advantage; ``train`` trains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clustering import make_clusterer
from ..rewards import make_reward
from ..tasks import load_task
from .config import ConfigError, RunConfig, dump_run_config


@dataclass
class Prepared:
    """Everything a run needs except the model weights."""

    cfg: RunConfig
    task: Any
    rows: list[dict[str, Any]]
    reward_name: str
    reward_fn: Any
    clusterer_name: str | None
    clusterer: Any
    output_dir: Path
    trainer_kwargs: dict[str, Any]


def _component(name: str | None, options: dict[str, Any], default: Any) -> tuple[str | None, dict[str, Any]]:
    """The chosen plug-in and its options: the task's default (options merged) when unset, none for 'none'."""
    if name is None:
        if default is None:
            return None, options
        return default.name, {**default.options, **options}
    if name == "none":
        return None, {}
    return name, options


def trainer_defaults(output_dir: Path) -> dict[str, Any]:
    """The trainer values `polyepo train` sets unless the config sets them (TRL's own defaults differ)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": str(output_dir),
        "use_cpu": not cuda,
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "report_to": ["tensorboard"] if importlib.util.find_spec("tensorboard") else [],
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 100,
        "save_total_limit": 3,
        "disable_tqdm": True,  # polyepo's rich progress bar replaces it
    }


def _build(key: str, factory, name: str, options: dict[str, Any]):
    """``factory(name, **options)`` with errors turned into ConfigErrors naming the config key."""
    try:
        return factory(name, **options)
    except TypeError as e:  # an option the factory does not take
        raise ConfigError(f"{key}_options for {key} {name!r}: {e}") from None
    except ValueError as e:  # unknown names (listing the valid ones) and invalid option values
        raise ConfigError(f"{key}: {e}") from None


def prepare(cfg: RunConfig) -> Prepared:
    """Check the run's task, data, reward, clusterer and trainer settings; load no model."""
    task = _build("task", load_task, cfg.task, cfg.task_options)
    if cfg.train_split not in task.splits:
        raise ConfigError(f"train_split {cfg.train_split!r} is not a split of task {cfg.task!r}; "
                          f"valid splits: {', '.join(task.splits)}")
    try:
        rows = task.rows(cfg.train_split, cfg.train_limit)
    except (ValueError, ImportError, OSError) as e:  # missing files, bad lines, missing packages
        raise ConfigError(f"task {cfg.task!r}: {e}") from None
    if not rows:
        raise ConfigError(f"task {cfg.task!r} split {cfg.train_split!r} has no rows")
    reward_name, reward_opts = _component(cfg.reward, cfg.reward_options, task.reward)
    if reward_name is None:
        raise ConfigError("reward 'none' is not allowed: training needs a reward")
    reward_fn = _build("reward", make_reward, reward_name, reward_opts)
    clusterer_name, cluster_opts = _component(cfg.clusterer, cfg.clusterer_options, task.clusterer)
    clusterer = None
    if clusterer_name is not None:
        clusterer = _build("clusterer", make_clusterer, clusterer_name, cluster_opts)
    output_dir = cfg.resolved_output_dir()
    trainer_kwargs = {**trainer_defaults(output_dir), **cfg.trainer,
                      "clusterer": clusterer_name, "clusterer_options": cluster_opts}
    if getattr(reward_fn, "wait_limit_s", None) is not None:  # the reward's judge waits too (on_failure=wait)
        from ..train.trl.clusters import resolve_ddp_timeout, wait_limits

        limits = wait_limits(clusterer_name, cluster_opts, [reward_fn])
        try:
            trainer_kwargs["ddp_timeout"] = resolve_ddp_timeout(trainer_kwargs.get("ddp_timeout"), limits)
        except ValueError as e:
            raise ConfigError(f"trainer: {e}") from None
    build_trainer_args(trainer_kwargs)  # validates every trainer value now
    return Prepared(cfg, task, rows, reward_name, reward_fn, clusterer_name, clusterer, output_dir, trainer_kwargs)


def build_trainer_args(kwargs: dict[str, Any]):
    from ..train.trl import PolyEPOConfig

    try:
        return PolyEPOConfig(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"trainer: {e}") from None


def to_dataset(rows: list[dict[str, Any]], tokenizer: Any, prompt_format: str = "auto", system_prompt: str | None = None):
    """A datasets.Dataset of the rows; prompts become chat messages when the model has a chat template."""
    from datasets import Dataset

    chat = prompt_format == "chat" or (prompt_format == "auto" and getattr(tokenizer, "chat_template", None))
    out = []
    for row in rows:
        row = dict(row)
        if chat and isinstance(row["prompt"], str):
            messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
            row["prompt"] = [*messages, {"role": "user", "content": row["prompt"]}]
        out.append(row)
    return Dataset.from_list(out)


def build_trainer(prep: Prepared, model_name: str | None = None):
    """The PolyEPOTrainer for a prepared run (loads the model)."""
    from ..models import load_model_and_tokenizer
    from ..progress import trainer_callback
    from ..train.trl import PolyEPOTrainer

    model, tokenizer = load_model_and_tokenizer(model_name or prep.cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = build_trainer_args(prep.trainer_kwargs)
    trainer = PolyEPOTrainer(model=model, reward_funcs=[prep.reward_fn], args=args,
                             train_dataset=to_dataset(prep.rows, tokenizer), processing_class=tokenizer,
                             clusterer=prep.clusterer)
    if args.disable_tqdm:  # replace transformers' dict printer by polyepo's progress display
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(trainer_callback(trainer))
    return trainer


@contextlib.contextmanager
def tiny_model_threads(model: Any):
    """Train a model under 20 M parameters on the CPU with one thread, as evaluation samples it:
    for a model this small the second thread only waits (0.2-0.3 s per toy step with one thread,
    1.5-3.3 s with two, on a busy 2-core machine)."""
    from ..evaluate.sampling import is_tiny, torch_threads

    on_cpu = next(model.parameters()).device.type == "cpu"
    with torch_threads(1 if on_cpu and is_tiny(model) else None):
        yield


def train(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Train one run; returns its output directory (with final/, log.jsonl and run.yaml)."""
    from ..models import latest_checkpoint

    prep = prepare(cfg)
    out = prep.output_dir
    ckpt = latest_checkpoint(out) if out.exists() else None
    if out.exists() and any(out.iterdir()) and not (resume or overwrite):
        raise ConfigError(f"output_dir {out} is not empty: pass --resume to continue from "
                          f"{ckpt.name if ckpt else 'its last checkpoint'} or --overwrite to start afresh")
    if overwrite and out.exists():
        shutil.rmtree(out)
    if resume and ckpt is None:
        raise ConfigError(f"--resume: no checkpoint-N directory in {out}")
    out.mkdir(parents=True, exist_ok=True)
    dump_run_config(dataclasses.replace(cfg, output_dir=str(out)), out / "run.yaml")
    trainer = build_trainer(prep)
    try:
        with tiny_model_threads(trainer.model):
            trainer.train(resume_from_checkpoint=str(ckpt) if resume else None)
    finally:  # Ctrl-C or a crash skips on_train_end: stop the display (the terminal's cursor comes back)
        from ..progress import close_displays

        close_displays(trainer.callback_handler.callbacks)
    trainer.save_model(str(out / "final"))
    trainer.processing_class.save_pretrained(str(out / "final"))
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    return out


def dry_run(cfg: RunConfig) -> dict[str, Any]:
    """Validate everything and push one group through generation, reward, clustering and the
    group step (the one TRL and verl run), as in training: the same unscorable and failure
    policies, the same step metrics."""
    import torch
    from transformers import Trainer

    from ..advantages import AnswerHistory, needs_history
    from ..clustering.base import Group, prompt_text
    from ..groups import cluster_groups, group_step
    from ..models import load_model_and_tokenizer

    prep = prepare(cfg)
    args = build_trainer_args(prep.trainer_kwargs)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    try:  # the optimiser's own checks of its settings (betas, eps, weight decay ...)
        opt_cls, opt_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        opt_cls([p for p in model.parameters() if p.requires_grad], **opt_kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"trainer: the optimizer {getattr(args.optim, 'value', args.optim)!r} refuses its settings: {e}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    row = to_dataset(prep.rows[:1], tokenizer)[0]
    prompt = row["prompt"]
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) if isinstance(prompt, list) else prompt
    enc = tokenizer([text] * args.num_generations, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        gen = model.generate(**enc, do_sample=True, temperature=args.temperature, top_k=0, top_p=1.0,
                             max_new_tokens=args.max_completion_length or 256, pad_token_id=tokenizer.pad_token_id)
    completions = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    context = {k: row[k] for k in row if k != "prompt"}
    rewards = prep.reward_fn(prompts=[prompt] * len(completions), completions=completions,
                             **{k: [v] * len(completions) for k, v in context.items()})
    results = None
    if prep.clusterer is not None:
        results, _ = cluster_groups(prep.clusterer, [Group(prompt_text(prompt), completions, context)])
    options, keys, paused = args.estimator_kwargs(), None, contextlib.nullcontext()
    if needs_history(args.estimator, options):  # the historical outcome_explore: a fresh history, nothing recorded
        from ..clustering.base import prompt_key

        history = AnswerHistory()
        options, keys, paused = {**options, "history": history}, [prompt_key(row.get("problem_id"), prompt)] * len(completions), history.paused()
    with paused:
        step = group_step(rewards, [0] * len(completions), results, estimator=args.estimator,
                          estimator_options=options, options=args.group_options(), prompt_keys=keys)
    return {"output_dir": str(prep.output_dir), "rows": len(prep.rows), "task": cfg.task, "model": cfg.model,
            "parameters": sum(p.numel() for p in model.parameters()), "reward": prep.reward_name,
            "clusterer": prep.clusterer_name, "estimator": args.estimator, "prompt": str(text),
            "completions": completions, "rewards": rewards, "clusters": None if results is None else results[0].ids,
            "advantages": step.advantages.tolist(), "metrics": step.metrics}

"""Drawing samples: transformers ``generate`` (CPU or GPU) and vLLM (GPU, when installed).

Every call draws ``num`` samples of ONE prompt from a seed derived from (run seed, problem id,
first sample index), so a resumed or extended evaluation draws exactly the samples an
uninterrupted one would (same machine, same library versions: kernels differ across devices).
Sampling is plain: temperature, top-p, top-k only; the model's own generation defaults
(repetition penalty, min-p, ...) are switched off so that the settings recorded in the results
file are the whole story.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..settings import help_field, unknown_keys_message

ENGINES = ("auto", "transformers", "vllm")


@dataclass(frozen=True)
class SamplingSettings:
    """How samples are drawn, each setting defined once: :func:`polyepo.evaluate.evaluate` takes
    these names as keywords, ``polyepo eval`` as options (help from here), ``polyepo compare``
    as ``eval`` keys. Recorded in the results file (engine and completion length resolved);
    appending needs equal settings."""

    n: int = help_field(256, "Samples per problem (seed 002: 256).")
    temperature: float = help_field(1.0, "Sampling temperature; 0 = greedy (then all n samples are the same).")
    top_p: float = help_field(1.0, "Nucleus sampling mass; 1.0 = off (every token kept).")
    top_k: int = help_field(0, "Keep only the k most likely tokens; 0 = off.")
    max_new_tokens: int | None = help_field(
        None, "Longest completion; longer ones are cut and counted as not finished (default: the task's, else 256).")
    seed: int = help_field(0, "Run seed; every (problem, chunk) derives its own seed from it.")
    batch_size: int = help_field(256, "Samples per generate call (a chunk; part of the settings since it fixes the chunks).")
    engine: str = help_field("auto", "auto (vllm when installed and a GPU is present), transformers or vllm.")

    def __post_init__(self) -> None:
        checks = [
            (self.n >= 1, f"n must be >= 1, got {self.n}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}"),
            (self.max_new_tokens is None or self.max_new_tokens >= 1,
             f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @classmethod
    def from_options(cls, **options: Any) -> SamplingSettings:
        """Settings from keyword options; an unknown name is an error listing the valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(unknown_keys_message(unknown, valid, what="sampling setting", where="evaluate"))
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def chunks(self) -> list[tuple[int, int]]:
        """(start, size) of the generate calls of one problem: n split into batch_size pieces."""
        return [(s, min(self.batch_size, self.n - s)) for s in range(0, self.n, self.batch_size)]


def chunk_seed(seed: int, problem_id: str, start: int) -> int:
    """A 63-bit seed for the chunk of ``problem_id`` starting at sample ``start``."""
    digest = hashlib.sha256(f"{seed}/{problem_id}/{start}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def resolve_engine(engine: str) -> tuple[str, str | None]:
    """``(engine, note)``: ``auto`` becomes vllm when vllm imports and CUDA is present."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "transformers":
        return engine, None
    import importlib.util

    have_vllm = importlib.util.find_spec("vllm") is not None
    import torch

    have_cuda = torch.cuda.is_available()
    if have_vllm and have_cuda:
        return "vllm", None
    why = "vllm is not installed" if not have_vllm else "there is no CUDA GPU"
    if engine == "vllm":
        raise ValueError(f"engine 'vllm' requested but {why}; use --engine transformers")
    # auto: transformers is the expected engine without vllm; say so only when vllm is there but unusable
    return "transformers", ("sampling with transformers: vllm is installed but there is no CUDA GPU" if have_vllm else None)


def render_prompt(tokenizer: Any, prompt: Any) -> tuple[str, bool]:
    """``(text, is_chat)``: chat prompts (a list of messages) go through the chat template with
    the generation prompt, as TRL's GRPOTrainer does; plain prompts are used as they are."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False), True
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be a string or a list of chat messages, got {type(prompt).__name__}")
    return prompt, False


@dataclass
class Samples:
    """One chunk: the completion texts, generated token counts, and whether each ended with eos."""

    completions: list[str]
    num_tokens: list[int]
    finished: list[bool]


#: Below this many parameters a CPU model samples with one thread: for tiny models the work per
#: step is too small to split, and extra threads only wait on each other (10x slower on a busy
#: 2-core machine, measured with the toy model).
SINGLE_THREAD_BELOW = 20_000_000


def is_tiny(model: Any) -> bool:
    """Fewer parameters than :data:`SINGLE_THREAD_BELOW`: one CPU thread is fastest."""
    return sum(p.numel() for p in model.parameters()) < SINGLE_THREAD_BELOW


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's CPU threads set to ``threads`` inside (None: unchanged), restored after."""
    import torch

    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(before)


class TransformersSampler:
    """Samples with ``model.generate`` on CUDA if available, else CPU (float32).

    ``threads``: CPU threads while generating (default: 1 for models under
    :data:`SINGLE_THREAD_BELOW` parameters, else torch's default).
    """

    def __init__(self, model_path: str | Path, threads: int | None = None) -> None:
        import torch
        from transformers import GenerationConfig

        from ..models import load_model_and_tokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar inside ours
        try:
            self.model, self.tokenizer = load_model_and_tokenizer(model_path)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.to(self.device).eval()
        if threads is None and is_tiny(self.model):
            threads = 1
        self.threads = threads
        tok = self.tokenizer
        self.eos_ids = self._eos_ids()
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.eos_ids[0]
        # a clean generation config: the model's own sampling defaults must not leak in
        self.model.generation_config = GenerationConfig(
            pad_token_id=pad, eos_token_id=self.eos_ids, bos_token_id=tok.bos_token_id)

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        if not ids:
            raise ValueError("the model has no eos token: completions could never finish")
        return ids

    def sample(self, prompt: Any, num: int, seed: int, settings: SamplingSettings) -> Samples:
        """``num`` samples of one prompt, drawn from ``seed`` (global torch RNG state is kept)."""
        import torch

        text, is_chat = render_prompt(self.tokenizer, prompt)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=not is_chat)
        ids = enc["input_ids"].to(self.device).repeat(num, 1)
        mask = enc["attention_mask"].to(self.device).repeat(num, 1)
        greedy = settings.temperature == 0
        kwargs = dict(do_sample=False) if greedy else dict(
            do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
        with torch_threads(self.threads), torch.no_grad(), \
                torch.random.fork_rng(devices=[self.device] if self.device == "cuda" else []):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=ids, attention_mask=mask,
                                      max_new_tokens=settings.max_new_tokens, **kwargs)
        new = out[:, ids.shape[1]:].tolist()
        eos = set(self.eos_ids)
        num_tokens, finished = [], []
        for row in new:
            stop = next((i for i, t in enumerate(row) if t in eos), None)
            finished.append(stop is not None)
            num_tokens.append(len(row) if stop is None else stop + 1)
        texts = self.tokenizer.batch_decode([r[:m] for r, m in zip(new, num_tokens)], skip_special_tokens=True)
        return Samples(texts, num_tokens, finished)


class VLLMSampler:
    """Samples with vLLM (GPU). Same seeding contract through per-request seeds.

    Not exercised by the test suite (no GPU there); see docs/evaluation.md.
    """

    def __init__(self, model_path: str | Path) -> None:
        from vllm import LLM

        self.llm = LLM(model=str(model_path), seed=0)
        self.tokenizer = self.llm.get_tokenizer()

    def sample(self, prompt: Any, num: int, seed: int, settings: SamplingSettings) -> Samples:
        from vllm import SamplingParams

        text, _ = render_prompt(self.tokenizer, prompt)
        params = SamplingParams(n=num, temperature=settings.temperature, top_p=settings.top_p,
                                top_k=settings.top_k if settings.top_k > 0 else -1,
                                max_tokens=settings.max_new_tokens, seed=seed % (2**31))
        outputs = self.llm.generate([text], params, use_tqdm=False)[0].outputs
        return Samples([o.text for o in outputs], [len(o.token_ids) for o in outputs],
                       [o.finish_reason == "stop" for o in outputs])


def make_sampler(engine: str, model_path: str | Path) -> TransformersSampler | VLLMSampler:
    return VLLMSampler(model_path) if engine == "vllm" else TransformersSampler(model_path)

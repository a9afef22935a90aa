"""``toy_paths``: a task where exploration is measurable on a laptop in minutes.

A layered graph: a start node S, a first layer A1..Aw, a second layer B1..Bw, a target T, and
every edge S-Ai, Ai-Bj, Bj-T. Each instance blocks some edges and says which in the prompt;
the answer is a route ``S Ai Bj T`` that uses no blocked edge. There are w^2 routes, several
of them correct on most instances, and the strategy of an answer is exactly its route (no
judge needed). The route ``S A1 B1 T`` is the *popular* one: the supervised warm start favours
it and the training split rarely blocks it, so RL that collapses onto one strategy collapses
onto it. The ``heldout`` split always blocks it (a visible perturbation the training data
rarely showed, as the "perturbed start" tests of the polychromic-PPO paper): a policy that
kept other routes alive still solves those instances, a collapsed one does not.

Prompt:  ``blocked: S A2 , A1 B3 , B2 T . path:``      answer:  `` S A3 B1 T`` and the end

The answer is the route and nothing after it: ``S A3 B1 T T T`` (a model that never stops) is
wrong. Decoded completions lose their eos token, so "the end" is the end of the text; the
literal word ``<eos>`` (decoding that keeps special tokens) also ends it. An answer can only
be seen to end when the completion may run past the route's four tokens (max_new_tokens >= 5).

The rare-route variant (``rare_routes`` > 0, registered as ``toy_paths_rare``) marks the last
routes (those through the last A node, for 3 of width 3) as *rare*: its warm start gives them
``rare_mass`` of its answers in all, and a fraction ``rare_only_prob`` of its instances blocks
every other route, so only a rare route solves them. A base model warm-started that way almost
never samples the routes those instances need: a method can add coverage there, not only keep it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..clustering.base import CLUSTERERS, DEGENERATE, BaseClusterer, ClusterResult
from ..rewards import REWARDS
from ..rewards.extract import completion_text
from . import TASKS
from .base import Component

START, TARGET = "S", "T"
EOS_WORD, PAD_WORD = "<eos>", "<pad>"  # the toy tokenizer's end and padding tokens, as text
MAX_WIDTH = 5
SPLITS = ("train", "test", "heldout")
SPLIT_SEEDS = {"train": 0, "test": 1, "heldout": 2}


def layer(prefix: str, width: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, width + 1)]


def vocabulary(max_width: int = MAX_WIDTH) -> list[str]:
    """Every word a prompt or answer can contain (the toy tokenizer's vocabulary)."""
    return ["blocked:", "path:", ",", ".", START, TARGET, *layer("A", max_width), *layer("B", max_width)]


def route_edges(a: str, b: str) -> list[tuple[str, str]]:
    return [(START, a), (a, b), (b, TARGET)]


def all_edges(width: int) -> list[tuple[str, str]]:
    A, B = layer("A", width), layer("B", width)
    return [(START, a) for a in A] + [(a, b) for a in A for b in B] + [(b, TARGET) for b in B]


def route_words(text: str) -> list[str]:
    """The words of an answer, without the padding and the one end token that may trail it."""
    words = text.split()
    while words and words[-1] == PAD_WORD:
        words.pop()
    if words and words[-1] == EOS_WORD:
        words.pop()
    return words


def parse_route(text: str, width: int) -> tuple[str, str] | None:
    """``(Ai, Bj)`` if ``text`` is exactly a well-formed route ``S Ai Bj T`` and then the end, else None."""
    words = route_words(text)
    if len(words) != 4 or words[0] != START or words[3] != TARGET:
        return None
    a, b = words[1], words[2]
    if a not in layer("A", width) or b not in layer("B", width):
        return None
    return a, b


def route_id(a: str, b: str, width: int) -> int:
    """Strategy id of route (Ai, Bj): 1 .. width^2 (0 and 100 stay free for degenerate)."""
    return (int(a[1:]) - 1) * width + int(b[1:])


@TASKS.register("toy_paths")
@dataclass
class ToyPathsTask:
    """Routes through a layered graph with blocked edges; the strategy of an answer is its route.

    ``rows(split)`` is deterministic: the same split always gives the same rows.

    Args:
        width: nodes per layer (2..5); there are width^2 routes.
        block_prob: chance that each edge off the popular route is blocked.
        popular_block_prob: chance that each edge of the popular route is blocked (train/test).
        sizes: rows per split.
        min_valid: every instance keeps at least this many correct routes.
        rare_routes: how many routes are rare (the last route ids: those through the last A
            node first); 0 = no rare routes, the default task.
        rare_only_prob: chance that an instance blocks every route but the rare ones.
        rare_mass: share of the warm-start answers that take a rare route (uniformly).
    """

    width: int = 3
    block_prob: float = 0.3
    popular_block_prob: float = 0.05
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 4000, "test": 200, "heldout": 200})
    min_valid: int = 2
    rare_routes: int = 0
    rare_only_prob: float = 0.0
    rare_mass: float = 0.0
    name: str = "toy_paths"
    splits: tuple[str, ...] = SPLITS

    def __post_init__(self) -> None:
        if not 2 <= self.width <= MAX_WIDTH:
            raise ValueError(f"width must be in [2, {MAX_WIDTH}], got {self.width}")
        for name in ("block_prob", "popular_block_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 1 <= self.min_valid < self.width**2:
            raise ValueError(f"min_valid must be in [1, {self.width**2 - 1}], got {self.min_valid}")
        unknown = set(self.sizes) - set(SPLITS)
        if unknown:
            raise ValueError(f"sizes has unknown split(s) {sorted(unknown)}; valid splits: {', '.join(SPLITS)}")
        self._check_rare()

    def _check_rare(self) -> None:
        for name in ("rare_only_prob", "rare_mass"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.rare_routes < self.width**2 - 1:
            raise ValueError(f"rare_routes must be in [0, {self.width**2 - 2}] (the popular route and one "
                             f"other stay common), got {self.rare_routes}")
        if self.rare_only_prob > 0 and self.rare_routes < self.min_valid:
            raise ValueError(f"rare_only_prob > 0 needs rare_routes >= min_valid = {self.min_valid} (a rare-only "
                             f"instance keeps min_valid correct routes, all rare), got rare_routes={self.rare_routes}")

    @property
    def popular(self) -> tuple[str, str]:
        return ("A1", "B1")

    @property
    def reward(self) -> Component:
        return Component("toy_paths", {"width": self.width})

    @property
    def clusterer(self) -> Component:
        return Component("toy_paths", {"width": self.width})

    def routes(self) -> list[tuple[str, str]]:
        return [(a, b) for a in layer("A", self.width) for b in layer("B", self.width)]

    @property
    def rare(self) -> list[tuple[str, str]]:
        """The rare routes: the last ``rare_routes`` in route-id order (through the last A node first)."""
        return self.routes()[len(self.routes()) - self.rare_routes:] if self.rare_routes else []

    def rare_only_edges(self) -> set[tuple[str, str]]:
        """Edges whose blocking leaves only rare routes: S-Ai for an A node without a rare route,
        Ai-Bj for a common route through an A node that has one."""
        rare = set(self.rare)
        rare_a = {a for a, _ in rare}
        return {(a, b) if a in rare_a else (START, a) for a, b in self.routes() if (a, b) not in rare}

    def sample_instance(self, rng: random.Random, split: str) -> list[tuple[str, str]]:
        """Blocked edges of one instance of ``split``."""
        popular = set(route_edges(*self.popular))
        forced = self.rare_only_edges() if self.rare_only_prob and rng.random() < self.rare_only_prob else set()
        while True:
            blocked = [e for e in all_edges(self.width)
                       if rng.random() < (self.popular_block_prob if e in popular else self.block_prob)]
            blocked += sorted(forced - set(blocked))
            if split == "heldout" and not popular & set(blocked):
                blocked.append(rng.choice(sorted(popular)))
            valid = [r for r in self.routes() if not set(route_edges(*r)) & set(blocked)]
            if len(valid) >= self.min_valid:
                return sorted(blocked, key=all_edges(self.width).index)

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for toy_paths; valid splits: {', '.join(SPLITS)}")
        rng = random.Random(f"toy_paths/{self.width}/{SPLIT_SEEDS[split]}")
        count = self.sizes.get(split, 200) if limit is None else min(limit, self.sizes.get(split, 200))
        out = []
        for i in range(count):
            blocked = self.sample_instance(rng, split)
            valid = [r for r in self.routes() if not set(route_edges(*r)) & set(blocked)]
            row = {
                "prompt": "blocked: " + " , ".join(f"{u} {v}" for u, v in blocked) + " . path:",
                "problem_id": f"{split}-{i}",
                "blocked": [f"{u} {v}" for u, v in blocked],
                "valid_routes": [route_id(a, b, self.width) for a, b in valid],
            }
            if self.rare_routes:
                row["rare_only"] = not set(valid) - set(self.rare)
            out.append(row)
        return out

    def warmstart_answer(self, row: dict[str, Any], rng: random.Random, noise: float, popular_bias: float) -> str:
        """One answer of the supervised warm-start data for ``row``.

        With probability ``noise`` a uniformly random route (blocked or not: the sloppy part of
        the "pretraining" data); otherwise a correct route, the popular one with probability
        ``popular_bias`` when it is correct, else uniform over the other correct routes.

        With rare routes: a uniformly random rare route with probability ``rare_mass`` (correct
        or not); otherwise the same recipe over the common routes only, and a random common
        route (a wrong answer) where no common route is correct.
        """
        pool = self.routes()
        if self.rare_routes:
            if rng.random() < self.rare_mass:
                a, b = rng.choice(self.rare)
                return f" {START} {a} {b} {TARGET}"
            pool = [r for r in pool if r not in set(self.rare)]
        valid = [r for r in pool if route_id(*r, self.width) in row["valid_routes"]]
        if rng.random() < noise or not valid:
            a, b = rng.choice(pool)
        else:
            others = [r for r in valid if r != self.popular]
            if self.popular in valid and (rng.random() < popular_bias or not others):
                a, b = self.popular
            else:
                a, b = rng.choice(others)
        return f" {START} {a} {b} {TARGET}"


@TASKS.register("toy_paths_rare")
@dataclass
class ToyPathsRareTask(ToyPathsTask):
    """The toy task with rare routes: the base model almost never answers the routes via the last A node.

    ``toy_paths`` with ``rare_routes=3`` (A3 B1, A3 B2, A3 B3 at width 3), ``rare_only_prob=0.25``
    (a quarter of the instances block every other route) and ``rare_mass=0.01`` (1% of the warm
    start's answers take a rare route). Its base model is ``toy-paths-rare-base``.
    """

    rare_routes: int = 3
    rare_only_prob: float = 0.25
    rare_mass: float = 0.01
    name: str = "toy_paths_rare"


def _blocked(row_blocked: Any) -> set[tuple[str, str]]:
    return {tuple(e.split()) for e in row_blocked}  # type: ignore[misc]


@REWARDS.register("toy_paths")
def make_toy_paths_reward(width: int = 3):
    """Reward 1.0 for exactly a route that uses no blocked edge and then the end, else 0.0.

    Reads the ``blocked`` column. ``last_stats`` holds the counts of the last call:
    ``malformed`` answers (not exactly a route), of which ``trailing`` start with a route and
    go on (a model that does not stop), and ``scored``.
    """

    def toy_paths_reward(prompts, completions, blocked, **_: Any) -> list[float]:
        out = []
        malformed = trailing = 0
        for completion, row_blocked in zip(completions, blocked, strict=True):
            text = completion_text(completion)
            route = parse_route(text, width)
            if route is None:
                malformed += 1
                trailing += parse_route(" ".join(route_words(text)[:4]), width) is not None
                out.append(0.0)
                continue
            out.append(0.0 if set(route_edges(*route)) & _blocked(row_blocked) else 1.0)
        toy_paths_reward.last_stats = {"malformed": malformed, "trailing": trailing, "scored": len(out)}
        return out

    toy_paths_reward.last_stats = {}
    toy_paths_reward.__name__ = "toy_paths"
    return toy_paths_reward


class ToyPathsClusterer(BaseClusterer):
    """Exact strategies of the toy task: the route's id (1..width^2), the same in every group and
    step; answers that are not exactly a route (malformed, or a route that goes on) are degenerate."""

    name = "toy_paths"

    def __init__(self, width: int = 3, *, degenerate: int = DEGENERATE) -> None:
        super().__init__(degenerate=degenerate)
        self.width = width

    def cluster(self, prompt: str, responses, **context: Any) -> ClusterResult:
        ids = []
        for r in responses:
            route = parse_route(completion_text(r), self.width)
            ids.append(self.degenerate if route is None else route_id(*route, self.width))
        return ClusterResult(ids=ids, backend=self.name, degenerate=self.degenerate)


CLUSTERERS.register("toy_paths")(ToyPathsClusterer)

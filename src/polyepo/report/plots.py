"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .runs import Run, combine

#: Training-log keys tried in order for each panel (the first one a run has is used).
TRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mean reward", ("reward", "rewards/mean", "train/reward")),
    ("distinct correct clusters per prompt", ("polyepo/clusters_distinct_correct", "clusters_distinct_correct")),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colors(labels: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cycle = plt.get_cmap("tab10").colors
    return {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}


def curve(runs: list[Run], metric: str) -> tuple[list[int], np.ndarray, np.ndarray, list[np.ndarray], str]:
    """(ks, mean, se, per-run curves, what the SE is over) of ``metric`` ('pass_at_k' | 'distinct_at_k' | 'majority_at_k')."""
    summaries = [r.summary for r in runs]
    ks = summaries[0].ks
    per_run = [np.array([getattr(s, metric)[k].mean for k in ks]) for s in summaries]
    mean, se, over = [], [], ""
    for j, k in enumerate(ks):
        m, e, over = combine([c[j] for c in per_run], [getattr(s, metric)[k].se for s in summaries])
        mean.append(m)
        se.append(e)
    return ks, np.array(mean), np.nan_to_num(np.array(se)), per_run, over


def _draw_curves(ax, groups: dict[str, list[Run]], metric: str, transform=None, probability: bool = False) -> list[int]:
    """One line per label (mean, ±1 SE band, clipped to [0, 1] for a probability), replicates thin."""
    col = colors(list(groups))
    f = transform or (lambda x: x)
    ks: list[int] = []
    for label, runs in groups.items():
        ks, mean, se, per_run, _ = curve(runs, metric)
        if len(runs) > 1:
            for c in per_run:
                ax.plot(ks, f(c), color=col[label], lw=0.7, alpha=0.45)
        ax.plot(ks, f(mean), color=col[label], lw=2.2, marker="o", ms=3.5,
                label=f"{label} ({len(runs)} run{'s' * (len(runs) > 1)})")
        low, high = (np.clip(mean - se, 0, 1), np.clip(mean + se, 0, 1)) if probability else (mean - se, mean + se)
        ax.fill_between(ks, f(low), f(high), color=col[label], alpha=0.18, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (samples drawn per problem)")
    ax.grid(alpha=0.3)
    return ks


def plot_curves(groups: dict[str, list[Run]], metric: str, ylabel: str, title: str, path: Path,
                probability: bool = False, failure_panel: bool = False) -> Path:
    """``metric`` against k on a log2 axis, one line per label with a ±1 SE band; replicates thin.

    ``probability``: the metric is a probability (y axis 0..1, bands clipped to it).
    ``failure_panel`` adds a right panel with ``1 - metric`` on a log axis, where differences
    between curves that all approach 1 at large k stay visible (zeros are not drawn).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if failure_panel else 1, figsize=(12 if failure_panel else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    _draw_curves(ax, groups, metric, probability=probability)
    ax.set_ylabel(ylabel)
    if probability:
        ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    if failure_panel:
        right = axes[0][1]
        _draw_curves(right, groups, metric, lambda x: np.where(1 - np.asarray(x) > 1e-9, 1 - np.asarray(x), np.nan),
                     probability=True)
        right.set_yscale("log")
        problems = next(iter(groups.values()))[0].summary.problems
        right.set_ylim(bottom=0.1 / problems)  # below a tenth of a problem the curve says nothing
        right.set_ylabel(f"1 − {ylabel} (log scale)")
        right.set_title(f"Problems still unsolved after k samples: 1 − {ylabel}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_distinct_bars(groups: dict[str, list[Run]], path: Path, n: int) -> Path:
    """Mean distinct correct clusters per prompt (all n samples), one bar per label, ±1 SE; runs as dots."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(groups) + 2), 4))
    col = colors(list(groups))
    for x, (label, runs) in enumerate(groups.items()):
        values = [r.summary.distinct_correct.mean for r in runs]
        mean, se, _ = combine(values, [r.summary.distinct_correct.se for r in runs])
        ax.bar(x, mean, yerr=0 if np.isnan(se) else se, color=col[label], alpha=0.8, capsize=5, width=0.6)
        top = mean + (0 if np.isnan(se) else se)
        ax.annotate(f"{mean:.2f}", (x, top), ha="center", va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
        if len(runs) > 1:
            ax.scatter(x + np.linspace(-0.15, 0.15, len(values)), values, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(f"distinct correct clusters per prompt (n = {n})")
    ax.set_title("Strategies among correct answers", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _series(run: Run, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    for key in keys:
        pts = [(r["step"], r[key]) for r in run.log if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
        if pts:
            steps, values = zip(*sorted(pts))
            return np.array(steps, dtype=float), np.array(values, dtype=float)
    return None


def training_panels(groups: dict[str, list[Run]]) -> list[tuple[str, tuple[str, ...]]]:
    """The panels for which at least one run logged a value."""
    runs = [r for rs in groups.values() for r in rs]
    return [(title, keys) for title, keys in TRAINING_PANELS if any(_series(r, keys) for r in runs)]


def plot_training(groups: dict[str, list[Run]], path: Path) -> Path | None:
    """Training curves per panel: each run thin, the mean over a label's runs (at common steps) thick."""
    panels = training_panels(groups)
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    col = colors(list(groups))
    for ax, (title, keys) in zip(axes[0], panels):
        for label, runs in groups.items():
            series = [s for s in (_series(r, keys) for r in runs) if s is not None]
            if not series:
                continue
            for steps, values in series:
                ax.plot(steps, values, color=col[label], lw=0.8, alpha=0.4 if len(series) > 1 else 1.0)
            common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series)))
            if len(series) > 1 and len(common) >= 2:
                mean = np.mean([np.interp(common, s, v) for s, v in series], axis=0)
                ax.plot(common, mean, color=col[label], lw=2.4, label=f"{label} (mean of {len(series)})")
            else:
                ax.plot([], [], color=col[label], lw=2.4, label=label)
        ax.set_xlabel("training step")
        ax.set_ylabel(title)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path

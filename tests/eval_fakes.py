"""Results files and run directories for tests, made without sampling a model.

Completions are real answers to real toy_paths problems chosen by a simple policy (popular
route / a uniformly random valid route / any route / malformed); rewards and clusters are then
computed by the real reward function and clusterer through ``rescore``. What this does not
cover: the sampling itself (tests/test_evaluate.py runs real models for that).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from polyepo.evaluate import SamplingSettings, rescore
from polyepo.evaluate.results import FORMAT, VERSION, write_results
from polyepo.tasks import load_task
from polyepo.tasks.toy_paths import route_id


def answer(rng: random.Random, valid: list[tuple[str, str]], popular: float, explore: float) -> str:
    """One answer: the popular route (if valid) with prob ``popular``, a random valid route with
    prob ``explore``, else any route (maybe blocked), or a malformed answer 1 time in 10 of those."""
    u = rng.random()
    if u < popular:
        a, b = ("A1", "B1") if ("A1", "B1") in valid else valid[0]
    elif u < popular + explore:
        a, b = rng.choice(valid)
    elif rng.random() < 0.1:
        return "S A1"
    else:
        a, b = f"A{rng.randint(1, 3)}", f"B{rng.randint(1, 3)}"
    return f"S {a} {b} T"


def fake_results(path: Path, *, label: str = "base", n: int = 8, problems: int = 6, split: str = "test",
                 popular: float = 0.3, explore: float = 0.3, seed: int = 0, run_dir: Path | None = None) -> Path:
    task = load_task("toy_paths")
    rows = task.rows(split, problems)
    rng = random.Random(f"{label}/{seed}")
    routes = task.routes()
    records = []
    for i, row in enumerate(rows):
        valid = [r for r in routes if route_id(*r, 3) in row["valid_routes"]]
        comps = [answer(rng, valid, popular, explore) for _ in range(n)]
        records.append({"kind": "problem", "index": i, "problem_id": row["problem_id"], "prompt": row["prompt"],
                        "columns": {k: v for k, v in row.items() if k not in ("prompt", "problem_id")},
                        "completions": comps, "num_tokens": [5] * n, "finished": [True] * n,
                        "rewards": [None] * n, "clusters": [None] * n})
    info = {"spec": str(run_dir or label), "path": str(run_dir or label)}
    if run_dir is not None:
        info.update(run_dir=str(run_dir.resolve()), run={"estimator": label, "seed": seed})
    header = {"kind": "header", "format": FORMAT, "version": VERSION, "label": label,
              "sampling": SamplingSettings(n=n, max_new_tokens=8, seed=seed).to_dict(),
              "model": {"fingerprint": f"fake-{label}-{seed}"}, "model_info": info,
              "task": {"name": "toy_paths", "options": {}, "split": split, "limit": problems, "problems": len(rows)},
              "reward": {"name": "toy_paths", "options": {"width": 3}},
              "clusterer": {"name": "toy_paths", "options": {"width": 3}, "only_correct": False},
              "correct_threshold": 1.0}
    write_results(path, header, records)
    return rescore(path, progress=False)


def fake_run_dir(root: Path, label: str, seed: int, *, n: int = 8, problems: int = 6, log_keys: bool = True,
                 **policy: float) -> Path:
    """A training run directory as the trainer writes it: run.yaml, log.jsonl, eval/<file>.jsonl."""
    run = root / f"{label}-s{seed}"
    run.mkdir(parents=True)
    (run / "run.yaml").write_text(f"model: toy-paths-base\ntask: toy_paths\ntrainer:\n  estimator: {label}\n  seed: {seed}\n")
    rng = random.Random(seed)
    with open(run / "log.jsonl", "w") as fh:
        for step in range(0, 50, 5):
            rec = {"step": step, "loss": 0.1}
            if log_keys:
                rec.update({"reward": 0.5 + step / 100 + rng.random() / 50,
                            "polyepo/clusters_distinct_correct": 2 + step / 50 * (label == "poly_epo")})
            fh.write(json.dumps(rec) + "\n")
        fh.write('{"step": 50, "rew')  # a run still writing: torn last line
    fake_results(run / "eval" / "toy_paths-test.jsonl", label=label, n=n, problems=problems, seed=seed, run_dir=run,
                 **policy)
    return run

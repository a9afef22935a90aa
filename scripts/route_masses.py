"""How much of a toy model's sampling mass each route gets: the check of the rare-route warm start.

    .venv/bin/python scripts/route_masses.py [MODEL] [--task toy_paths_rare] [--split test] [-n 256]

Samples n answers per problem with ``polyepo.evaluate.evaluate`` (the evaluation protocol:
temperature 1, the results file kept for reuse), then prints each route's share of all answers,
the rare routes' share together, and how the rare-only problems fare (pass@n, solved problems).
``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def route_masses(results_path: str | Path, task) -> dict:
    """Route shares and rare-only figures of a results file of ``task`` (a ToyPathsTask)."""
    from polyepo.evaluate import read_results
    from polyepo.tasks.toy_paths import route_id

    problems = read_results(results_path).problems
    ids = Counter(c for p in problems for c in p["clusters"])
    total = sum(ids.values())
    names = {route_id(a, b, task.width): f"{a} {b}" for a, b in task.routes()}
    rare = {route_id(a, b, task.width) for a, b in task.rare}
    rare_only = [p for p in problems if p["columns"].get("rare_only")]
    solved = [any(r == 1.0 for r in p["rewards"]) for p in rare_only]
    return {
        "samples": total, "problems": len(problems),
        "route_mass": {names[i]: ids.get(i, 0) / total for i in sorted(names)},
        "no_route_mass": sum(n for i, n in ids.items() if i not in names) / total,
        "rare_mass": sum(ids.get(i, 0) for i in rare) / total,
        "rare_only_problems": len(rare_only),
        "rare_only_solved": sum(solved),
        "rare_only_pass_at_n": (sum(solved) / len(rare_only)) if rare_only else None,
        "rare_only_rare_mass": (sum(c in rare for p in rare_only for c in p["clusters"])
                                / max(1, sum(len(p["clusters"]) for p in rare_only))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="toy-paths-rare-base")
    parser.add_argument("--task", default="toy_paths_rare")
    parser.add_argument("--split", default="test")
    parser.add_argument("-n", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="results file (default: next to the model's evaluations)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from polyepo.evaluate import evaluate
    from polyepo.tasks import load_task

    task = load_task(args.task)
    path = evaluate(args.model, args.task, args.split, n=args.n, max_new_tokens=args.max_new_tokens,
                    seed=args.seed, out=args.out, progress=False)
    res = route_masses(path, task)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model} on {args.task}/{args.split}: {res['problems']} problems x n = {args.n} ({res['samples']} answers)")
    for name, mass in res["route_mass"].items():
        print(f"  S {name} T  {100 * mass:6.2f}%{'   rare' if tuple(name.split()) in set(task.rare) else ''}")
    print(f"  not a route  {100 * res['no_route_mass']:6.2f}%")
    if task.rare:
        print(f"rare routes together: {100 * res['rare_mass']:.2f}% of all answers")
    if res["rare_only_problems"]:
        print(f"rare-only problems: {res['rare_only_problems']}, solved at k = n: {res['rare_only_solved']} "
              f"(pass@{args.n} {res['rare_only_pass_at_n']:.3f}); rare answers there: "
              f"{100 * res['rare_only_rare_mass']:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Closed-form Poly-EPO advantages vs vectorised enumeration of all subsets, side by side.

    python benchmarks/advantages.py [--groups 200] [--check]

For each (N, n) both methods run on the same random groups in one process, interleaved,
and the script prints time per group and the ratio. At (64, 8) and (256, 32) enumeration
is out of reach (C(256, 32) ~ 5.8e40 sets) and only the closed form runs. Targets: the
closed form is >= 100x faster at (16, 8) and under 50 ms per group at (256, 32). With
--check the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from polyepo.advantages import all_subsets, poly_epo_advantages, set_rl_advantages


def random_groups(N: int, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        r = (rng.random(N) < rng.random()).astype(float)
        c = rng.integers(1, max(2, N // 3), N)
        c[rng.random(N) < 0.1] = 100  # some degenerate rollouts
        out.append((r, c))
    return out


def per_group_seconds(fn, groups, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for r, c in groups:
            fn(r, c)
        best = min(best, (time.perf_counter() - t) / len(groups))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=200, help="random groups per size")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    ok = True
    print(f"{'N':>4} {'n':>3} {'sets':>10} {'closed form':>14} {'enumeration':>14} {'ratio':>9}  max rel. diff")
    for N, n in [(8, 4), (16, 8), (20, 10), (64, 8), (256, 32)]:
        total = math.comb(N, n)
        enumerable = total <= 200_000
        count = args.groups if N <= 16 else max(10, args.groups // 10)
        groups = random_groups(N, count, seed=N * 1000 + n)
        closed = lambda r, c, n=n: poly_epo_advantages(r, c, n)
        enum = lambda r, c, n=n: set_rl_advantages(r, c, n)
        if enumerable:
            all_subsets(N, n)  # build the cached index once: enumeration is timed at its best
            diff = max(float(np.abs(closed(r, c) - enum(r, c)).max() / max(1.0, np.abs(enum(r, c)).max()))
                       for r, c in groups[:10])
            t_enum = per_group_seconds(enum, groups)
        t_closed = per_group_seconds(closed, groups)
        if enumerable:
            ratio = t_enum / t_closed
            print(f"{N:>4} {n:>3} {total:>10} {t_closed * 1e6:>11.1f} us {t_enum * 1e6:>11.1f} us {ratio:>8.1f}x  {diff:.1e}")
            if (N, n) == (16, 8):
                met = ratio >= 100
                ok &= met
                print(f"     target: closed form >= 100x faster at (16, 8): {'met' if met else 'MISSED'}")
        else:
            print(f"{N:>4} {n:>3} {total:>10.2e} {t_closed * 1e6:>11.1f} us {'(not enumerable)':>14}")
            if (N, n) == (256, 32):
                met = t_closed < 0.05
                ok &= met
                print(f"     target: under 50 ms per group at (256, 32): {'met' if met else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())

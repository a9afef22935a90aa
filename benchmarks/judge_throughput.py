"""Judge clustering of one training step: sequential vs concurrent vs cached, side by side.

    python benchmarks/judge_throughput.py [--groups 64] [--latency 0.1]

A scripted OpenAI-compatible server on 127.0.0.1 answers every request after ``--latency``
seconds (a stand-in for a remote judge's response time; it does no model work). The same
``--groups`` groups of 8 responses are clustered through the real ``openai`` client with
``max_concurrency`` 1, 8 and 32, then once more from the cache. The script prints wall time
per step and the speed-up over sequential requests. Target: 8 concurrent requests are >= 5x
faster than sequential ones. What it does not measure: a real model's latency under load,
network time, or rate limits of a real provider.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from polyepo.clustering import make_clusterer
from polyepo.standin import ChatServer, Reply, fast_options, last_user_message

BLOCK = re.compile(r"<response (\d+)>\n(.*?)\n</response \1>", re.DOTALL)


def responder(latency: float):
    def reply(body):
        task = last_user_message(body).split("## Your task")[-1]
        shown = [m.group(2) for m in BLOCK.finditer(task)]
        ids: dict[str, int] = {}
        out = {str(i): {"reasoning": "Macro: x. Micro: y.", "cluster_id": ids.setdefault(t.split(":")[0], len(ids) + 1)}
               for i, t in enumerate(shown, 1)}
        return Reply(json.dumps(out), delay_s=latency)

    return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    groups = [(f"problem {g}", [f"S{(g + i) % 3}: response {i} of {g}" for i in range(8)]) for g in range(args.groups)]
    with ChatServer(responder(args.latency)) as server, tempfile.TemporaryDirectory() as tmp:
        times = {}
        for conc in (1, 8, 32):
            cache = str(Path(tmp) / f"c{conc}.sqlite")
            c = make_clusterer("judge", prompt="code", **fast_options(server, max_concurrency=conc, cache_path=cache))
            start = time.perf_counter()
            results = c.cluster_many(groups)
            times[f"concurrency {conc}"] = time.perf_counter() - start
            assert all(not r.failed for r in results)
        start = time.perf_counter()
        cached = c.cluster_many(groups)
        times["cached (concurrency 32)"] = time.perf_counter() - start
        assert all(r.cache_hit for r in cached)
    base = times["concurrency 1"]
    print(f"{args.groups} groups x 8 responses, {args.latency * 1000:.0f} ms per request (loopback stand-in)")
    print(f"{'run':<26}{'s/step':>10}{'speed-up':>10}")
    for name, t in times.items():
        print(f"{name:<26}{t:>10.3f}{base / t:>9.1f}x")
    ratio = base / times["concurrency 8"]
    print(f"target: concurrency 8 >= 5x sequential -> {ratio:.1f}x {'OK' if ratio >= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()

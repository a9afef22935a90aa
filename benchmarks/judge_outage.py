"""A judge outage in the middle of a run of clustering steps, under each failure policy, side by side.

    python benchmarks/judge_outage.py [--steps 40] [--groups 16] [--step-s 0.15] [--outage 2.0] [--down-at 1.5]

A scripted OpenAI-compatible server on 127.0.0.1 answers each request after 50 ms, except during
an outage of ``--outage`` seconds starting ``--down-at`` seconds into the run, when it answers 503.
``--steps`` steps of ``--groups`` groups of 8 responses (plus ``--step-s`` seconds of other work
per step, standing in for generation and the update) are clustered through the real ``openai``
client, once per policy (``zero_diversity``, ``reward_only``, ``wait``), with the
times of a real run scaled down ~30x (breaker cool-down 2 s, backoff up to 0.4 s). It prints,
per policy: groups that lost their whole gradient (``zero_diversity``), groups that kept only
their reward term (``reward_only``), groups clustered by the judge, HTTP requests, wall time.
Target: ``wait`` loses no group and takes at most the outage plus 2 cool-downs longer than a run
without outage. What it does not measure: training (see docs/clustering.md), a real server's
recovery, or the trainer's own time per step.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time

from polyepo.clustering import make_clusterer
from polyepo.standin import ChatServer, Reply, Status, last_user_message

BLOCK = re.compile(r"<response (\d+)>\n(.*?)\n</response \1>", re.DOTALL)


def make_responder(state: dict):
    def reply(body):
        if state["down"]:
            return Status(503, "upstream down")
        task = last_user_message(body).split("## Your task")[-1]
        shown = [m.group(2) for m in BLOCK.finditer(task)]
        ids: dict[str, int] = {}
        out = {str(i): {"reasoning": "Macro: x. Micro: y.", "cluster_id": ids.setdefault(t.split(":")[0], len(ids) + 1)}
               for i, t in enumerate(shown, 1)}
        return Reply(json.dumps(out), delay_s=0.05)

    return reply


def run(policy: str, args, server: ChatServer, state: dict, outage: bool) -> dict[str, float]:
    opts = dict(model="bench", base_url=server.base_url, cache_path=None, max_concurrency=16, max_retries=3,
                backoff_initial_s=0.05, backoff_max_s=0.4, breaker_after=8, breaker_cooldown_s=2.0,
                status_interval_s=10.0, max_wait_s=120.0)
    clusterer = make_clusterer("judge", prompt="code", on_failure=policy, **opts)
    before = len(server.requests)
    counts = {"zero gradient": 0, "reward only": 0, "judged": 0}
    clusterer.cluster_many([("warm-up", [f"warm-up {policy} {outage}"])])  # connections opened
    start = time.perf_counter()

    def toggle():
        time.sleep(args.down_at)
        state["down"] = outage
        time.sleep(args.outage)
        state["down"] = False

    switch = threading.Thread(target=toggle, daemon=True)
    switch.start()
    for step in range(args.steps):
        groups = [(f"step {step} problem {g} {policy} {outage}", [f"S{(g + i) % 3}: answer {i}" for i in range(8)])
                  for g in range(args.groups)]
        time.sleep(args.step_s)  # the rest of a training step: generation, rewards, the update
        for r in clusterer.cluster_many(groups):
            key = "judged" if not r.failed else "reward only" if r.policy == "reward_only" else "zero gradient"
            counts[key] += 1
    counts["requests"] = len(server.requests) - before - 1
    counts["wall s"] = time.perf_counter() - start
    switch.join()  # the next run starts with the judge up
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--step-s", type=float, default=0.15, help="seconds of other work per step")
    parser.add_argument("--outage", type=float, default=2.0)
    parser.add_argument("--down-at", type=float, default=1.5)
    args = parser.parse_args()
    state = {"down": False}
    rows = {}
    with ChatServer(make_responder(state)) as server:
        rows["no outage (wait)"] = run("wait", args, server, state, outage=False)
        for policy in ("zero_diversity", "reward_only", "wait"):
            rows[policy] = run(policy, args, server, state, outage=True)
    total = args.steps * args.groups
    print(f"{args.steps} steps x {args.groups} groups of 8, {args.step_s:g} s of other work per step, 50 ms per "
          f"request; a {args.outage:g} s outage {args.down_at:g} s in (breaker cool-down 2 s)")
    keys = ["zero gradient", "reward only", "judged", "requests", "wall s"]
    print(f"{'policy':<20}" + "".join(f"{k:>15}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<20}" + "".join(f"{row[k]:>15.2f}" if k == "wall s" else f"{row[k]:>15d}" for k in keys))
    extra = rows["wait"]["wall s"] - rows["no outage (wait)"]["wall s"]
    ok = rows["wait"]["judged"] == total and extra <= args.outage + 2 * 2.0
    print(f"target: wait judges all {total} groups and costs <= outage + 2 cool-downs ({args.outage + 4:g} s) "
          f"of extra time -> {rows['wait']['judged']} groups, +{extra:.2f} s {'OK' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()

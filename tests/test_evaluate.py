"""`polyepo eval` end to end with real tiny models: storage, resume, refusal, chat prompts, re-scoring."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from eval_fakes import fake_results
from polyepo.clustering import CLUSTERERS, ClusterResult
from polyepo.evaluate import evaluate, pass_rate_filter, read_results, rescore, summarize
from polyepo.evaluate import sampling as sampling_mod
from polyepo.rewards import REWARDS, make_reward
from polyepo.tasks import TASKS, load_task

pytest.importorskip("torch")
pytest.importorskip("transformers")

SMALL = dict(n=8, limit=3, max_new_tokens=6, batch_size=4, progress=False)


@pytest.fixture
def test_plugins(monkeypatch):
    """Registers this file's test task and clusterers for one test, and removes them after it
    (other tests list the registries and must not see them)."""
    monkeypatch.setitem(TASKS._items, "toy_paths_chat_test", ChatToyPaths)
    monkeypatch.setitem(CLUSTERERS._items, "first_word_test", FirstWord)
    monkeypatch.setitem(CLUSTERERS._items, "batched_test", Batched)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYEPO_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def full_run(cache, tmp_path_factory) -> Path:
    return evaluate("toy-paths-random", out=tmp_path_factory.mktemp("full") / "r.jsonl", **SMALL)


def strip(res):
    return [{k: v for k, v in p.items()} for p in res.problems]


def test_every_sample_verdict_and_cluster_is_stored(full_run):
    res = read_results(full_run)
    assert res.complete and not res.chunks and len(res.problems) == 3
    h = res.header
    assert h["sampling"] == {"n": 8, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 6, "seed": 0,
                             "batch_size": 4, "engine": "transformers"}
    assert h["task"] == {"name": "toy_paths", "options": {}, "split": "test", "limit": 3, "problems": 3}
    assert h["reward"]["name"] == "toy_paths" and h["clusterer"]["name"] == "toy_paths"
    reward = make_reward("toy_paths", width=3)
    rows = load_task("toy_paths").rows("test", 3)
    for prob, row in zip(res.problems, rows):
        assert prob["problem_id"] == row["problem_id"] and prob["prompt"] == row["prompt"]
        assert len(prob["completions"]) == len(prob["rewards"]) == len(prob["clusters"]) == 8
        assert all(1 <= t <= 6 for t in prob["num_tokens"])
        assert prob["rewards"] == reward([row["prompt"]] * 8, prob["completions"], blocked=[row["blocked"]] * 8)
        assert prob["clusters"] == CLUSTERERS.get("toy_paths")(width=3).cluster(row["prompt"], prob["completions"]).ids
    assert sum(line.count('"kind": "samples"') for line in full_run.read_text().splitlines()) == 0  # compacted


def test_same_seed_same_samples_other_seed_other_samples(full_run, tmp_path):
    again = read_results(evaluate("toy-paths-random", out=tmp_path / "a.jsonl", **SMALL))
    other = read_results(evaluate("toy-paths-random", out=tmp_path / "b.jsonl", seed=1, **SMALL))
    first = read_results(full_run)
    assert [p["completions"] for p in again.problems] == [p["completions"] for p in first.problems]
    assert [p["completions"] for p in other.problems] != [p["completions"] for p in first.problems]


def interrupted(tmp_path: Path, monkeypatch, calls: int) -> Path:
    """A run stopped by Ctrl-C after ``calls`` generate calls (6 are needed: 3 problems x 2 chunks)."""
    real, count = sampling_mod.TransformersSampler.sample, itertools.count()

    def stop_after(self, *args, **kwargs):
        if next(count) >= calls:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sampling_mod.TransformersSampler, "sample", stop_after)
    out = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        evaluate("toy-paths-random", out=out, **SMALL)
    monkeypatch.setattr(sampling_mod.TransformersSampler, "sample", real)
    return out


def test_resume_after_interrupt_draws_only_the_missing_chunks(full_run, tmp_path, monkeypatch):
    out = interrupted(tmp_path, monkeypatch, calls=3)  # problem 0 done, problem 1 half drawn
    partial = read_results(out)
    assert len(partial.problems) == 1 and list(partial.chunks) == ["test-1"] and not partial.complete
    assert "incomplete file: 1 of 3" in summarize(partial).notes[0]
    real, count = sampling_mod.TransformersSampler.sample, itertools.count()
    monkeypatch.setattr(sampling_mod.TransformersSampler, "sample",
                        lambda self, *a, **k: (next(count), real(self, *a, **k))[1])
    evaluate("toy-paths-random", out=out, **SMALL)
    assert next(count) == 3  # 6 chunks in all, 3 were on file
    assert strip(read_results(out)) == strip(read_results(full_run))


def test_torn_last_line_is_cut_off_before_resuming(full_run, tmp_path, monkeypatch):
    out = interrupted(tmp_path, monkeypatch, calls=4)
    with open(out, "a") as fh:
        fh.write('{"kind": "samples", "problem_id": "test-2", "start": 0, "compl')  # killed mid-write
    assert read_results(out).torn_bytes > 0
    evaluate("toy-paths-random", out=out, **SMALL)
    res = read_results(out)
    assert res.torn_bytes == 0 and strip(res) == strip(read_results(full_run))


def test_refuses_to_append_with_other_settings(full_run, tmp_path):
    copy = tmp_path / "r.jsonl"
    shutil.copy(full_run, copy)
    with pytest.raises(ValueError, match=r"different settings.*\n.*sampling.temperature: 1.0 -> 0.7"):
        evaluate("toy-paths-random", out=copy, **{**SMALL, "progress": False}, temperature=0.7)
    with pytest.raises(ValueError, match=r"task.limit: 3 -> 2"):
        evaluate("toy-paths-random", out=copy, **{**SMALL, "limit": 2})
    with pytest.raises(ValueError, match="not a polyepo results file"):
        (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
        read_results(tmp_path / "x.jsonl")


class ChatToyPaths:
    """The toy task with its prompts as chat messages (as SmolLM2 tasks have)."""

    name = "toy_paths_chat_test"
    splits = ("test",)

    def __init__(self) -> None:
        self.base = load_task("toy_paths")

    def rows(self, split, limit=None):
        return [{**r, "prompt": [{"role": "user", "content": r["prompt"]}]} for r in self.base.rows(split, limit)]

    reward = property(lambda self: self.base.reward)
    clusterer = property(lambda self: self.base.clusterer)


def test_chat_prompts_go_through_the_chat_template(cache, tmp_path, monkeypatch, test_plugins):
    from polyepo.models import resolve_model

    model = tmp_path / "chat-model"
    shutil.copytree(resolve_model("toy-paths-random"), model)
    cfg_file = model / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    cfg_file.write_text(json.dumps(cfg))
    seen = []
    reward = make_reward("toy_paths")

    def spy(prompts, completions, **cols):
        seen.append(completions[0])
        return reward(prompts, completions, **cols)

    monkeypatch.setitem(REWARDS._items, "toy_paths_spy_test", lambda **_: spy)
    out = evaluate(model, "toy_paths_chat_test", reward="toy_paths_spy_test", out=tmp_path / "c.jsonl", **SMALL)
    res = read_results(out)
    assert isinstance(res.problems[0]["prompt"], list)
    assert seen and isinstance(seen[0], list) and seen[0][0]["role"] == "assistant"  # TRL's conversational form
    text, is_chat = sampling_mod.render_prompt(sampling_mod.TransformersSampler(model).tokenizer, res.problems[0]["prompt"])
    assert is_chat and text == res.problems[0]["prompt"][0]["content"]


def test_rescoring_gives_identical_metrics(tmp_path):
    path = fake_results(tmp_path / "f.jsonl", n=16, problems=10)
    before = summarize(path).to_dict()
    again = rescore(path, tmp_path / "g.jsonl", progress=False)
    after = summarize(again).to_dict()
    before.pop("path"), after.pop("path")
    assert before == after
    assert 0 < before["pass_at_k"][1]["mean"] < 1 and before["distinct_correct"]["mean"] > 1


class FirstWord:
    """Clusters by the second word of the answer (the A node): a coarser strategy than the route."""

    name = "first_word_test"

    def cluster(self, prompt, responses, **context):
        words = [r.split() for r in responses]
        ids = [int(w[1][1:]) if len(w) >= 4 and w[1][1:].isdigit() else 100 for w in words]  # malformed: 100
        return ClusterResult(ids=ids, backend=self.name)


def test_recluster_with_another_backend_keeps_rewards(tmp_path, test_plugins):
    path = fake_results(tmp_path / "f.jsonl", n=16, problems=10)
    new = rescore(path, tmp_path / "g.jsonl", clusterer="first_word_test", rewards=False, progress=False)
    a, b = read_results(path), read_results(new)
    assert b.header["clusterer"]["name"] == "first_word_test"
    assert [p["rewards"] for p in a.problems] == [p["rewards"] for p in b.problems]
    assert summarize(b).distinct_correct.mean <= summarize(a).distinct_correct.mean  # coarser strategies
    only = read_results(rescore(path, tmp_path / "h.jsonl", only_correct=True, progress=False))
    for p in only.problems:
        assert all((c is None) != ok for c, ok in zip(p["clusters"], only.correct(p)))


def test_summary_pass_at_k_matches_enumeration_of_subsets(tmp_path):
    res = read_results(fake_results(tmp_path / "f.jsonl", n=6, problems=8))
    s = summarize(res, ks=[3, 5, 7, 100])
    assert s.ks == [1, 2, 3, 4, 5, 6]
    assert any("k = 7 skipped" in note for note in s.notes) and any("k = 100 skipped" in note for note in s.notes)
    for k in s.ks:
        per_problem = [np.mean([any(v[i] for i in sub) for sub in itertools.combinations(range(6), k)])
                       for v in map(res.correct, res.problems)]
        assert s.pass_at_k[k].mean == pytest.approx(np.mean(per_problem), abs=1e-12)
        assert s.pass_at_k[k].se == pytest.approx(np.std(per_problem, ddof=1) / np.sqrt(8), abs=1e-12)


def test_pass_rate_filter(tmp_path):
    res = read_results(fake_results(tmp_path / "f.jsonl", n=8, problems=12))
    counts = {p["problem_id"]: sum(res.correct(p)[:4]) for p in res.problems}
    ids, note = pass_rate_filter(res, 1, 3, m=4)
    assert ids == [pid for pid, c in counts.items() if 1 <= c <= 3] and f"{len(ids)} of 12" in note
    s = summarize(res, problem_ids=ids)
    assert s.problems == len(ids) and any("filtered" in n for n in s.notes)
    with pytest.raises(ValueError, match=r"m must be in \[1, n\] = \[1, 8\]"):
        pass_rate_filter(res, 1, 3, m=16)
    with pytest.raises(ValueError, match="not in"):
        summarize(res, problem_ids=["heldout-0"])


def test_cli_eval_then_rescore(cache, tmp_path):
    import os
    import subprocess
    import sys

    env = {"COLUMNS": "160", "PATH": "/usr/bin:/bin", "POLYEPO_CACHE": os.environ["POLYEPO_CACHE"]}
    run = lambda *a: subprocess.run([sys.executable, "-m", "polyepo", *a], capture_output=True, text=True,
                                    timeout=300, env=env)
    out = tmp_path / "e.jsonl"
    res = run("eval", "toy-paths-random", "-n", "4", "--limit", "2", "--max-new-tokens", "4", "--out", str(out), "-q",
              "--label", "random")
    assert res.returncode == 0, res.stderr
    assert "2 problems x 4 samples; pass@1 0.000" in res.stdout and read_results(out).label == "random"
    res = run("rescore", str(out), "--clusterer", "first_word_test")
    assert res.returncode == 2 and "unknown clusterer 'first_word_test'" in res.stderr  # test-only, not registered there
    res = run("rescore", str(out), "--what", "clusters", "--out", str(tmp_path / "r.jsonl"), "-q")
    assert res.returncode == 0, res.stderr
    res = run("eval", "toy-paths-random", "-n", "4", "--limit", "2", "--max-new-tokens", "4", "--out", str(out), "-q",
              "--top-p", "0.5")
    assert res.returncode == 2 and "sampling.top_p: 1.0 -> 0.5" in res.stderr
    res = run("eval", "no-such-model", "-n", "4")
    assert res.returncode == 2 and "valid bundled models" in res.stderr


@pytest.mark.slow
def test_toy_base_model_end_to_end(cache, tmp_path):
    """The warm-started toy model (built by its SFT recipe on first use): real answers, real scores."""
    from polyepo.report import build_report

    out = evaluate("toy-paths-base", out=tmp_path / "base.jsonl", n=32, limit=20, max_new_tokens=8, progress=False)
    s = summarize(out)
    assert 0.3 < s.pass_at_k[1].mean < 0.9  # sloppy, biased base model (noise 0.5 in its SFT data)
    assert s.pass_at_k[32].mean > 0.95 and s.distinct_correct.mean > 1.5 and s.majority_at_k is not None
    again = rescore(out, tmp_path / "again.jsonl", progress=False)
    a, b = s.to_dict(), summarize(again).to_dict()
    a.pop("path"), b.pop("path")
    assert a == b
    held = evaluate("toy-paths-base", "toy_paths", "heldout", out=tmp_path / "held.jsonl", n=32, limit=20,
                    max_new_tokens=8, progress=False)
    assert summarize(held).pass_at_k[1].mean < s.pass_at_k[1].mean  # the popular route is always blocked there
    md = build_report([f"test={out}"], tmp_path / "rep")
    assert (md.parent / "pass_at_k.png").is_file()


def test_documented_header_matches_the_real_one(full_run):
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    block = doc.split("## The results file")[1].split("```json")[1].split("```")[0]
    documented = json.loads(re.sub(r'"\.\.\."', '"x"', block))
    header = read_results(full_run).header
    assert set(documented) == set(header)
    for section in ("sampling", "task", "reward", "clusterer"):
        assert set(documented[section]) == set(header[section]), section


def test_evaluation_packages_import_light():
    import subprocess
    import sys

    code = ("import sys, polyepo.evaluate, polyepo.report, polyepo.cli.evaluate\n"
            "print(','.join(m for m in ('torch', 'transformers', 'trl', 'matplotlib', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


class Batched(FirstWord):
    """FirstWord through cluster_many (as judge backends are), with its own degenerate id 7."""

    name = "batched_test"
    calls: list[int] = []

    def cluster(self, prompt, responses, **context):
        res = super().cluster(prompt, responses, **context)
        res.ids = [7 if i == 100 else i for i in res.ids]
        res.extra["degenerate"] = 7
        res.degenerate = 7  # attribute of ClusterResult where backends report their own id
        return res

    def cluster_many(self, groups):
        Batched.calls.append(len(groups))
        return [self.cluster(p, r, **c) for p, r, c in groups]


def test_rescore_uses_cluster_many_and_the_backends_degenerate_id(tmp_path, test_plugins):
    path = fake_results(tmp_path / "f.jsonl", n=16, problems=40)
    Batched.calls.clear()
    new = read_results(rescore(path, tmp_path / "g.jsonl", clusterer="batched_test", rewards=False, progress=False))
    assert Batched.calls == [32, 8]  # blocks of RESCORE_BLOCK problems
    ref = read_results(rescore(path, tmp_path / "h.jsonl", clusterer="first_word_test", rewards=False, progress=False))
    assert summarize(new).distinct_correct == summarize(ref).distinct_correct  # 7 is not a strategy there
    assert summarize(new).counts["degenerate"] == summarize(ref).counts["degenerate"] > 0


class Failing(FirstWord):
    """A backend whose judge is down on every other problem: the failure policy gives zero diversity."""

    name = "failing_test"
    count = 0

    def cluster(self, prompt, responses, **context):
        Failing.count += 1
        if Failing.count % 2:
            return ClusterResult(ids=[1] * len(responses), backend=self.name, failed=True, policy="zero_diversity",
                                 error="HTTP 503")
        return super().cluster(prompt, responses, **context)


def test_clustering_failures_and_missing_rewards_are_counted_and_said(tmp_path, monkeypatch):
    monkeypatch.setitem(CLUSTERERS._items, "failing_test", Failing)
    path = fake_results(tmp_path / "f.jsonl", n=8, problems=6)
    res = read_results(rescore(path, tmp_path / "g.jsonl", clusterer="failing_test", rewards=False, progress=False))
    res.problems[0]["rewards"][0] = None
    s = summarize(res)
    assert s.counts["cluster_failures"] == 3 and s.counts["reward_none"] == 1
    assert any("clustering failed on 3 problems (policy: zero_diversity)" in n for n in s.notes)
    assert any("1 samples have no reward" in n for n in s.notes)
    assert res.problems[0]["cluster_info"]["error"] == "HTTP 503"


def test_run_directory_model_labels_and_default_output(cache, tmp_path):
    """What `polyepo compare` does: evaluate a training run directory, then report on it."""
    from polyepo.models import resolve_model
    from polyepo.report import build_report

    run = tmp_path / "poly_epo-s3"
    shutil.copytree(resolve_model("toy-paths-random"), run / "final")
    (run / "run.yaml").write_text("model: toy-paths-random\ntask: toy_paths\ntrainer:\n  estimator: poly_epo\n  seed: 3\n")
    (run / "log.jsonl").write_text('{"step": 1, "reward": 0.1, "polyepo/clusters_distinct_correct": 0.5}\n'
                                   '{"step": 2, "reward": 0.2}\n')
    with pytest.raises(ValueError, match=r"evaluated on splits test, heldout .*run.yaml.*: give one split"):
        evaluate(run, **{**SMALL, "n": 4, "batch_size": 4})
    out = evaluate(run, split="test", **{**SMALL, "n": 4, "batch_size": 4})
    assert out == run.resolve() / "eval" / "toy_paths-test-n4-s0.jsonl"
    res = read_results(out)
    assert res.label == "poly_epo" and res.header["model_info"]["run"]["seed"] == 3
    assert res.header["model_info"]["path"] == str((run / "final").resolve())
    md = build_report([run], tmp_path / "rep")
    text = md.read_text()
    assert "| poly_epo | seed 3 |" in text and "training.png" in text

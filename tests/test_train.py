"""PolyEPOTrainer on a tiny real model: it trains, logs, resumes, and differs from GRPO only in advantages."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from polyepo.advantages import poly_epo_advantages  # noqa: E402
from polyepo.rewards import make_reward  # noqa: E402
from polyepo.tasks import load_task  # noqa: E402
from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer, check_trl_compatibility  # noqa: E402
from polyepo.workflow.config import ConfigError, load_run_config  # noqa: E402
from polyepo.workflow.run import prepare  # noqa: E402

COMMON = dict(use_cpu=True, bf16=False, per_device_train_batch_size=16, num_generations=8, max_completion_length=6,
              learning_rate=1e-3, report_to=[], save_strategy="no", temperature=1.0, top_k=0, disable_tqdm=True,
              logging_steps=1, seed=0)


def toy_dataset(n=64):
    return Dataset.from_list(load_task("toy_paths").rows("train", n))


def make_trainer(model_dir, tmp_path, **overrides):
    args = PolyEPOConfig(output_dir=str(tmp_path), clusterer="toy_paths", clusterer_options={"width": 3},
                         **{**COMMON, **overrides})
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    return PolyEPOTrainer(model=model, reward_funcs=[make_reward("toy_paths")], args=args,
                          train_dataset=toy_dataset(), processing_class=tok)


def weights(model):
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_poly_epo_trains_and_logs(toy_base, tmp_path):
    trainer = make_trainer(toy_base, tmp_path, max_steps=3)
    before = weights(trainer.model)
    trainer.train()
    after = weights(trainer.model)
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    step_logs = [row for row in logs if "reward" in row]
    assert [row["step"] for row in step_logs] == [1, 2, 3]
    for row in step_logs:
        assert np.isfinite(row["loss"])
        assert 0 <= row["polyepo/clusters_distinct_correct"] <= row["polyepo/clusters_distinct"] <= 8
        assert row["polyepo/cluster_failures"] == 0
        assert abs(row["polyepo/advantage_mean"]) < 1e-9


def test_advantages_are_the_estimator_over_logged_groups(toy_base, tmp_path):
    trainer = make_trainer(toy_base, tmp_path, max_steps=1)
    trainer.train()
    rewards = np.array(trainer._logs["rewards"]["toy_paths"])
    clusters = np.array(trainer._logs["extra"]["cluster"])
    adv = np.array(trainer._logs["advantages"])
    assert rewards.shape == clusters.shape == adv.shape == (16,)
    for s in (0, 8):
        np.testing.assert_allclose(adv[s:s + 8], poly_epo_advantages(rewards[s:s + 8], clusters[s:s + 8], 4))


def test_dr_grpo_matches_plain_trl_exactly(toy_base, tmp_path):
    """estimator=dr_grpo reproduces TRL's own GRPO (no std scaling) bit for bit: same samples,
    same loss, same update. So a poly_epo run differs from the baseline in the advantage only."""
    ours = make_trainer(toy_base, tmp_path / "ours", max_steps=2, estimator="dr_grpo")
    ours.train()
    plain_args = GRPOConfig(output_dir=str(tmp_path / "plain"), loss_type="dr_grpo", scale_rewards="none",
                            epsilon_high=0.28, max_steps=2, **COMMON)
    plain = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(toy_base), reward_funcs=[make_reward("toy_paths")],
                        args=plain_args, train_dataset=toy_dataset(), processing_class=AutoTokenizer.from_pretrained(toy_base))
    plain.train()
    assert list(ours._logs["completion"]) == list(plain._logs["completion"])
    np.testing.assert_allclose(list(ours._logs["advantages"]), list(plain._logs["advantages"]), atol=1e-6)
    assert torch.allclose(weights(ours.model), weights(plain.model), atol=1e-6)


def test_poly_epo_sees_the_same_first_samples_as_grpo(toy_base, tmp_path):
    runs = {}
    for est in ("dr_grpo", "poly_epo"):
        t = make_trainer(toy_base, tmp_path / est, max_steps=1, estimator=est)
        t.train()
        runs[est] = t
    assert list(runs["dr_grpo"]._logs["completion"]) == list(runs["poly_epo"]._logs["completion"])
    assert list(runs["dr_grpo"]._logs["rewards"]["toy_paths"]) == list(runs["poly_epo"]._logs["rewards"]["toy_paths"])
    assert list(runs["dr_grpo"]._logs["advantages"]) != list(runs["poly_epo"]._logs["advantages"])


def test_resume_continues_the_step_count(toy_base, tmp_path):
    first = make_trainer(toy_base, tmp_path, max_steps=3, save_strategy="steps", save_steps=2)
    first.train()
    shutil.rmtree(tmp_path / "checkpoint-3")  # as if stopped after logging step 3, before saving it
    assert (tmp_path / "checkpoint-2").is_dir()
    second = make_trainer(toy_base, tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert second.state.global_step == 4
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logs if "reward" in row] == [1, 2, 3, 4]  # step 3 once: the rerun's
    assert [row["step"] for row in logs if "train_runtime" in row] == [4]


def test_trl_compatibility_check_fails_loudly(monkeypatch):
    check_trl_compatibility()
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, inputs, prompts: None)
    with pytest.raises(RuntimeError, match="changed the private API"):
        check_trl_compatibility()


def test_missing_reward_capture_fails_loudly(toy_base, tmp_path, monkeypatch):
    trainer = make_trainer(toy_base, tmp_path, max_steps=1)
    monkeypatch.setattr(PolyEPOTrainer, "_calculate_rewards", GRPOTrainer._calculate_rewards)
    with pytest.raises(RuntimeError, match="did not see the rewards"):
        trainer.train()


# --- configuration errors, before any training ------------------------------------------


def write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, overrides, match",
    [
        ("modle: toy-paths-base\n", [], r"unknown config key 'modle' \(did you mean 'model'\?\)"),
        ("trainer: {learning_rte: 1e-3}\n", [], r"unknown trainer key 'learning_rte' \(did you mean 'learning_rate'\?\)"),
        ("trainer: {estimator: polyepo}\n", [], "valid estimators: darling, dr_grpo"),
        ("trainer: {set_size: 9, num_generations: 8}\n", [], "set_size=9 exceeds num_generations=8"),
        ("trainer: {learning_rate: fast}\n", [], "trainer.learning_rate: expected"),
        ("task: nope\n", [], "valid tasks: .*toy_paths"),
        ("train_split: validation\n", [], "valid splits: train, test, heldout"),
        ("clusterer: nope\n", [], "valid clusterers"),
        ("task_options: {width: 9}\n", [], "width must be in"),
        ("", ["trainer.max_steps"], "must look like key=value"),
        ("trainer: {estimator: poly_epo}\nclusterer: none\n", [], "needs strategy clusters"),
    ],
)
def test_bad_configs_fail_before_training(tmp_path, text, overrides, match):
    with pytest.raises(ConfigError, match=match):
        prepare(load_run_config(write(tmp_path, text), overrides))


def test_yaml_scalars_are_coerced(tmp_path):
    cfg = load_run_config(write(tmp_path, "trainer: {learning_rate: 1e-3, max_steps: 5}\n"), ["trainer.beta=0"])
    assert cfg.trainer == {"learning_rate": 1e-3, "max_steps": 5, "beta": 0.0}
    assert isinstance(cfg.trainer["beta"], float)


def test_cli_bad_key_exits_2_with_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "polyepo", "train", "--config", str(write(tmp_path, "trainer: {lr: 1}\n"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown trainer key 'lr'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_cli_train_and_resume_end_to_end(toy_base, tmp_path):
    cfg = write(tmp_path, f"model: {toy_base}\noutput_dir: {tmp_path}/run-{{estimator}}\n"
                          "trainer: {max_steps: 2, save_steps: 2, per_device_train_batch_size: 16, logging_steps: 1}\n")
    cmd = [sys.executable, "-m", "polyepo", "train", "--config", str(cfg)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "run-poly_epo"
    assert (run / "final" / "config.json").is_file() and (run / "run.yaml").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run([*cmd, "--resume", "trainer.max_steps=3"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 3


@pytest.mark.slow
def test_two_processes_gather_complete_groups(toy_base, tmp_path):
    """Two CPU processes (torchrun, gloo): each process holds half of every group; the
    advantages each process trains on are its slice of the estimator over whole groups."""
    script = Path(__file__).parent / "helpers" / "two_process_train.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(script), str(toy_base), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    rewards = np.array(ranks[0]["global_rewards"])
    clusters = np.array(ranks[0]["global_clusters"])
    assert ranks[1]["global_clusters"] == ranks[0]["global_clusters"]  # clustered once, broadcast
    assert rewards.shape == (8,)  # one group of 8, four completions on each process
    expected = poly_epo_advantages(rewards, clusters, 4)
    local = np.concatenate([ranks[0]["local_advantages"], ranks[1]["local_advantages"]])
    np.testing.assert_allclose(local, expected, atol=1e-6)
    assert ranks[0]["local_size"] == ranks[1]["local_size"] == 4


@pytest.mark.slow
def test_two_processes_keep_one_answer_history(toy_base, tmp_path):
    """The historical outcome_explore on two processes: each keeps an equal history fed the global
    batch, the main process saves it in each checkpoint, and on resume both processes restore it."""
    from polyepo.advantages import AnswerHistory, compute_advantages

    script = Path(__file__).parent / "helpers" / "two_process_train.py"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    for extra in (["historical"], ["historical", "resume"]):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
               str(script), str(toy_base), str(tmp_path), *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    whole = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    resumed = [json.loads((tmp_path / f"rank{r}-resumed.json").read_text()) for r in (0, 1)]
    reference = AnswerHistory()
    for k, step in enumerate(whole[0]["steps"]):
        assert len(set(step["prompt_keys"])) == 1 and whole[1]["steps"][k]["prompt_keys"] == step["prompt_keys"]
        want = compute_advantages(step["global_rewards"], step["global_clusters"], group_sizes=8, estimator="outcome_explore",
                                  prompt_keys=step["prompt_keys"], history=reference, variant="historical", coef=1.0)
        local = whole[0]["steps"][k]["local_advantages"] + whole[1]["steps"][k]["local_advantages"]
        np.testing.assert_allclose(local, want, atol=1e-6)
        if k == 0:
            after_first = reference.state_dict()
    assert whole[0]["history"] == whole[1]["history"] == reference.state_dict() and reference.groups == 2
    saved = AnswerHistory.load(tmp_path / "run" / "checkpoint-1" / "answer_history.json").state_dict()
    assert saved == after_first
    for rank in resumed:  # both processes restored step 1's counts, then trained step 2 as before
        assert rank["restored"] == after_first and rank["history"] == whole[0]["history"]
    np.testing.assert_allclose(resumed[0]["steps"][0]["local_advantages"] + resumed[1]["steps"][0]["local_advantages"],
                               whole[0]["steps"][1]["local_advantages"] + whole[1]["steps"][1]["local_advantages"])


@pytest.mark.parametrize("name", ["toy.yaml", "smollm2-arithmetic.yaml", "smollm2-humaneval.yaml", "qwen3-4b-leetcode.yaml"])
def test_example_configs_are_valid(name):
    path = Path(__file__).resolve().parents[1] / "examples" / name
    cfg = load_run_config(path)
    if name.startswith("qwen3"):  # needs the user's JSONL data and a GPU: check the keys and values only
        assert cfg.trainer["use_vllm"] is True and cfg.trainer["learning_rate"] == 1e-6
        with pytest.raises(ConfigError, match="does not exist"):
            prepare(cfg)
        return
    prep = prepare(cfg)
    assert prep.rows and prep.trainer_kwargs["estimator"] == "poly_epo"


def test_compare_checks_every_run_before_training(tmp_path):
    from polyepo.workflow.compare import plan_runs
    from polyepo.workflow.compare_eval import eval_settings

    base = load_run_config(write(tmp_path, "output_dir: runs/x\n"))
    with pytest.raises(ConfigError, match=r"must contain {label} \(or {estimator}\) and {seed}"):
        plan_runs(base, ["dr_grpo"], [0])
    base = load_run_config(write(tmp_path, "output_dir: runs/{estimator}-{seed}\n"))
    with pytest.raises(ConfigError, match="valid estimators"):
        plan_runs(base, ["dr_grpo", "polyepo"], [0])
    runs = plan_runs(base, ["dr_grpo", "poly_epo"], [0, 1])
    assert [(r.trainer["estimator"], r.trainer["seed"]) for r in runs] == [("dr_grpo", 0), ("dr_grpo", 1), ("poly_epo", 0), ("poly_epo", 1)]
    assert len({str(r.resolved_output_dir()) for r in runs}) == 4
    assert eval_settings(base)["splits"] == ["test", "heldout"]
    with pytest.raises(ConfigError, match="unknown eval key"):
        eval_settings(load_run_config(write(tmp_path, "eval: {nn: 3}\n")))
    with pytest.raises(ConfigError, match="valid splits: train, test, heldout"):
        eval_settings(load_run_config(write(tmp_path, "eval: {splits: [dev]}\n")))


@pytest.mark.slow
def test_compare_end_to_end_builds_a_report(toy_base, tmp_path):
    cfg = write(tmp_path, f"model: {toy_base}\noutput_dir: {tmp_path}/runs/{{estimator}}-seed{{seed}}\n"
                          "trainer: {max_steps: 2, per_device_train_batch_size: 16, save_steps: 2}\n"
                          "eval: {splits: [heldout], n: 4, limit: 6}\n")
    out = subprocess.run([sys.executable, "-m", "polyepo", "compare", "--config", str(cfg), "--estimators",
                          "dr_grpo,poly_epo", "--seeds", "0"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    report = tmp_path / "runs" / "report" / "heldout"
    text = (report / "report.md").read_text()
    for label in ("base", "dr_grpo", "poly_epo"):
        assert label in text
    assert (report / "pass_at_k.png").is_file() and (report / "training.png").is_file()
    again = subprocess.run([sys.executable, "-m", "polyepo", "compare", "--config", str(cfg), "--estimators",
                            "dr_grpo,poly_epo", "--seeds", "0"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stderr.count("done already") == 2


# --- the group step: TRL's path gives exactly what polyepo.groups gives ----------------------

from parity_cases import (  # noqa: E402
    DR_GRPO_ADVANTAGES,
    DR_GRPO_METRICS,
    ESTIMATORS,
    REWARDS,
    results,
    without_timing,
)
from polyepo.clustering import ClusterResult  # noqa: E402
from polyepo.groups import group_step  # noqa: E402

SHARED = ("set_size", "reduction", "min_distinct", "degenerate")


@pytest.mark.parametrize("name, options", ESTIMATORS)
def test_trl_path_equals_the_group_step_on_the_parity_batch(toy_base, tmp_path, name, options):
    fields = {k: v for k, v in options.items() if k in SHARED}
    rest = {k: v for k, v in options.items() if k not in SHARED}
    trainer = make_trainer(toy_base, tmp_path, estimator=name, estimator_options=rest, **fields)
    rpf = torch.tensor([[math.nan if r is None else float(r)] for r in REWARDS])  # as TRL gathers them
    got = trainer.group_step(rpf, results(), 4)
    want = group_step(REWARDS, [i // 4 for i in range(len(REWARDS))], results(), estimator=name,
                      estimator_options=options)
    np.testing.assert_array_equal(got.advantages, want.advantages)
    assert without_timing(got.metrics) == without_timing(want.metrics)
    if name == "dr_grpo":
        np.testing.assert_allclose(got.advantages, DR_GRPO_ADVANTAGES, atol=1e-12)
        assert without_timing(got.metrics) == pytest.approx(DR_GRPO_METRICS, abs=1e-12)


class FlakyToyClusterer:
    """The toy task's exact clusterer, whose 'judge' fails on every other group it is shown:
    those groups get the reward_only policy, as a judge with on_failure=reward_only would."""

    name = "flaky_toy"

    def __init__(self):
        from polyepo.clustering import make_clusterer

        self.inner = make_clusterer("toy_paths", width=3)
        self.results: list[ClusterResult] = []

    def cluster(self, prompt, responses, **context):
        res = self.inner.cluster(prompt, responses, **context)
        if len(self.results) % 2:
            res = ClusterResult([100] * len(responses), "judge", failed=True, policy="reward_only", error="down")
        self.results.append(res)
        return res


def test_a_real_step_with_unscorable_rollouts_and_failed_groups(toy_base, tmp_path):
    """A real TRL step where the reward declines malformed answers (None) and half the groups'
    clustering fails: the trained advantages and logged metrics are the group step's."""
    toy = make_reward("toy_paths")

    def strict(prompts, completions, **columns):
        from polyepo.tasks.toy_paths import parse_route

        scores = toy(prompts, completions, **columns)
        return [None if parse_route(c, 3) is None else s for c, s in zip(completions, scores)]

    args = PolyEPOConfig(output_dir=str(tmp_path), max_steps=1, max_failed_group_fraction=1.0, clusterer="toy_paths",
                         **{**COMMON, "temperature": 3.0})  # hot sampling: malformed answers appear
    clusterer = FlakyToyClusterer()
    trainer = PolyEPOTrainer(model=AutoModelForCausalLM.from_pretrained(toy_base), reward_funcs=[strict], args=args,
                             train_dataset=toy_dataset(), processing_class=AutoTokenizer.from_pretrained(toy_base),
                             clusterer=clusterer)
    trainer.train()
    rewards = [None if math.isnan(r) else r for r in trainer._logs["rewards"]["strict"]]
    assert any(r is None for r in rewards), "no unscorable rollout drawn: raise the temperature"
    want = group_step(rewards, [i // 8 for i in range(len(rewards))], clusterer.results, estimator="poly_epo")
    np.testing.assert_allclose(trainer._logs["advantages"], want.advantages, atol=1e-6)
    assert without_timing(trainer.last_step_metrics) == without_timing(want.metrics)
    assert trainer.last_step_metrics["polyepo/cluster_reward_only"] == 1
    assert trainer.last_step_metrics["polyepo/unscorable"] == sum(r is None for r in rewards)


def test_options_trl_cannot_honour_are_rejected():
    base = {**COMMON, "estimator": "dr_grpo"}
    with pytest.raises(ValueError, match="scale_rewards='batch' is not supported.*estimator=grpo"):
        PolyEPOConfig(output_dir="x", scale_rewards="batch", **base)
    with pytest.raises(ValueError, match="multi_objective_aggregation='normalize_then_sum' is not supported"):
        PolyEPOConfig(output_dir="x", multi_objective_aggregation="normalize_then_sum", **base)
    with pytest.raises(ValueError, match="unscorable must be one of drop, zero, raise"):
        PolyEPOConfig(output_dir="x", unscorable="skip", **base)
    args = PolyEPOConfig(output_dir="x", **base)
    assert (args.set_size, args.reduction, args.min_distinct, args.degenerate) == (4, "sum", 2, [0, 100])
    assert (args.unscorable, args.singletons, args.correct_threshold) == ("drop", "zero", 1.0)


def test_a_missing_package_fails_before_training_naming_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a))
    with pytest.raises(ConfigError, match="reward function 'math_answer' needs the package.*math-verify"):
        prepare(load_run_config(write(tmp_path, "reward: math_answer\n")))


def test_tiny_models_train_with_one_thread(toy_base):
    from polyepo.workflow.run import tiny_model_threads

    torch.set_num_threads(2)
    with tiny_model_threads(AutoModelForCausalLM.from_pretrained(toy_base)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    big = torch.nn.Linear(5000, 5000)  # 25 M parameters
    with tiny_model_threads(big):
        assert torch.get_num_threads() == 2

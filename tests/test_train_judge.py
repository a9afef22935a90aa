"""The TRL trainer with a judge: clustering beside the rewards, a stop with a checkpoint when the
judge stays down (on every process), ddp_timeout above the judge's wait, and groups.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from polyepo.advantages import compute_advantages  # noqa: E402
from polyepo.clustering import make_clusterer  # noqa: E402
from polyepo.io import read_jsonl  # noqa: E402
from polyepo.judge import JudgeUnavailableError  # noqa: E402
from polyepo.rewards import make_reward  # noqa: E402
from polyepo.standin import ChatServer, Outage  # noqa: E402
from polyepo.standin.judge import StandInJudge  # noqa: E402
from polyepo.tasks import load_task  # noqa: E402
from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer  # noqa: E402
from polyepo.train.trl.clusters import DDP_WAIT_MARGIN_S  # noqa: E402

COMMON = dict(use_cpu=True, bf16=False, per_device_train_batch_size=32, num_generations=8, max_completion_length=6,
              learning_rate=1e-3, report_to=[], temperature=1.0, top_k=0, disable_tqdm=True, logging_steps=1, seed=0)


def toy_judge() -> StandInJudge:
    """The stand-in judge answering with the toy task's routes."""
    return StandInJudge(clusterer="toy_paths", clusterer_options={"width": 3})


def judge_options(server: ChatServer, **overrides) -> dict:
    return {"model": "standin", "base_url": server.base_url, "prompt": "code", "cache_path": None, "max_retries": 1,
            "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "breaker_after": 0, "status_interval_s": 0.5,
            "timeout_s": 5.0, **overrides}


def trainer_for(model_dir, out, *, reward=None, built=None, **args):
    """A toy trainer; ``built``: a clusterer object instead of ``args.clusterer``'s."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return PolyEPOTrainer(model=model, processing_class=AutoTokenizer.from_pretrained(model_dir),
                          reward_funcs=[reward or make_reward("toy_paths")], clusterer=built,
                          train_dataset=Dataset.from_list(load_task("toy_paths").rows("train", 64)),
                          args=PolyEPOConfig(output_dir=str(out), **{**COMMON, **args}))


class Timed:
    """A clusterer (the toy routes) that records when each call ran."""

    name = "timed"

    def __init__(self) -> None:
        self.inner = make_clusterer("toy_paths", width=3)
        self.ran: list[tuple[float, float]] = []

    def cluster(self, prompt, responses, **context):
        start = time.perf_counter()
        time.sleep(0.3)
        out = self.inner.cluster(prompt, responses, **context)
        self.ran.append((start, time.perf_counter()))
        return out


def slow_reward(ran: list):
    base = make_reward("toy_paths")

    def reward(prompts, completions, **kwargs):
        start = time.perf_counter()
        out = base(prompts, completions, **kwargs)
        time.sleep(0.6)
        ran.append((start, time.perf_counter()))
        return out

    return reward


@pytest.mark.parametrize("overlap", [True, False])
def test_clustering_runs_while_the_reward_functions_run(toy_base, tmp_path, overlap):
    rewards: list = []
    clusterer = Timed()
    trainer = trainer_for(toy_base, tmp_path, reward=slow_reward(rewards), built=clusterer, max_steps=1,
                          save_strategy="no", clusterer="toy_paths", per_device_train_batch_size=16, overlap_clustering=overlap)
    trainer.train()
    (r0, r1), = rewards
    c0, c1 = min(s for s, _ in clusterer.ran), max(e for _, e in clusterer.ran)
    if overlap:  # 2 groups x 0.3 s of clustering inside the reward's 0.6 s
        assert c0 < r1 and c1 <= r1 + 0.05, (r0, r1, c0, c1)
        assert trainer.last_step_metrics["polyepo/time_cluster_wait_s"] < 0.1
    else:  # after it
        assert c0 >= r1, (r0, r1, c0, c1)
        assert trainer.last_step_metrics["polyepo/time_cluster_wait_s"] >= 0.55
    assert trainer.last_step_metrics["polyepo/time_cluster_s"] >= 0.55


def test_ddp_timeout_covers_the_judges_wait():
    base = dict(output_dir="/tmp/unused", use_cpu=True, report_to=[], clusterer="judge")
    assert PolyEPOConfig(**base, clusterer_options={"max_wait_s": 3600}).ddp_timeout == 3600 + DDP_WAIT_MARGIN_S
    assert PolyEPOConfig(**base).ddp_timeout == 1800  # default max_wait_s 1500 + 300
    assert PolyEPOConfig(**base, clusterer_options={"on_failure": "reward_only", "max_wait_s": 9999}).ddp_timeout == 1800
    assert PolyEPOConfig(**base, clusterer_options={"max_wait_s": 3600}, ddp_timeout=7200).ddp_timeout == 7200
    with pytest.raises(ValueError, match=r"ddp_timeout=1000 s is too short .* max_wait_s=3600 s.*ddp_timeout >= 3900"):
        PolyEPOConfig(**base, clusterer_options={"max_wait_s": 3600}, ddp_timeout=1000)
    with pytest.raises(ValueError, match="on_failure must be one of"):
        PolyEPOConfig(**base, clusterer_options={"on_failure": "wiat"})


def test_polyepo_train_counts_a_rewards_judge_in_ddp_timeout(chat_server, tmp_path):
    from polyepo.standin import fast_options
    from polyepo.workflow.config import ConfigError, load_run_config
    from polyepo.workflow.run import prepare

    example = Path(__file__).resolve().parents[1] / "examples" / "smollm2-rubric-math.yaml"
    options = {**fast_options(chat_server), "rubric_dir": str(tmp_path), "max_wait_s": 4000}
    cfg = load_run_config(example, [f"reward_options={json.dumps(options)}", f"output_dir={tmp_path / 'run'}"])
    assert prepare(cfg).trainer_kwargs["ddp_timeout"] == 4000 + DDP_WAIT_MARGIN_S
    short = load_run_config(example, [f"reward_options={json.dumps(options)}", "trainer.ddp_timeout=600"])
    with pytest.raises(ConfigError, match=r"trainer: ddp_timeout=600 s is too short .* max_wait_s=4000 s"):
        prepare(short)


def test_a_judge_down_past_max_wait_stops_with_a_checkpoint_then_resumes(toy_base, tmp_path, caplog):
    """The judge answers two steps, then stays down: the run saves checkpoint-2 (save_steps
    would have waited for step 5), stops naming it, and resumes from it once the judge is back."""
    down = Outage(toy_judge(), after=2 * 4, seconds=600)  # 4 groups per step
    with ChatServer(down, keep_requests=False) as server:
        trainer = trainer_for(toy_base, tmp_path, clusterer="judge", max_steps=4, save_steps=5, log_groups=True,
                              clusterer_options=judge_options(server, max_wait_s=1.5))
        with pytest.raises(JudgeUnavailableError) as info:
            trainer.train()
    ckpt = tmp_path / "checkpoint-2"
    assert info.value.checkpoint == str(ckpt) and (ckpt / "optimizer.pt").is_file()
    message = str(info.value)
    assert "has not answered for" in message and f"checkpoint {ckpt} holds it" in message and "--resume" in message
    assert "judge unavailable for" in caplog.text  # the status line (stderr: tests/test_judge_outage_training.py)
    assert [g["step"] for g in read_jsonl(tmp_path / "groups.jsonl")] == [0] * 4 + [1] * 4
    with ChatServer(toy_judge(), keep_requests=False) as server:
        again = trainer_for(toy_base, tmp_path, clusterer="judge", max_steps=4, save_steps=5, log_groups=True,
                            clusterer_options=judge_options(server))
        again.train(resume_from_checkpoint=str(ckpt))
    assert again.state.global_step == 4
    groups = read_jsonl(tmp_path / "groups.jsonl")
    assert [g["step"] for g in groups] == [s for s in range(4) for _ in range(4)]  # every step once
    for g in groups:  # each line is the group as trained: poly_epo on its logged rewards and clusters
        want = compute_advantages(np.array(g["rewards"]), np.array(g["clusters"]), group_sizes=8,
                                  estimator="poly_epo", set_size=4, reduction="sum", min_distinct=2)
        np.testing.assert_allclose(g["advantages"], want, atol=1e-5)
        assert not g["failed"] and len(g["responses"]) == 8


def test_no_checkpoint_is_written_without_save_strategy(toy_base, tmp_path):
    with ChatServer(Outage(toy_judge(), after=4, seconds=600), keep_requests=False) as server:
        trainer = trainer_for(toy_base, tmp_path, clusterer="judge", max_steps=3, save_strategy="no",
                              clusterer_options=judge_options(server, max_wait_s=1.0))
        with pytest.raises(JudgeUnavailableError, match=r"no checkpoint was written \(save_strategy='no'\)") as info:
            trainer.train()
    assert info.value.checkpoint is None and not list(tmp_path.glob("checkpoint-*"))


@pytest.mark.slow
def test_two_processes_stop_together_when_the_judge_stays_down(toy_base, tmp_path):
    """Rank 0 waits for the judge, rank 1 waits for rank 0 in a collective: past max_wait_s both
    raise JudgeUnavailableError (none is left waiting for ddp_timeout) and one checkpoint is saved."""
    script = Path(__file__).parent / "helpers" / "two_process_judge_stop.py"
    with ChatServer(Outage(toy_judge(), after=2, seconds=600), keep_requests=False) as server:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537",
               str(script), str(toy_base), str(tmp_path), server.base_url]
        start = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        took = time.monotonic() - start
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["error"] for r in ranks] == ["JudgeUnavailableError"] * 2, out.stderr[-3000:]
    assert ranks[0]["checkpoint"] == ranks[1]["checkpoint"] == str(tmp_path / "run" / "checkpoint-1")
    assert (tmp_path / "run" / "checkpoint-1" / "model.safetensors").is_file()
    assert "has not answered" in ranks[1]["message"] and took < 300


def test_a_waiting_step_trains_on_the_judges_clusters(toy_base, tmp_path, caplog):
    """A short outage under wait: the step pauses, logs its status line, and trains on the judge's clusters."""
    outage = Outage(toy_judge(), after=4, seconds=1.5)
    with ChatServer(outage, keep_requests=False) as server:
        trainer = trainer_for(toy_base, tmp_path, clusterer="judge", max_steps=2, save_strategy="no",
                              clusterer_options=judge_options(server, status_interval_s=0.3))
        trainer.train()
    assert outage.refused > 0 and "judge unavailable for" in caplog.text and "judge answering again after" in caplog.text
    assert trainer.last_step_metrics["polyepo/cluster_failures"] == 0
    assert trainer.last_step_metrics["polyepo/time_cluster_s"] >= 1.0

#!/usr/bin/env bash
# GPU recipe: seed 002's setup on verl 0.9 (docs/verl.md, "Recipes").
#   Qwen3-4B-Base; leetcode2k rows filtered to base pass rates 1..12 of 16; N = 8 rollouts per
#   prompt, sets of n = 4 (all C(8,4) = 70 sets, in closed form); 32 prompts per step, fully
#   on-policy (one mini-batch per step, so no clipping is active); lr 1e-6; temperature 1.0;
#   250 steps; no KL; Dr.GRPO loss normalisation (token sum / max response length, no std).
#   GRPO and Poly-EPO differ in ESTIMATOR only (hyperparameter-matched); the clusterer also
#   runs in the GRPO run so that both log the same diversity metrics (CLUSTER=0 skips it there).
#   A judge outage pauses the run (on_failure=wait: a status line, no gradient lost); past 2 h
#   (max_wait_s) it stops, and the same command resumes from the newest checkpoint.
#
# Usage (in the verl environment, on a GPU machine):
#   ESTIMATOR=poly_epo bash examples/verl/seed002_leetcode.sh [more hydra overrides]
#   ESTIMATOR=dr_grpo  bash examples/verl/seed002_leetcode.sh
#   PRINT_OVERRIDES=1 bash examples/verl/seed002_leetcode.sh   # print the overrides, run nothing
# Data: DATA/train.parquet and DATA/val.parquet from `python -m polyepo.train.verl.data`.
set -euo pipefail
ESTIMATOR=${ESTIMATOR:-poly_epo}          # poly_epo | dr_grpo (GRPO as in seed 002: r - mean r)
MODEL=${MODEL:-Qwen/Qwen3-4B-Base}
DATA=${DATA:-$HOME/data/polyepo/leetcode2k}
NGPUS=${NGPUS:-1}                         # seed 002: one H200
NNODES=${NNODES:-1}
REWARD=${REWARD:-code_tests}              # a name in polyepo.rewards.REWARDS
CLUSTERER=${CLUSTERER:-judge}             # a name in polyepo.clustering.CLUSTERERS
JUDGE_MODEL=${JUDGE_MODEL:-gpt-4.1-mini}  # seed 002's judge
CLUSTER=${CLUSTER:-1}
MAX_PROMPT=${MAX_PROMPT:-1024}            # not given in seed 002: adjust to your data
MAX_RESPONSE=${MAX_RESPONSE:-2048}        # not given in seed 002

ARGS=(
  algorithm.adv_estimator="$ESTIMATOR"
  "algorithm.polyepo.estimator_options={set_size:4}"
  data.train_files="$DATA/train.parquet"
  data.val_files="$DATA/val.parquet"
  data.train_batch_size=32
  data.max_prompt_length="$MAX_PROMPT"
  data.max_response_length="$MAX_RESPONSE"
  data.filter_overlong_prompts=true
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size=32
  actor_rollout_ref.actor.ppo_epochs=1
  actor_rollout_ref.actor.use_kl_loss=false
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
  actor_rollout_ref.actor.loss_scale_factor="$MAX_RESPONSE"
  actor_rollout_ref.actor.use_dynamic_bsz=true
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n=8
  actor_rollout_ref.rollout.temperature=1.0
  actor_rollout_ref.rollout.val_kwargs.temperature=0
  actor_rollout_ref.rollout.val_kwargs.do_sample=false
  actor_rollout_ref.rollout.gpu_memory_utilization=0.5
  algorithm.use_kl_in_reward=false
  reward.custom_reward_function.reward_kwargs.reward="$REWARD"
  trainer.total_training_steps=250
  trainer.test_freq=25
  trainer.save_freq=50
  trainer.max_actor_ckpt_to_keep=2
  trainer.n_gpus_per_node="$NGPUS"
  trainer.nnodes="$NNODES"
  trainer.project_name=polyepo
  trainer.experiment_name="seed002-leetcode-$ESTIMATOR"
  'trainer.logger=[console,tensorboard]'
)
if [ "$CLUSTER" = 1 ] || [ "$ESTIMATOR" = poly_epo ]; then
  ARGS+=(
    algorithm.polyepo.clusterer="$CLUSTERER"
    "algorithm.polyepo.clusterer_options={prompt:code,model:$JUDGE_MODEL,on_failure:wait,max_wait_s:7200,on_group_failure:'fallback:python_ast'}"
  )
fi
if [ "${PRINT_OVERRIDES:-0}" = 1 ]; then printf '%s\n' "${ARGS[@]}" "$@"; exit 0; fi
exec python -m polyepo.train.verl "${ARGS[@]}" "$@"

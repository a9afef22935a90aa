#!/usr/bin/env bash
# GPU recipe: the Poly-EPO paper's math setup on verl 0.9 (docs/verl.md, "Recipes").
#   Qwen3-4B-Base; 128 prompts per step; N = 8 rollouts, sets of n = 4; lr 1e-6; temperature 1.0;
#   no KL; PPO clip 0.2 / 0.28; Dr.GRPO loss normalisation; 850 steps; 4 GPUs.
#   Poly-EPO with the paper authors' released variant (MEAN over the sets containing a rollout,
#   no |U| > 1 gate, only id 100 degenerate). Baselines, hyperparameter-matched:
#   ESTIMATOR=dr_grpo (GRPO: A = r - mean r) and ESTIMATOR=grpo_div (GRPO+DIV).
#   A judge outage pauses the run (on_failure=wait: a status line, no gradient lost); past 2 h
#   (max_wait_s) it stops, and the same command resumes from the newest checkpoint.
#
# Usage (in the verl environment, on GPU machines):
#   ESTIMATOR=poly_epo bash examples/verl/paper_math.sh [more hydra overrides]
#   PRINT_OVERRIDES=1 bash examples/verl/paper_math.sh   # print the overrides, run nothing
# Data: DATA/train.parquet and DATA/val.parquet from
#   python -m polyepo.train.verl.data --jsonl math.jsonl --ability math --out DATA/train.parquet
set -euo pipefail
ESTIMATOR=${ESTIMATOR:-poly_epo}          # poly_epo | dr_grpo | grpo_div
MODEL=${MODEL:-Qwen/Qwen3-4B-Base}
DATA=${DATA:-$HOME/data/polyepo/math}
NGPUS=${NGPUS:-4}
NNODES=${NNODES:-1}
REWARD=${REWARD:-math_answer}             # a name in polyepo.rewards.REWARDS
CLUSTERER=${CLUSTERER:-judge}             # a name in polyepo.clustering.CLUSTERERS
JUDGE_MODEL=${JUDGE_MODEL:-gpt-4.1-mini}
MINI_BATCH=${MINI_BATCH:-32}              # not given by the paper: 4 updates per step, so the clip bites
MAX_PROMPT=${MAX_PROMPT:-1024}            # not given by the paper
MAX_RESPONSE=${MAX_RESPONSE:-4096}        # not given by the paper

case "$ESTIMATOR" in
  poly_epo) OPTIONS="{set_size:4,reduction:mean,min_distinct:1,degenerate:[100]}" ;;
  grpo_div) OPTIONS="{degenerate:[100]}" ;;
  *) OPTIONS="{}" ;;
esac
ARGS=(
  algorithm.adv_estimator="$ESTIMATOR"
  "algorithm.polyepo.estimator_options=$OPTIONS"
  data.train_files="$DATA/train.parquet"
  data.val_files="$DATA/val.parquet"
  data.train_batch_size=128
  data.max_prompt_length="$MAX_PROMPT"
  data.max_response_length="$MAX_RESPONSE"
  data.filter_overlong_prompts=true
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size="$MINI_BATCH"
  actor_rollout_ref.actor.clip_ratio_low=0.2
  actor_rollout_ref.actor.clip_ratio_high=0.28
  actor_rollout_ref.actor.use_kl_loss=false
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
  actor_rollout_ref.actor.loss_scale_factor="$MAX_RESPONSE"
  actor_rollout_ref.actor.use_dynamic_bsz=true
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n=8
  actor_rollout_ref.rollout.temperature=1.0
  actor_rollout_ref.rollout.gpu_memory_utilization=0.5
  algorithm.use_kl_in_reward=false
  reward.custom_reward_function.reward_kwargs.reward="$REWARD"
  trainer.total_training_steps=850
  trainer.test_freq=50
  trainer.save_freq=100
  trainer.max_actor_ckpt_to_keep=2
  trainer.n_gpus_per_node="$NGPUS"
  trainer.nnodes="$NNODES"
  trainer.project_name=polyepo
  trainer.experiment_name="paper-math-$ESTIMATOR"
  'trainer.logger=[console,tensorboard]'
  algorithm.polyepo.clusterer="$CLUSTERER"
  "algorithm.polyepo.clusterer_options={prompt:math,model:$JUDGE_MODEL,on_failure:wait,max_wait_s:7200,on_group_failure:'fallback:answer'}"
)
if [ "${PRINT_OVERRIDES:-0}" = 1 ]; then printf '%s\n' "${ARGS[@]}" "$@"; exit 0; fi
exec python -m polyepo.train.verl "${ARGS[@]}" "$@"

#!/usr/bin/env bash
# Sets up (idempotently) and runs the main job: async SAC with a CNN on PandaPickCubeVision-v0.
# With an NVIDIA GPU it runs the full frankasim_sac_cnn preset. On a CPU-only machine it runs the same
# pipeline at 2-core size (a few minutes: every process, rendering, learner updates, evaluation,
# checkpoint, summary), which shows the system working but is far too short to learn the grasp.
# Extra arguments are config overrides, e.g. runner.max_env_steps=5000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_MODE=${WANDB_MODE:-offline}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    exec .venv/bin/python launch/run_async.py frankasim_sac_cnn "$@"
fi
# The random ResNet-10 backbone instead of the preset's ImageNet EfficientNet-Lite0: on a CPU the latter's frozen
# pass is 2.6x slower (docs/performance.md), which would more than double this run.
exec .venv/bin/python launch/run_async.py frankasim_sac_cnn policy.encoder.pretrained=none \
    runner.max_env_steps=2500 actor.num_actors=1 env.num_envs=2 actor.random_steps=500 \
    replay.min_size=512 replay.capacity_gb=0.5 replay.rate_limit.updates_per_step=0.05 \
    sac.batch_size=32 sac.critic_actor_ratio=1 learner.compile=false eval.every_updates=50 eval.episodes=4 eval.num_envs=2 eval_env.workers=1 \
    "$@"

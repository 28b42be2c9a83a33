#!/usr/bin/env bash
# Issue 20 on the GPU machine (one H200): build gsplat, check it against the reference rasterizer, capture and
# fit ZarlGSPutCubeOnPlate-v0's Gaussian assets at full size (held-out PSNR, scene PSNR against SAPIEN), and
# benchmark 224x224 rendering (gsplat vs the torch reference) and env steps/s.
#
#   GSPLAT_WHEEL=/path/gsplat-1.5.3-py3-none-any.whl OUT=/tmp/gs bash scripts/gs_gpu.sh
#
# The machine has no network: gsplat (a wheel of CUDA sources, ~2 MB, with its pure-Python dependencies
# jaxtyping, rich and ninja) is brought as wheels in $WHEELS (or GSPLAT_WHEEL), like the ManiSkill wheels
# (docs/envs.md, "On a GPU"). gsplat compiles its CUDA code with nvcc the first time it is imported (several
# minutes; the build lands in torch's extension cache, ~/.cache/torch_extensions); this script checks for nvcc
# first and stops with the reason if it is missing or the build fails, since gsplat's own errors are easy to miss.
# Everything lands in $OUT: status (how far it got), gsplat_build.log, tests.log, assets/ (the .ply files,
# manifest.json, report.json), build.log, gs_render_speed_h200.json, bench.log.
#
# The pi0.5 + PPO part (issue 20's must-show 3), after the assets: PARTS picks what runs after the gsplat build
# (default "tests assets bench", the lines above; "all" = every part in this order):
#   sft      SFT of pi0.5 (SmallPi0, configs/gs_sft_pi05.yaml) on SFT_EPISODES expert demonstrations rendered with
#            the Gaussians ($RUNS/sft_gaussians), and the same on SAPIEN's render of the same episodes
#            ($RUNS/sft_simulator): the two starting points of the appearance gap's two directions
#   ppo      PPO with Flow-SDE from each SFT checkpoint (configs/gs_ppo_pi05.yaml; seed 002's 64 envs as 8 actors
#            x 8 envs; RL_WALL_S of wall time each, checkpoints every CKPT_UPDATES updates and at the end), on the
#            rendering its SFT base was trained on ($RUNS/ppo_gaussians, $RUNS/ppo_simulator); PPO_RENDERINGS
#            picks which (default both)
#   gap      launch/appearance_gap.py: every PPO policy (and, as a second table, every SFT base) on GAP_EPISODES
#            episodes under both renderings -> $OUT/gs_appearance_gap/ and $OUT/gs_appearance_gap_sft/
#            (appearance_gap.json + .md)
#   curve    the PPO runs' training success curves (env/success_once against env steps and minutes, from
#            metrics.jsonl) -> $OUT/gs_ppo_pi05_<rendering>/ (curve.json, curve.png, summary.json, config.yaml)
# Every part reads the assets from $ASSETS (default $OUT/assets, the assets part's output) and keeps its runs under
# $RUNS (default $OUT/runs). SIZE=cpu runs the training parts at the configs' CPU size (tiny pi0.5, 32 px, a few
# steps; torch rasterizer) on any machine: a check of this script, e.g.
#   SIZE=cpu PARTS="sft ppo gap curve" ASSETS=/tmp/gs_assets OUT=/tmp/gs_cpu bash scripts/gs_gpu.sh

set -u
OUT=${OUT:-/tmp/gs}
PY=${PY:-python3}
WHEELS=${WHEELS:-}
PARTS=${PARTS:-tests assets bench}
[ "$PARTS" = all ] && PARTS="tests assets bench sft ppo gap curve"
SIZE=${SIZE:-gpu}
ASSETS=${ASSETS:-$OUT/assets}
RUNS=${RUNS:-$OUT/runs}
mkdir -p "$OUT"
say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/status"; }
wants() { case " $PARTS " in *" $1 "*) return 0;; *) return 1;; esac; }
export PYTHONPATH=${PYTHONPATH:-}:$(pwd) PYTHONUNBUFFERED=1 WANDB_MODE=offline

if [ "$SIZE" = gpu ]; then
# 1. nvcc: gsplat's JIT build needs the CUDA toolkit whose version matches torch's CUDA
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && NVCC=${CUDA_HOME:-/usr/local/cuda}/bin/nvcc
TORCH_CUDA=$($PY -c "import torch; print(torch.version.cuda)")
if [ -z "$NVCC" ]; then
    say "STOP: nvcc not found (not on PATH, not in \${CUDA_HOME:-/usr/local/cuda}/bin): gsplat compiles CUDA at first import and needs the CUDA toolkit $TORCH_CUDA (torch.version.cuda); install it or set CUDA_HOME"
    exit 3
fi
export PATH=$(dirname "$NVCC"):$PATH CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}
say "nvcc: $NVCC ($("$NVCC" --version | tail -n 1)); torch CUDA $TORCH_CUDA"

# 2. gsplat installed (from the brought wheels)
if ! $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gsplat') is None)"; then
    if [ -n "${GSPLAT_WHEEL:-}" ]; then
        $PY -m pip install --no-index ${WHEELS:+--find-links "$WHEELS"} "$GSPLAT_WHEEL" >> "$OUT/status" 2>&1
    elif [ -n "$WHEELS" ]; then
        $PY -m pip install --no-index --find-links "$WHEELS" gsplat==1.5.3 >> "$OUT/status" 2>&1
    fi
fi
$PY -c "import gsplat" 2>/dev/null || { say "STOP: gsplat is not installed and no wheel was given (GSPLAT_WHEEL= or WHEELS=)"; exit 4; }

# 3. the build, with its log kept
say "building gsplat's CUDA extension (first import)"
if ! timeout 2400 env VERBOSE=1 MAX_JOBS=${MAX_JOBS:-16} $PY -c "
from envs.gaussians.rasterize_gsplat import load_gsplat
load_gsplat()
print('gsplat built and loaded')" > "$OUT/gsplat_build.log" 2>&1; then
    say "STOP: gsplat's build failed; the end of $OUT/gsplat_build.log:"
    tail -n 30 "$OUT/gsplat_build.log" | tee -a "$OUT/status"
    exit 5
fi
say "gsplat ok"
fi

# 4. the reference and gsplat agree (PSNR >= 40 dB), with the rest of the library's tests
if wants tests; then
timeout 900 $PY -m pytest -q -p no:cacheprovider tests/envs/test_gaussians.py -rs > "$OUT/tests.log" 2>&1
say "tests: $(tail -n 1 "$OUT/tests.log")"
fi

# 5. capture + fit at full size on the GPU (gsplat), held-out PSNR per part and the scene PSNR
if wants assets; then
timeout ${BUILD_MAX:-3600} $PY -m launch.build_gs_assets out="$ASSETS" device=cuda fit.backend=gsplat render_backend=gsplat \
    capture_size=${CAPTURE_SIZE:-256} views_per_part=${VIEWS:-64} background_views=${BG_VIEWS:-48} max_points=4000 \
    background_max_points=20000 fit.steps=${FIT_STEPS:-3000} fit.views_per_step=4 scene_checks=8 scene_check_steps=60 \
    > "$OUT/build.log" 2>&1
say "assets: exit $?; $(tail -n 1 "$OUT/build.log")"
fi

# 6. 224x224 render speed (gsplat vs torch) for a batch of envs, and env steps/s
if wants bench; then
timeout 1200 $PY benchmarks/gs_render_speed.py --assets "$ASSETS" --num-envs 1 8 32 --size 224 --device cuda \
    --env-num-envs 1 8 --json --out "$OUT/gs_render_speed_h200.json" > "$OUT/bench.log" 2>&1
say "bench: exit $?"
tail -n 12 "$OUT/bench.log" | tee -a "$OUT/status"
fi

# 7-10. pi0.5: SFT on each rendering's demonstrations, PPO with Flow-SDE from each, the appearance gap both ways, the
# success curves. The configs' own sizes are the CPU test's; the GPU run's are here.
if [ "$SIZE" = cpu ]; then
    MODEL="vla.model=tiny_pi05 vla.pi0_horizon=5 learner.device=cpu actor.device=cpu env.kwargs.gaussian_backend=torch"
    SFT_SIZE="sft.record_episodes=${SFT_EPISODES:-2} sft.steps=${SFT_STEPS:-2} env.max_episode_steps=10"
    PPO_SIZE="actor.num_actors=1 env.num_envs=2 ppo.rollout_len=1 ppo.minibatch_size=2 ppo.epochs=1 env.max_episode_steps=10"
    RL_WALL_S=${RL_WALL_S:-60}; GAP_EPISODES=${GAP_EPISODES:-2}; GAP_ENVS=2; CKPT_UPDATES=${CKPT_UPDATES:-2}; GAP_STEPS=${GAP_STEPS:-10}
else
    # SmallPi0 (pi0.5) at its 128 px input from the task's 224 px camera; the Gaussians rendered by gsplat on the GPU
    # (PhysX on the CPU: the machine has no PhysX GPU library)
    MODEL="vla.model=small_pi05 vla.pi0_horizon=10 learner.device=cuda actor.device=cuda env.kwargs.camera_size=224 \
env.kwargs.gaussian_backend=gsplat env.kwargs.gaussian_device=cuda"
    SFT_SIZE="sft.record_episodes=${SFT_EPISODES:-400} sft.record_only_successes=true sft.steps=${SFT_STEPS:-4000} \
sft.batch_size=64 sft.lr=3e-4 sft.log_every=100 env.num_envs=16 env.max_episode_steps=100"
    # seed 002: 64 envs (8 actor processes x 8 CPU scenes), 4 epochs
    PPO_SIZE="actor.num_actors=8 env.num_envs=8 ppo.rollout_len=20 ppo.minibatch_size=128 ppo.epochs=4 \
env.max_episode_steps=100 replay.heartbeat_timeout_s=120"
    RL_WALL_S=${RL_WALL_S:-1500}; GAP_EPISODES=${GAP_EPISODES:-64}; GAP_ENVS=8; CKPT_UPDATES=${CKPT_UPDATES:-20}; GAP_STEPS=${GAP_STEPS:-100}
fi
PPO_RENDERINGS=${PPO_RENDERINGS:-gaussians simulator}
ENV_ASSETS="env.kwargs.gaussian_assets=$ASSETS"
mkdir -p "$RUNS"
if wants sft || wants ppo || wants gap; then
    [ -f "$ASSETS/manifest.json" ] || { say "STOP: no Gaussian assets at $ASSETS (run PARTS=assets first, or set ASSETS=)"; exit 6; }
fi

if wants sft; then
    for r in gaussians simulator; do
        say "sft on $r renders -> $RUNS/sft_$r"
        # the same runner.seed: the same expert episodes under both renderings
        timeout ${SFT_MAX:-3000} $PY launch/run_sft.py gs_sft_pi05 runner.run_dir="$RUNS/sft_$r" $ENV_ASSETS \
            env.kwargs.render_backend=$r $MODEL $SFT_SIZE logging.tensorboard=false > "$RUNS/sft_$r.log" 2>&1
        say "sft $r: exit $?; $(tail -n 1 "$RUNS/sft_$r.log")"
    done
fi

if wants ppo; then
    for r in $PPO_RENDERINGS; do
        say "ppo on $r renders from $RUNS/sft_$r, $RL_WALL_S s -> $RUNS/ppo_$r"
        timeout $((RL_WALL_S + 600)) $PY launch/run_sync.py gs_ppo_pi05 runner.run_dir="$RUNS/ppo_$r" $ENV_ASSETS \
            env.kwargs.render_backend=$r vla.init_from="$RUNS/sft_$r" $MODEL $PPO_SIZE runner.max_wall_s=$RL_WALL_S \
            runner.max_env_steps=100000000 runner.checkpoint_every_updates=$CKPT_UPDATES logging.tensorboard=false \
            > "$RUNS/ppo_$r.log" 2>&1
        say "ppo $r: exit $?; $(tail -n 1 "$RUNS/ppo_$r.log")"
    done
fi

if wants gap; then
    for stage in ppo sft; do
        trained=""
        for r in gaussians simulator; do
            [ -d "$RUNS/${stage}_$r/checkpoints" ] && trained="$trained --trained $r=$RUNS/${stage}_$r"
        done
        [ -z "$trained" ] && { say "gap: no $stage checkpoint under $RUNS"; continue; }
        name=gs_appearance_gap; [ $stage = sft ] && name=gs_appearance_gap_sft
        config=gs_ppo_pi05; [ $stage = sft ] && config=gs_sft_pi05
        timeout ${GAP_MAX:-3000} $PY launch/appearance_gap.py $config $trained --episodes $GAP_EPISODES \
            --num-envs $GAP_ENVS --out "$OUT/$name" $ENV_ASSETS $MODEL env.max_episode_steps=$GAP_STEPS \
            > "$RUNS/$name.log" 2>&1
        say "gap ($stage): exit $?"
        [ -f "$OUT/$name/appearance_gap.md" ] && tee -a "$OUT/status" < "$OUT/$name/appearance_gap.md"
    done
fi

if wants curve; then
    for r in $PPO_RENDERINGS; do
        [ -f "$RUNS/ppo_$r/metrics.jsonl" ] || { say "curve: no $RUNS/ppo_$r/metrics.jsonl"; continue; }
        $PY scripts/gs_results.py "$RUNS/ppo_$r" --out "$OUT/gs_ppo_pi05_$r" --title "pi0.5 + Flow-SDE PPO, $r renders" \
            >> "$OUT/status" 2>&1
        say "curve $r: exit $?"
    done
fi

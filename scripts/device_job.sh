#!/usr/bin/env bash
# One GPU session of issue 15, run detached on the lent H200 (see scripts/device_start.sh):
#   1. benchmarks/sac_update_speed.py frankasim_sac_cnn (shipped vs bare step, eager and compiled; TF32, CUDA
#      graph and reduce-overhead levers), GPU utilisation sampled beside it;
#   2. whole runs of the preset, `python launch/run_async.py frankasim_sac_cnn runner.seed=S` with the
#      fastest checked levers from step 1, each bounded by what is left before the deadline in $JOB/deadline
#      (epoch seconds; a later call may rewrite it).
# Everything lands in $JOB (default /tmp/job); $JOB/status says how far it got.
set -u
JOB=${JOB:-/tmp/job}
SRC=${SRC:-/tmp/zarl}
cd "$SRC"
export PYTHONPATH=/tmp/site:$SRC PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl}
PY=${PY:-python3}
say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$JOB/status"; }
left() { echo $(( $(cat "$JOB/deadline") - $(date +%s) )); }
gpu_log() { nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 1000 > "$1" 2>/dev/null & echo $!; }

say "job start, $(left) s before the deadline"
$PY -c "import torch, mujoco, gymnasium, zmq, omegaconf; print(torch.__version__, torch.cuda.get_device_name(0), mujoco.__version__)" >> "$JOB/status" 2>&1

# 0. the captured learner step equals the eager one (small agent)
#    and the learner's copy of the replay buffer on the GPU holds the buffer's transitions
#    (SKIP_CHECKS=1: not again, when an earlier lease checked the same code)
[ "${SKIP_CHECKS:-0}" = 1 ] || timeout 180 $PY -m pytest -q -p no:cacheprovider tests/learner/test_cuda_graph.py \
    tests/learner/test_device_replay.py -k "not a_run_trains" 2>&1 | tail -n 15 >> "$JOB/status"

# 1. the learner step (SKIP_BENCH=1: straight to the runs, with the preset as it is)
BENCH_MAX=${BENCH_MAX:-420}
OVR=""
bench() {
    local g; g=$(gpu_log "$JOB/gpu_bench.csv")
    say "bench start (max ${BENCH_MAX} s)"
    timeout $((BENCH_MAX + 150)) $PY benchmarks/sac_update_speed.py frankasim_sac_cnn --seconds 3 --rounds 2 \
        --max-s "$BENCH_MAX" --json --out "$JOB/sac_update_speed_h200.json" ${EXTRA_BENCH:-} > "$JOB/bench.log" 2>&1
    say "bench exit $?"
    kill "$g" 2>/dev/null
}
if [ "${SKIP_BENCH:-0}" != 1 ]; then
bench
OVR=$($PY -c "
import json
try:
    print(' '.join(json.load(open('$JOB/sac_update_speed_h200.json'))['pipeline_overrides'].get('overrides', [])))
except Exception:
    print('')
")
fi
say "pipeline overrides: ${OVR:-(preset as shipped)}"
echo "$OVR" > "$JOB/overrides"

# 1b. THROUGHPUT=1: the learner process fed by the replay service against its bare step (not run yet on an H200)
if [ "${THROUGHPUT:-0}" = 1 ]; then
    say "learner_throughput start"
    timeout 480 $PY benchmarks/learner_throughput.py --configs frankasim_sac_cnn --seconds 8 --rounds 2 --json \
        --out "$JOB/learner_throughput_h200.json" > "$JOB/throughput.log" 2>&1
    say "learner_throughput exit $?"
fi

# 2. whole runs: the seeds of $SEEDS, or (a lever screening) the lines of $JOB/variants, read one at a time so
#    that a later call can append to the queue: "NAME SEED OVERRIDES...", run dir runs/sNAME, each stopped by
#    scripts/stop_when_held.py once success >= 0.8 has held HOLD_S seconds (no early stop with HOLD_S=0); a line
#    BENCH runs step 1's benchmark at that point of the queue (with SKIP_BENCH=1, so the runs keep the preset).
run_one() {  # NAME SEED OVERRIDES...
    local name=$1 seed=$2; shift 2
    local W=$(( $(left) - 75 ))  # the final eval, snapshot and shutdown after max_wall_s, and the copy back
    [ "$W" -gt "${MAX_RUN_S:-600}" ] && W=${MAX_RUN_S:-600}
    if [ "$W" -lt "${MIN_RUN_S:-240}" ]; then say "run $name left out: only $W s"; return 1; fi
    local RUN=$JOB/runs/s$name
    local g; g=$(gpu_log "$JOB/gpu_s$name.csv")
    say "seed $name start, max_wall_s=$W, overrides: $OVR ${EXTRA_RUN:-} $*"
    $PY launch/run_async.py frankasim_sac_cnn runner.run_dir="$RUN" runner.seed="$seed" runner.max_wall_s="$W" \
        logging.wandb=disabled $OVR ${EXTRA_RUN:-} "$@" > "$JOB/run_s$name.log" 2>&1 &
    local pid=$!
    [ "${HOLD_S:-0}" != 0 ] && $PY scripts/stop_when_held.py "$RUN" "$pid" --hold-s "$HOLD_S" >> "$JOB/run_s$name.log" 2>&1 &
    wait "$pid"
    say "seed $name exit $?"
    kill "$g" 2>/dev/null
    return 0
}
if [ -f "$JOB/variants" ]; then
    n=1
    while line=$(sed -n "${n}p" "$JOB/variants") && [ -n "$line" ]; do
        if [ "$line" = BENCH ]; then  # the learner-step benchmark here in the queue, its overrides not applied
            if [ "$(left)" -gt $((BENCH_MAX + 90)) ]; then bench; else say "bench left out: only $(left) s"; fi
        else
            # shellcheck disable=SC2086
            run_one $line || break
        fi
        n=$((n + 1))
    done
else
    for SEED in ${SEEDS:-0 1}; do run_one "$SEED" "$SEED" || break; done
fi
say "job done"

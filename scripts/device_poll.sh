#!/usr/bin/env bash
# Waits up to $1 seconds (or until the job's status file gains the line $2, a grep pattern), prints progress,
# then packs the job's results into $OUT (at most 8 files): bench.tgz, s<seed>.tgz, status.txt.
set -u
JOB=${JOB:-/tmp/job}
WAIT=${1:-60}
UNTIL=${2:-job done}
end=$(( $(date +%s) + WAIT ))
while [ "$(date +%s)" -lt "$end" ] && ! grep -q "$UNTIL" "$JOB/status" 2>/dev/null; do sleep 5; done
cat "$JOB/status"
[ -n "${NEW_DEADLINE:-}" ] && echo "$NEW_DEADLINE" > "$JOB/deadline" && echo "deadline now $(( NEW_DEADLINE - $(date +%s) )) s away"
tail -n 12 "$JOB/bench.log" 2>/dev/null
for log in "$JOB"/run_s*.log; do [ -f "$log" ] && { echo "== $log"; tail -n 4 "$log"; }; done
for m in "$JOB"/runs/s*/metrics.jsonl; do
    [ -f "$m" ] || continue
    python3 - "$m" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ev = [(r["wall_s"], r.get("env_steps"), r.get("updates"), r["eval/success_rate"]) for r in rows if "eval/success_rate" in r]
last = rows[-1] if rows else {}
print(sys.argv[1], "last:", {k: round(last[k], 2) for k in ("wall_s", "env_steps", "updates", "updates_per_s",
      "env_steps_per_s", "learner/busy_fraction") if k in last})
print("  evals (wall_s, env_steps, updates, success):", [(round(a), b, c, s) for a, b, c, s in ev])
EOF
done
if [ -n "${OUT:-}" ]; then
    cp "$JOB/status" "$OUT/status.txt"
    (cd "$JOB" && tar czf "$OUT/bench.tgz" sac_update_speed_h200.json bench.log gpu_bench.csv overrides \
        learner_throughput_h200.json throughput.log 2>/dev/null)
    for d in "$JOB"/runs/s*; do
        [ -d "$d" ] || continue
        s=$(basename "$d")
        (cd "$JOB" && tar czf "$OUT/$s.tgz" --exclude="runs/$s/checkpoints" --exclude="runs/$s/replay" \
            --exclude='*.mp4' "runs/$s" "run_$s.log" "gpu_$s.csv" 2>/dev/null)
    done
    ls -la "$OUT"
fi

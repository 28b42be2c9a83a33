# Helpers of the GPU scripts run part by part on a lent machine (scripts/calvin_h200.sh, scripts/libero_h200.sh):
# sourced, not run. The caller sets PART, PY, RUNS (the runs' state between parts), RESULTS (docs/results),
# OUT (the folder that comes back; may be empty) and defines CONFIG_OF NAME (the docs/results folder of a run).

say() { echo "$(date -u +%H:%M:%S) [$PART] $*" | tee -a "$RUNS/status"; }

publish() {  # $1: run name; its docs/results folder and what later parts need, to $OUT
    local name=$1 config
    config=$(CONFIG_OF "$name")
    mkdir -p "$RESULTS/$config"
    for f in summary.json metrics.jsonl config.yaml; do
        [ -f "$RUNS/$name/$f" ] && cp "$RUNS/$name/$f" "$RESULTS/$config/"
    done
    [ -d "$RUNS/$name/eval" ] && cp "$RUNS/$name"/eval/*.json "$RESULTS/$config/" 2>/dev/null || true
    if [ -n "$OUT" ]; then
        mkdir -p "$OUT/$RESULTS" "$OUT/$RUNS"
        cp -r "$RESULTS/$config" "$OUT/$RESULTS/"
        cp "$RUNS/status" "$OUT/$RUNS/"
        # the newest checkpoint's trained weights (and, for SFT, nothing else is in it); eval parts
        $PY - "$RUNS/$name" "$OUT/$RUNS/$name" <<'PYEOF'
import shutil, sys
from pathlib import Path
from learner.checkpoint import list_checkpoints
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
found = list_checkpoints(src / "checkpoints") if (src / "checkpoints").is_dir() else []
if found:
    shutil.copytree(found[0], dst / "checkpoints" / found[0].name, dirs_exist_ok=True)
if (src / "eval").is_dir():
    shutil.copytree(src / "eval", dst / "eval", dirs_exist_ok=True)
PYEOF
    fi
}

# Shell helpers of the GPU scripts that run a results table in parts, one lease of the GPU machine each
# (scripts/calvin_h200.sh, scripts/maniskill_vla_h200.sh); sourced, not run. Before sourcing, the script sets
# PART and RUNS (its state folder, carried between leases); the helpers use PY, RESULTS and OUT.
#
# A lease is a fresh machine: nothing survives it but what a call writes under $OUT. So each part keeps its state
# in $RUNS and copies what the next part needs to $OUT (`publish`, `pack`); the next lease carries $RUNS back.
# A call carries at most 64 MiB, so a file bigger than PIECE_MIB goes to $OUT cut into pieces (NAME.part-aa, ...)
# that separate calls can carry; `join_pieces` puts them together again before a part starts.
# `lay_out_wheels` (here) and `install_carried_wheels` (there) do the same for wheels the machine lacks.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python3}
RESULTS=${RESULTS:-docs/results}      # where each run's folder goes
OUT=${OUT:-}
PIECE_MIB=${PIECE_MIB:-48}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 WANDB_MODE=offline
mkdir -p "$RUNS"
say() { echo "$(date -u +%H:%M:%S) [$PART] $*" | tee -a "$RUNS/status"; }

join_pieces() {  # $1: a folder; every NAME.part-* under it joined into NAME (once all pieces came: see PIECES)
    local first name
    while IFS= read -r first; do
        name=${first%.part-aa}
        [ -e "$name" ] && continue
        if [ -f "$name.pieces" ] && [ "$(ls "$name".part-* | wc -l)" -lt "$(cat "$name.pieces")" ]; then
            say "$name: $(ls "$name".part-* | wc -l) of $(cat "$name.pieces") pieces here; carry the others"; return 1
        fi
        # the pieces go once joined: a checkpoint folder holds only its own files
        cat "$name".part-* > "$name.tmp" && mv "$name.tmp" "$name" && rm -f "$name".part-* "$name.pieces" &&
            say "joined $name"
    done < <(find "$1" -name '*.part-aa' 2>/dev/null)
}

copy_out() {  # $1: a file or folder under the checkout, copied to the same path under $OUT; big files in pieces
    local src=$1 f rel
    [ -n "$OUT" ] && [ -e "$src" ] || return 0
    while IFS= read -r f; do
        rel=$OUT/$f
        mkdir -p "$(dirname "$rel")"
        if [ "$(stat -c %s "$f")" -gt $((PIECE_MIB << 20)) ]; then
            split -b "${PIECE_MIB}M" "$f" "$rel.part-"
            ls "$rel".part-* | wc -l > "$rel.pieces"
        else
            cp "$f" "$rel"
        fi
    done < <(find "$src" -type f ! -name '*.part-*' ! -name '*.pieces')
}

newest_checkpoint() {  # $1: a run folder; prints its newest learner checkpoint (none: nothing)
    [ -d "$1/checkpoints" ] || return 0
    $PY -c "import sys; from learner.checkpoint import list_checkpoints as l; f = l(sys.argv[1]); f and print(f[0])" \
        "$1/checkpoints"
}

publish() {  # $1: run name (its folder in $RUNS), $2: its results folder's name; to $RESULTS, and to $OUT
    local name=$1 config=$2 f ckpt
    mkdir -p "$RESULTS/$config"
    for f in summary.json metrics.jsonl config.yaml; do
        [ -f "$RUNS/$name/$f" ] && cp "$RUNS/$name/$f" "$RESULTS/$config/"
    done
    [ -d "$RUNS/$name/eval" ] && cp "$RUNS/$name"/eval/*.json "$RESULTS/$config/" 2>/dev/null
    [ -n "$OUT" ] || return 0
    copy_out "$RESULTS/$config"
    copy_out "$RUNS/status"
    ckpt=$(newest_checkpoint "$RUNS/$name")
    [ -n "$ckpt" ] && copy_out "$ckpt"
    copy_out "$RUNS/$name/eval"
    return 0
}

wait_all() {  # PID...: waits for each; fails (after all ended) when one failed, naming how many
    local p failed=0
    for p in "$@"; do wait "$p" || failed=$((failed + 1)); done
    [ "$failed" = 0 ] || { say "$failed of $# processes failed"; return 1; }
}

lay_out_wheels() {  # $1: pip download spec...; HERE (with PyPI): the wheels, cut into PIECE_MIB pieces, laid out
    # in folders runs/wheels_1, runs/wheels_2, ... (ignored by git), one for each call to carry
    local tmp f n=1
    tmp=$(mktemp -d)
    $PY -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$@"
    for f in "$tmp"/*.whl; do split -b "${PIECE_MIB}M" "$f" "$tmp/$(basename "$f").part-"; rm "$f"; done
    rm -rf runs/wheels_*
    for f in "$tmp"/*.part-*; do mkdir -p "runs/wheels_$n" && mv "$f" "runs/wheels_$n/" && n=$((n + 1)); done
    rm -rf "$tmp"
    say "carry one of these a call: $(ls -d runs/wheels_* | tr '\n' ' ')($(du -sh runs/wheels_* | cut -f1 | tr '\n' ' '))"
}

install_carried_wheels() {  # the wheels whose pieces lie in runs/wheels_*/ (lay_out_wheels), joined and installed
    local d=/tmp/carried_wheels first name
    mkdir -p "$d"
    while IFS= read -r first; do
        name=$(basename "${first%.part-aa}")
        [ -e "$d/$name" ] && continue
        # the pieces in order of their suffix, whichever folder holds each
        ls runs/wheels_*/"$name".part-* | awk -F/ '{print $NF "\t" $0}' | sort | cut -f2 | xargs cat > "$d/$name.tmp"
        mv "$d/$name.tmp" "$d/$name"
    done < <(ls runs/wheels_*/*.whl.part-aa 2>/dev/null)
    ls "$d"/*.whl >/dev/null 2>&1 || return 0
    $PY -m pip install -q --no-index --no-deps "$d"/*.whl || { say "the carried wheels did not install (a piece missing?)"; return 1; }
}

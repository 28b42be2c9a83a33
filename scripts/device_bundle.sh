#!/usr/bin/env bash
# Prepares, HERE (a machine with PyPI), what the GPU machine needs to run ManiSkill 3, pybullet and gsplat: it has
# Python 3.12 and no network, and files reach it only as carried folders of at most 64 MiB a call. Idempotent:
# downloads what is not yet in the cache, then lays the payload out again.
#   1. downloads the cp312 wheels and sources of scripts/device_bundle.txt into $CACHE/wheels and $CACHE/sdist;
#   2. repacks mani-skill: its wheel is 102 MB, 159 MB of its 196 MB installed are robots, and the project uses
#      only assets/robots/panda (63 MB); the others go, the rest is installed with pip --target and tar+xz'd;
#   3. lays the payload out as part folders .dev_1, .dev_2, ... in the checkout's root (one per call, big files
#      cut with `split -b`, SHA256SUMS and JOINS in each) and prints which call carries which folders;
#   4. checks: every Requires-Dist of the bundle's wheels against the machine, and (CHECK=1) the repacked
#      mani-skill imported first on PYTHONPATH with one PickCube-v1 step, and the import trace.
# Run it in the checkout whose working tree the device calls send (the session's own), from its root:
#   bash scripts/device_bundle.sh            CACHE=DIR (default ~/.cache/zarl-device-bundle), CHECK=1, PY=python
# The machine side is scripts/device_install.sh; docs/envs.md ("On a GPU") gives the order of the calls.
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zarl-device-bundle}
# The development venv (the main checkout's .venv, beside its .git) gives the pins and runs the checks.
PY=${PY:-$(cd "$(git rev-parse --git-common-dir)/.." && pwd)/.venv/bin/python}
LIST=scripts/device_bundle.txt
mkdir -p "$CACHE/wheels" "$CACHE/sdist" "$CACHE/payload"

# The part folders must never travel as untracked files or be committed: ignore them in .git/info/exclude
# (the common one, which every worktree of the repository reads).
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
grep -qxF "/.dev_*/" "$EXCLUDE" 2>/dev/null || echo "/.dev_*/" >> "$EXCLUDE"

entries() { grep -v '^#' "$LIST" | awk 'NF {print $1, $2}'; }

# 1. downloads; every pin is checked against the venv, so the machine runs what the suite ran here.
while read -r spec kind; do
    name=${spec%%==*}; version=${spec##*==}
    have=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null || true)
    [ -n "$have" ] && [ "$have" != "$version" ] && echo "note: $name is $have in the venv, the bundle pins $version"
    if [ "$kind" = sdist ]; then
        ls "$CACHE/sdist/" 2>/dev/null | grep -qi "^${name//-/[-_]}-${version}\.tar\.gz$" ||
            python3 -m pip download -q --no-deps --no-binary=:all: -d "$CACHE/sdist" "$spec"
    else
        ls "$CACHE/wheels/" 2>/dev/null | grep -qi "^${name//-/[-_]}-${version}-" ||
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
                --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CACHE/wheels" "$spec"
    fi
done < <(entries)

# 2. mani-skill without the robots other than panda (environment_maps and utils/scene_builder stay: the table
#    scene uses them). Its dist-info goes along, with the pruned files struck from RECORD.
ms_wheel=$(ls "$CACHE"/wheels/mani_skill-*.whl)
ms_archive="$CACHE/payload/$(basename "${ms_wheel%.whl}")-panda.tar.xz"
if [ ! -s "$ms_archive" ] || [ "$ms_wheel" -nt "$ms_archive" ]; then
    tmp=$(mktemp -d)
    python3 -m pip install -q --no-deps --no-compile --target "$tmp" "$ms_wheel"
    find "$tmp/mani_skill/assets/robots" -mindepth 1 -maxdepth 1 ! -name panda -exec rm -rf {} +
    rm -rf "$tmp/bin"
    record=$(ls "$tmp"/mani_skill-*.dist-info/RECORD)
    grep -v '^mani_skill/assets/robots/' "$record" > "$record.new" || true
    grep '^mani_skill/assets/robots/panda/' "$record" >> "$record.new" || true
    mv "$record.new" "$record"
    echo "mani-skill installed without the other robots: $(du -sm "$tmp" | cut -f1) MiB; xz -9 (minutes)"
    (cd "$tmp" && tar -cf - mani_skill mani_skill-*.dist-info | xz -9 -T0 > "$ms_archive.tmp") && mv "$ms_archive.tmp" "$ms_archive"
    rm -rf "$tmp"
fi

# The payload: every wheel except mani-skill's (its archive replaces it), and the sources.
find "$CACHE/payload" -maxdepth 1 -type f ! -name "$(basename "$ms_archive")" -delete
for f in "$CACHE"/wheels/*.whl "$CACHE"/sdist/*; do
    [ "$f" = "$ms_wheel" ] || ln -f "$f" "$CACHE/payload/" 2>/dev/null || cp "$f" "$CACHE/payload/"
done
echo "payload: $(ls "$CACHE/payload" | wc -l) files, $(du -sm --apparent-size "$CACHE/payload" | cut -f1) MiB"

# 3. part folders and the plan
"$PY" scripts/device_bundle.py layout "$CACHE" "$ROOT"

# 4. checks
"$PY" scripts/device_bundle.py requires "$CACHE" --root "$ROOT"
if [ "${CHECK:-0}" = 1 ]; then
    # The round trip of every cut file: the pieces, joined in order, give the downloaded bytes again.
    for joins in "$ROOT"/.dev_*/JOINS; do
        while read -r sum name n holders; do
            got=$(for i in $(seq 0 $((n - 1))); do cat "$ROOT"/.dev_*/"$name.part-$(printf %02d "$i")"; done |
                  sha256sum | cut -d' ' -f1)
            [ "$got" = "$sum" ] && echo "round trip of $name ($n pieces): sha256 matches" ||
                { echo "round trip of $name: sha256 $got, expected $sum"; exit 1; }
        done < "$joins"
    done | sort -u
    # The repacked mani-skill (pure Python), first on the path, runs PickCube-v1 here with the venv's sapien.
    tmp=$(mktemp -d)
    tar -xJf "$ms_archive" -C "$tmp"
    echo "repacked mani-skill, first on PYTHONPATH:"
    MUJOCO_GL=${MUJOCO_GL:-osmesa} PYTHONPATH="$tmp:$ROOT" "$PY" -c "import mani_skill, sys; \
assert mani_skill.__file__.startswith(sys.argv[1]), mani_skill.__file__; print('  imported from', mani_skill.__file__)" "$tmp"
    MUJOCO_GL=${MUJOCO_GL:-osmesa} PYTHONPATH="$tmp:$ROOT" "$PY" scripts/device_bundle.py trace --step PickCube-v1 \
        --root "$ROOT" 2>&1 | grep -v -i warn || true
    rm -rf "$tmp"
fi

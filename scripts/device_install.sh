#!/usr/bin/env bash
# Runs THERE, on the GPU machine (no network), at the start of every call, from the checkout's root:
#   bash scripts/device_install.sh            PYBULLET=1: build pybullet from its source; GSPLAT=1: build gsplat's
#                                             CUDA extension (both in the background, detached, logs in /tmp/bundle)
# Idempotent; what is done is marked in /tmp/bundle/done, so each call does only what its parts newly allow:
#   1. installs the base wheel set .whl/ and unpacks the GL libraries .gl/ (as scripts/device_start.sh needs);
#   2. checks every arrived part folder .dev_<call>/ (scripts/device_bundle.sh made them) against its SHA256SUMS,
#      joins each cut file once all its pieces are here (and checks the joined bytes);
#   3. installs the wheels into /tmp/site (pip --no-index --no-deps --target), unpacks the repacked mani-skill
#      there, and starts the builds asked for;
#   4. says what is ready (`import mani_skill, sapien`, pybullet, gsplat) and what is missing, and why.
# Afterwards: export PYTHONPATH=/tmp/site:$PWD
set -u
B=${BUNDLE_DIR:-/tmp/bundle}  # the joined files, the marks of what is done, the build logs
SITE=${SITE:-/tmp/site}
mkdir -p "$B/files" "$B/done" "$B/built" "$SITE"
say() { echo "bundle: $*"; }
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$@"; }

# 1. the base set (mujoco, gymnasium, pyzmq, omegaconf, ...) and the GL loaders
if [ -d .whl ] && [ ! -e "$B/done/base-wheels" ]; then
    pip_target .whl/*.whl && touch "$B/done/base-wheels" || { say "the base wheel set .whl/ did not install"; exit 1; }
fi
if [ -d .gl ] && [ ! -e "$B/done/gl" ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig && touch "$B/done/gl"
fi

# 2. parts: whole files are checked and linked into $B/files; cut files are joined there when complete
for part in .dev_*/; do
    [ -f "$part/SHA256SUMS" ] || continue
    stamp="$B/done/part-$(basename "$part")-$(sha256sum < "$part/SHA256SUMS" | cut -c1-12)"
    if [ ! -e "$stamp" ]; then
        if (cd "$part" && sha256sum -c --quiet SHA256SUMS); then touch "$stamp"
        else say "part $part is damaged (sha256 differs); carry it again"; continue; fi
    fi
    while read -r _ item; do
        case "$item" in *.part-*) ;; *) ln -f "$part/$item" "$B/files/$item" 2>/dev/null || cp "$part/$item" "$B/files/";; esac
    done < "$part/SHA256SUMS"
done
cat .dev_*/JOINS 2>/dev/null | sort -u | while read -r sum name n holders; do
    [ -e "$B/files/$name" ] && continue
    here=$(ls .dev_*/"$name".part-* 2>/dev/null | wc -l)
    if [ "$here" -lt "$n" ]; then say "$name: $here of $n pieces here (they travel in $holders)"; continue; fi
    : > "$B/files/$name.tmp"  # pieces in their order (NAME.part-00, -01, ...), whatever part holds each
    for i in $(seq 0 $((n - 1))); do cat .dev_*/"$name.part-$(printf %02d "$i")" >> "$B/files/$name.tmp"; done
    if [ "$(sha256sum < "$B/files/$name.tmp" | cut -d' ' -f1)" = "$sum" ]; then
        mv "$B/files/$name.tmp" "$B/files/$name" && say "$name joined from $n pieces (sha256 checked)"
    else rm -f "$B/files/$name.tmp"; say "$name: the joined pieces do not give its sha256; carry them again"; fi
done

# 3. installs
new=()
for w in "$B"/files/*.whl; do [ -e "$w" ] && [ ! -e "$B/done/$(basename "$w")" ] && new+=("$w"); done
if [ ${#new[@]} -gt 0 ]; then
    if pip_target "${new[@]}"; then for w in "${new[@]}"; do touch "$B/done/$(basename "$w")"; done; say "${#new[@]} wheels installed"
    else say "pip could not install ${new[*]##*/}"; fi
fi
for a in "$B"/files/mani_skill-*.tar.xz; do
    [ -e "$a" ] && [ ! -e "$B/done/$(basename "$a")" ] && tar -xJf "$a" -C "$SITE" && touch "$B/done/$(basename "$a")" &&
        say "mani-skill (panda only) unpacked into $SITE"
done
sdist=$(ls "$B"/files/pybullet-*.tar.gz 2>/dev/null | head -n 1)
if [ "${PYBULLET:-0}" = 1 ] && [ -n "$sdist" ] && [ ! -e "$B/done/pybullet" ] && [ ! -e "$B/pybullet.building" ]; then
    cxx=$(command -v c++ || command -v g++ || true)
    if [ -z "$cxx" ]; then
        say "pybullet cannot be built here: no C++ compiler (c++ or g++) on the PATH"
    elif ! python3 -c "import setuptools" 2>/dev/null; then
        say "pybullet cannot be built here: python3 has no setuptools (its setup.py needs it)"
    else
        # pip wheel without build isolation: the build needs only setuptools (and numpy, for its numpy
        # support), which the machine has; isolation would try to download them. setup.py compiles with
        # 2 x cores jobs (fewer if memory is short).
        touch "$B/pybullet.building"
        say "pybullet: building from $(basename "$sdist") with $cxx in the background (log $B/pybullet_build.log)"
        setsid nohup bash -c "python3 -m pip wheel -v --no-index --no-deps --no-build-isolation -w '$B/built' '$sdist' \
            && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target '$SITE' '$B'/built/pybullet-*.whl \
            && touch '$B/done/pybullet'; rm -f '$B/pybullet.building'" > "$B/pybullet_build.log" 2>&1 < /dev/null &
    fi
fi
if [ "${GSPLAT:-0}" = 1 ] && [ -e "$SITE/gsplat" ] && [ ! -e "$B/done/gsplat-cuda" ] && [ ! -e "$B/gsplat.building" ]; then
    # gsplat JIT-compiles its CUDA sources at first use into torch's extension cache; built once here, for the
    # H200 only (compute capability 9.0), every later import loads it.
    touch "$B/gsplat.building"
    say "gsplat: building its CUDA extension with $(command -v nvcc || echo 'NO nvcc') in the background (log $B/gsplat_build.log)"
    setsid nohup bash -c "PYTHONPATH='$SITE' TORCH_CUDA_ARCH_LIST=\${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=\$(nproc) \
        python3 -c 'from gsplat.cuda._backend import _C; assert _C is not None, \"gsplat built no extension\"' \
        && touch '$B/done/gsplat-cuda'; rm -f '$B/gsplat.building'" > "$B/gsplat_build.log" 2>&1 < /dev/null &
fi

# 4. what is ready
check() {  # NAME PYTHON-STATEMENTS
    local out
    if out=$(cd /tmp && PYTHONPATH="$SITE" MUJOCO_GL=${MUJOCO_GL:-egl} timeout 120 python3 -c "$2" 2>&1); then
        say "$1 ready: $(echo "$out" | tail -n 1)"
    else say "$1 NOT ready: $(echo "$out" | grep -v -i warn | tail -n 1)"; fi
}
if [ -e "$SITE/mani_skill" ] && [ -e "$SITE/sapien" ]; then
    check "mani_skill + sapien" "import mani_skill, sapien; print('mani_skill', mani_skill.__version__, 'sapien', sapien.__version__)"
else
    say "mani_skill + sapien not yet here: $( [ -e "$SITE/mani_skill" ] || printf 'mani-skill '; [ -e "$SITE/sapien" ] || printf 'sapien ')still to come"
fi
if [ -e "$B/done/pybullet" ]; then check pybullet "import pybullet, pybullet_data; print('pybullet', pybullet.getAPIVersion())"
elif [ -e "$B/pybullet.building" ]; then say "pybullet building for $(( $(date +%s) - $(stat -c %Y "$B/pybullet.building") )) s (log $B/pybullet_build.log)"
elif [ -n "$sdist" ]; then say "pybullet source here, not built$( [ -s "$B/pybullet_build.log" ] && echo " (the last build failed: $(grep -v '^[[:space:]]*$' "$B/pybullet_build.log" | tail -n 1))" ); PYBULLET=1 builds it"
else say "pybullet source not yet here"; fi
if [ -e "$B/done/gsplat-cuda" ]; then check "gsplat (CUDA built)" "import gsplat; print('gsplat', gsplat.__version__)"
elif [ -e "$B/gsplat.building" ]; then say "gsplat CUDA extension building for $(( $(date +%s) - $(stat -c %Y "$B/gsplat.building") )) s (log $B/gsplat_build.log)"
elif [ -e "$SITE/gsplat" ]; then say "gsplat installed, CUDA extension not built$( [ -s "$B/gsplat_build.log" ] && echo " (the last build failed: $(grep -v -i -e warn -e '^[[:space:]]*$' "$B/gsplat_build.log" | tail -n 1))" ); GSPLAT=1 builds it"
else say "gsplat not yet here"; fi
exit 0

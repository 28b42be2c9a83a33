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
set -u
OUT=${OUT:-/tmp/gs}
PY=${PY:-python3}
WHEELS=${WHEELS:-}
mkdir -p "$OUT"
say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/status"; }
export PYTHONPATH=${PYTHONPATH:-}:$(pwd) PYTHONUNBUFFERED=1

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

# 4. the reference and gsplat agree (PSNR >= 40 dB), with the rest of the library's tests
timeout 900 $PY -m pytest -q -p no:cacheprovider tests/envs/test_gaussians.py -rs > "$OUT/tests.log" 2>&1
say "tests: $(tail -n 1 "$OUT/tests.log")"

# 5. capture + fit at full size on the GPU (gsplat), held-out PSNR per part and the scene PSNR
timeout ${BUILD_MAX:-3600} $PY -m launch.build_gs_assets out="$OUT/assets" device=cuda fit.backend=gsplat render_backend=gsplat \
    capture_size=${CAPTURE_SIZE:-256} views_per_part=${VIEWS:-64} background_views=${BG_VIEWS:-48} max_points=4000 \
    background_max_points=20000 fit.steps=${FIT_STEPS:-3000} fit.views_per_step=4 scene_checks=8 scene_check_steps=60 \
    > "$OUT/build.log" 2>&1
say "assets: exit $?; $(tail -n 1 "$OUT/build.log")"

# 6. 224x224 render speed (gsplat vs torch) for a batch of envs, and env steps/s
timeout 1200 $PY benchmarks/gs_render_speed.py --assets "$OUT/assets" --num-envs 1 8 32 --size 224 --device cuda \
    --env-num-envs 1 8 --json --out "$OUT/gs_render_speed_h200.json" > "$OUT/bench.log" 2>&1
say "bench: exit $?"
tail -n 12 "$OUT/bench.log" | tee -a "$OUT/status"

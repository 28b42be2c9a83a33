#!/usr/bin/env bash
# Sets up everything on a fresh Debian machine (run as root or with sudo), idempotently:
# system packages for headless MuJoCo rendering, tmux and OpenSSH; a virtualenv in .venv/ with
# torch (a CPU build unless one is already there) and this project with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="libosmesa6 libegl1 libgl1 libglfw3 tmux openssh-client openssh-server iproute2 ffmpeg"
missing=""
for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "setup: creating .venv"; $PY -m venv .venv; }

install_python_packages() {
    # Each step checked explicitly: `set -e` does not apply inside a function called before `||`.
    .venv/bin/pip install --upgrade pip || return 1
    # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install torch==2.13.0 || return 1
    .venv/bin/pip install -e ".[dev]" || return 1
    # The Franka Panda + Robotiq meshes and MJCF come from gym-hil's package data. --no-deps: it pins
    # an old mujoco and pulls in pygame/pynput, none of which the assets need.
    .venv/bin/pip install --no-deps "gym-hil==0.1.14" || return 1
}

# Reinstall Python packages only when setup.cfg changed since the last successful setup.
stamp=.venv/.zarl-setup-$(sha1sum setup.cfg pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages into .venv (log: .venv/setup.log)"
    install_python_packages > .venv/setup.log 2>&1 \
        || { tail -40 .venv/setup.log; echo "setup: pip failed (see .venv/setup.log)"; exit 1; }
    rm -f .venv/.zarl-setup-*
    touch "$stamp"
fi
echo "setup: ready (.venv)"

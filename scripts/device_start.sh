#!/usr/bin/env bash
# First command of a GPU session (run from the checkout's root on the lent machine, with .whl, .gl and .gpu
# carried): installs the wheels and the GL libraries, copies the worktree (.gpu) to /tmp/zarl and starts
# scripts/device_job.sh there, detached, with its deadline DEADLINE_IN seconds from now (VARIANTS=FILE: a lever
# screening's queue of runs, see device_job.sh). Then poll with scripts/device_poll.sh.
set -u
bash scripts/device_install.sh || exit 1  # the wheels and GL libraries (and any .dev_* parts of the bundle)
rm -rf /tmp/zarl && cp -a .gpu /tmp/zarl || exit 1
mkdir -p /tmp/job && { [ -z "${VARIANTS:-}" ] || cp "$VARIANTS" /tmp/job/variants; } && echo $(( $(date +%s) + ${DEADLINE_IN:-1500} )) > /tmp/job/deadline
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > /tmp/job/gpu_info.csv 2>&1
cd /tmp/zarl && setsid nohup bash scripts/device_job.sh > /tmp/job/job.log 2>&1 < /dev/null &
sleep 2; cat /tmp/job/gpu_info.csv

"""scripts/maniskill_vla_h200.sh (issue 17's H200 table): every run's arguments, at the GPU size and at the CPU size,
load with their configs (a key that does not exist or a bad value is a ConfigError), and the GPU scripts parse."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def script_runs(size: str, tmp_path: Path) -> list[tuple[str, str, list[str]]]:
    env = {**os.environ, "SIZE": size, "RUNS": str(tmp_path / "runs"), "OUT": ""}
    out = subprocess.run(["bash", str(REPO / "scripts" / "maniskill_vla_h200.sh"), "overrides"], env=env,
                         capture_output=True, text=True, check=True).stdout
    runs = []
    for line in out.splitlines():
        launcher, config, *overrides = shlex.split(line)
        runs.append((launcher, config, overrides))
    return runs


@pytest.mark.parametrize("size", ["gpu", "cpu"])
def test_every_run_of_the_table_loads_with_its_config(size, tmp_path):
    from launch.run_config import load_config, typed

    for name in ("sft_openvla", "sft_oft", "ppo_openvla", "ppo_oft", "grpo_openvla", "grpo_oft"):
        (tmp_path / "runs" / name).mkdir(parents=True)  # vla.init_from must name a directory
    runs = script_runs(size, tmp_path)
    # 2 SFT + 4 RL runs, and 6 runs x 4 splits of evaluation
    assert [r[0] for r in runs].count("run_sft.py") == 2 and [r[0] for r in runs].count("run_sync.py") == 4
    assert [r[0] for r in runs].count("eval_vla.py") == 24
    for launcher, config, overrides in runs:
        cfg = typed(load_config(config, overrides))
        if launcher == "run_sync.py" and cfg.algo == "vla_grpo":
            assert cfg.env.num_envs % cfg.grpo.group_size == 0
        if launcher == "eval_vla.py":
            assert len(cfg.vla_eval.splits) == 1
        if size == "gpu":
            assert cfg.vla.model == "small" and cfg.learner.device == "cuda"
            if launcher == "eval_vla.py":
                assert cfg.eval.episodes >= 128


def test_gpu_scripts_parse():
    for name in ("maniskill_vla_h200.sh", "calvin_h200.sh", "libero_h200.sh", "gpu_parts.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / "scripts" / name)]).returncode == 0, name

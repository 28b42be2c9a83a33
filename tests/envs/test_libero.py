"""LiberoSpatial-v0 in the real LIBERO simulator (envs/libero), run inside the LIBERO venv's interpreter.

LIBERO's simulator lives in .venv-libero (`bash scripts/setup.sh --libero`), not in the venv pytest runs in, so
each test runs its checks in a subprocess of .venv-libero/bin/python that prints what it measured as JSON, and
asserts on that here. Without the venv the tests are skipped. Slow on the 2-core CPU VM (building a task's scene
takes ~10 s, a camera step ~0.3 s on OSMesa): one env, small cameras and few steps with pixels; the expert runs
without cameras.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
LIBERO_PYTHON = REPO / ".venv-libero" / "bin" / "python"

pytestmark = pytest.mark.skipif(not LIBERO_PYTHON.exists(),
                                reason="no LIBERO venv (.venv-libero): make it with `bash scripts/setup.sh --libero`")


def run_in_libero_venv(code: str, timeout: float = 240) -> dict:
    """Run `code` under .venv-libero/bin/python in the project's root; return the JSON its last line prints."""
    result = subprocess.run([str(LIBERO_PYTHON), "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_env_contract_seeding_instruction_and_the_expert(tmp_path):
    """Through make_vector_env: the declared spaces (what the learner reads in the main venv) are the env's; reset
    and step shapes; one seed gives one (task, init state) and the same observation twice, the instruction is the
    task's; the scripted expert puts the bowl on the plate (LIBERO's own goal check); a noisy recording lands in
    the layout the world model's training reads."""
    data = tmp_path / "demos"
    out = run_in_libero_venv(f"""
        import json, sys
        import numpy as np
        from core.config import EnvConfig
        from core.instruction import decode_instruction
        from envs import env_spaces, make_vector_env
        from envs.libero.demos import record, run_episode
        from envs.libero.env import LiberoSpatialEnv, suite_tasks
        from envs.libero.expert import ScriptedExpert

        cfg = EnvConfig(id="LiberoSpatial-v0", num_envs=1, kwargs={{"camera_size": 32, "tasks": [0]}})
        env = make_vector_env(cfg)
        declared = env_spaces(cfg)
        first = env.reset(seed=11)
        base = env.envs[0].unwrapped
        drawn = (base.task_index, base.init_index)
        again = env.reset(seed=11)
        same = all(np.array_equal(first[k], again[k]) for k in first)
        obs, rewards, terminated, truncated, infos = env.step(np.full((1, 7), 0.5, np.float32))
        env.reset(seed=11)
        stepped = env.step(np.full((1, 7), 0.5, np.float32))[0]
        other = env.reset(seed=12)
        out = {{"spaces_match": env.single_observation_space == declared[0] and env.single_action_space == declared[1],
               "shapes": {{k: list(v.shape) for k, v in obs.items()}},
               "dtypes": {{k: str(v.dtype) for k, v in obs.items()}},
               "rewards": list(rewards.shape), "terminated": terminated.tolist(), "truncated": truncated.tolist(),
               "success": infos["success"].tolist(), "drawn": drawn, "same": same,
               "step_same": all(np.array_equal(stepped[k], obs[k]) for k in obs),
               "other_differs": not np.array_equal(first["state"], other["state"]) or not np.array_equal(
                   first["agentview"], other["agentview"]),
               "instruction": decode_instruction(first["instruction"])[0], "language": suite_tasks()[0].language,
               "image_mean": float(first["agentview"].mean())}}
        record({str(data)!r}, episodes=1, seed=0, noise=0.3, only_successes=False, max_steps=10, env=base)
        env.close()

        blind = LiberoSpatialEnv(cameras=False, max_scenes=1)
        ep = run_episode(blind, ScriptedExpert(), np.random.default_rng(0), options={{"task": 0, "init_state": 0}},
                         record=False)
        out["expert_success"], out["expert_steps"] = ep["success"], ep["steps"]
        print(json.dumps(out))
    """)
    assert out["spaces_match"]
    assert out["shapes"] == {"agentview": [1, 32, 32, 3], "wrist": [1, 32, 32, 3], "state": [1, 12],
                             "instruction": [1, 128]}
    assert out["dtypes"] == {"agentview": "uint8", "wrist": "uint8", "state": "float32", "instruction": "uint8"}
    assert out["rewards"] == [1] and out["terminated"] == [False] and out["truncated"] == [False]
    assert out["success"] == [False]
    assert out["drawn"][0] == 0 and 0 <= out["drawn"][1] < 50
    assert out["same"] and out["step_same"] and out["other_differs"]
    assert out["instruction"] == out["language"] == ("pick up the black bowl between the plate and the ramekin "
                                                     "and place it on the plate")
    assert out["image_mean"] > 10  # rendered, not black
    assert out["expert_success"] and out["expert_steps"] < 220

    # the recording, read in this (the main) venv by the world model's loader
    from envs.world_model.trajectories import load_episodes

    episodes = load_episodes(data, image_size=32, pose_dim=7, camera="agentview")
    assert len(episodes) == 1 and episodes[0].frames.shape == (10, 32, 32, 3)
    assert episodes[0].actions.shape == (10, 7) and np.all(np.abs(episodes[0].actions) <= 1)
    assert episodes[0].instruction == out["language"]
    expert = json.loads((data / "meta" / "expert.json").read_text())
    assert expert["attempted"] == 1 and expert["written"] == 1 and expert["successes"] == 0


def test_actors_run_under_the_libero_venv_with_real_processes(tmp_path):
    """A run whose actors and evaluator the launcher starts with .venv-libero/bin/python (actor.python): torch,
    zmq and the project come through its .pth from the main venv; the run reaches its step budget over ZeroMQ."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "launch"))
    from launch_helpers import assert_clean_summary, launcher_command, read_summary

    run_dir = tmp_path / "run"
    result = subprocess.run(launcher_command(run_dir, [f"actor.python={LIBERO_PYTHON}"]), cwd=REPO,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = read_summary(run_dir)
    assert_clean_summary(summary, actors=1)
    config = (run_dir / "config.yaml").read_text()
    assert str(LIBERO_PYTHON) in config

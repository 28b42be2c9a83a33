"""LIBERO-spatial trajectories from the scripted expert, clean and noisy, in the project's one on-disk format
(envs/demos.py, LeRobot v2.1): demonstrations for SFT and, with failures, the world model's data
(``python -m envs.world_model.train data=DIR``).

    .venv-libero/bin/python -m envs.libero.demos out=DIR episodes=100 seed=0 noise=[0.0,0.1,0.3] \\
        only_successes=false steps_after_success=10 [camera_size=128 tasks=all video=false]

Episode i starts from a seeded reset (its seed drawn from ``seed``'s SeedSequence: the env draws the task and init
state) and gets action noise ``noise[i % len(noise)]`` (Gaussian, of that std, added to the expert's actions and
clipped to [-1, 1]; the recorded action is the one taken). Per step: ``observation.state`` (12: eef position, euler
angles, gripper opening, axis-angle, finger joints: the world model's pose is the first 7),
``observation.images.agentview`` and ``observation.images.wrist``, ``action`` (7), the env's success; the task is
the instruction. Prints (and writes to OUT/meta/expert.json) the counts per task: attempted, successes, written.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from envs.demos import DemoWriter
from envs.libero.config import ACTION_SIZE, CAMERAS, CONTROL_HZ, STATE_SIZE
from envs.libero.env import LiberoSpatialEnv
from envs.libero.expert import ScriptedExpert

MAX_STEPS = 220  # LiberoSpatial-v0's horizon


def run_episode(env: LiberoSpatialEnv, expert: ScriptedExpert, rng: np.random.Generator, seed: int | None = None,
                options: dict | None = None, noise: float = 0.0, max_steps: int = MAX_STEPS,
                steps_after_success: int = 0, record: bool = True) -> dict:
    """One expert episode from ``env.reset(seed, options)``; returns its rows (when `record`) and outcome. After the
    env's success the expert goes on for `steps_after_success` more steps (frames of the task done)."""
    obs, info = env.reset(seed=seed, options=options)
    state = env.privileged_state()
    expert.start(state)
    rows: dict = {"state": [], "action": [], "success": [], **{c: [] for c in CAMERAS}}
    done, after, steps = False, 0, 0
    for _ in range(max_steps):
        action = expert.act(state)
        if noise > 0:
            action = np.clip(action + rng.normal(0.0, noise, action.shape), -1.0, 1.0).astype(np.float32)
        if record:
            rows["state"].append(obs["state"])
            for c in CAMERAS:
                rows[c].append(obs[c])
            rows["action"].append(action)
        obs, _, terminated, _, step_info = env.step(action)
        steps += 1
        state = env.privileged_state()
        done = done or bool(step_info["success"])
        rows["success"].append(done)
        if done:
            if after >= steps_after_success:
                break
            after += 1
    return {"rows": rows, "success": done, "steps": steps, "task": info["task_index"],
            "init_state": info["init_state"], "instruction": info["instruction"]}


def record(root: str | Path, episodes: int, seed: int, noise: list | float = 0.0, only_successes: bool = True,
           steps_after_success: int = 0, max_steps: int = MAX_STEPS, video: bool = False,
           env: LiberoSpatialEnv | None = None, **env_options) -> dict:
    """`episodes` expert episodes written under root; returns the counts, in total and per task index."""
    own = env is None
    env = env or LiberoSpatialEnv(**env_options)
    if not env.config.cameras:
        raise ValueError("recording trajectories needs the cameras: make the env with cameras=True")
    s = env.config.camera_size
    writer = DemoWriter(root, fps=CONTROL_HZ, state_dim=STATE_SIZE, action_dim=ACTION_SIZE,
                        cameras={c: (s, s, 3) for c in CAMERAS}, video=video, env_id="LiberoSpatial-v0")
    noises = np.atleast_1d(np.asarray(noise, np.float64))
    seeds = np.random.SeedSequence(seed).generate_state(episodes, np.uint32)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    expert = ScriptedExpert()
    per_task: dict[int, dict] = {}
    start = time.monotonic()
    try:
        for i in range(episodes):
            ep = run_episode(env, expert, rng, seed=int(seeds[i]), noise=float(noises[i % len(noises)]),
                             max_steps=max_steps, steps_after_success=steps_after_success)
            counts = per_task.setdefault(ep["task"], {"attempted": 0, "successes": 0, "written": 0})
            counts["attempted"] += 1
            counts["successes"] += ep["success"]
            if ep["success"] or not only_successes:
                rows = ep["rows"]
                success = np.asarray(rows["success"], bool)
                n = len(success)
                writer.add_episode(np.stack(rows["state"]), np.stack(rows["action"]), success.astype(np.float32),
                                   np.arange(n) == n - 1, success, {c: np.stack(rows[c]) for c in CAMERAS},
                                   task=ep["instruction"], seed=int(seeds[i]))
                counts["written"] += 1
    finally:
        writer.close()
        if own:
            env.close()
    total = {k: sum(c[k] for c in per_task.values()) for k in ("attempted", "successes", "written")}
    result = {**total, "per_task": {str(t): per_task[t] for t in sorted(per_task)},
              "wall_s": round(time.monotonic() - start, 1), "frames": writer.total_frames}
    (Path(root) / "meta" / "expert.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.create({"out": None, "episodes": 10, "seed": 0, "noise": 0.0,
                                            "only_successes": True, "steps_after_success": 0,
                                            "max_steps": MAX_STEPS, "video": False, "env": {}}),
                          OmegaConf.from_dotlist(argv))
    if not cfg.out:
        print(__doc__, file=sys.stderr)
        print("out=DIR is required", file=sys.stderr)
        return 2
    options = OmegaConf.to_container(cfg, resolve=True)
    env_options = options.pop("env") or {}
    for key in ("camera_size", "tasks"):  # the common env options, also at the top level
        if key in options:
            env_options[key] = options.pop(key)
    out = options.pop("out")
    print(json.dumps(record(out, **options, **env_options)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

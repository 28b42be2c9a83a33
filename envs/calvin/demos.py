"""Play-table demonstrations from the scripted experts, in the project's one on-disk format (envs/demos.py,
LeRobot v2.1 layout): one episode per subtask, the steps from the subtask's start until its oracle says
done (the steps of a prefix that sets it up, e.g. the lift before a place, are not recorded).

Per step: ``observation.state`` = ``robot_obs`` (15), ``observation.images.rgb_static`` (200x200) and
``observation.images.rgb_gripper`` (84x84), ``action`` (7, in [-1, 1]); the episode's task is a train
phrasing of its subtask (envs/calvin/language.py), cycling over the phrasings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.calvin.chains import STEPS_PER_SUBTASK, run_expert, start_for
from envs.calvin.language import instruction
from envs.calvin.play_table import CONTROL_HZ, ROBOT_OBS_SIZE
from envs.calvin.tasks import is_completed
from envs.demos import DemoWriter


def record_subtask_demos(env, expert, root: str | Path, tasks: list[str], rng: np.random.Generator,
                         video: bool = False, only_successes: bool = True, action_noise: float | list = 0.0,
                         steps_after_success: int = 0, max_steps: int | list = STEPS_PER_SUBTASK) -> dict:
    """One expert episode per entry of `tasks` (starts from ``start_for(task, rng)``) written under root;
    `env` must render its cameras. Returns counts.

    For world-model trajectories (envs/world_model), which need failures and frames of the task done too:
    `action_noise` (one value, or one per episode) adds Gaussian noise of that std to the expert's actions
    (clipped to [-1, 1]); `steps_after_success` records that many more steps of the expert after the oracle's
    success (its success flag stays true); `max_steps` (one value, or one per episode) bounds an episode."""
    base = env.unwrapped
    if not base.config.cameras:
        raise ValueError("recording demonstrations needs the cameras: make the env with cameras=True")
    space = base.observation_space
    cameras = {k: tuple(space[k].shape) for k in ("rgb_static", "rgb_gripper")}
    writer = DemoWriter(root, fps=CONTROL_HZ, state_dim=ROBOT_OBS_SIZE, action_dim=7, cameras=cameras,
                        video=video, env_id=f"CalvinPlayTable-v0/{base.config.scene}")
    attempted = written = successes = 0
    noise = np.broadcast_to(np.asarray(action_noise, np.float64), (len(tasks),))
    limits = np.broadcast_to(np.asarray(max_steps, np.int64), (len(tasks),))
    for i, task in enumerate(tasks):
        spec, prefix = start_for(task, rng)
        seed = int(rng.integers(2 ** 63))
        obs, _ = base.reset(seed=seed, options={"start": spec})
        for t in prefix:
            _, _, last = run_expert(env, expert, t)
            obs = last if last is not None else obs
        expert.start(task)
        start = base.scene_state()
        rows = {"state": [], "action": [], "success": [], **{c: [] for c in cameras}}
        done, after = False, 0
        for _ in range(int(limits[i])):
            action = expert.act()
            if noise[i] > 0:
                action = np.clip(action + rng.normal(0.0, noise[i], action.shape), -1.0, 1.0).astype(np.float32)
            rows["state"].append(obs["robot_obs"])
            for c in cameras:
                rows[c].append(obs[c])
            rows["action"].append(action)
            obs, *_ = base.step(action)
            done = done or is_completed(task, start, base.scene_state())
            rows["success"].append(done)
            if done:
                if after >= steps_after_success:
                    break
                after += 1
        attempted += 1
        ok = bool(rows["success"][-1])
        successes += ok
        if ok or not only_successes:
            n = len(rows["action"])
            success = np.asarray(rows["success"], bool)
            writer.add_episode(np.stack(rows["state"]), np.stack(rows["action"]), success.astype(np.float32),
                               np.arange(n) == n - 1, success, {c: np.stack(rows[c]) for c in cameras},
                               task=instruction(task, "train", i), seed=seed)
            written += 1
    writer.close()
    return {"attempted": attempted, "successes": successes, "written": written}


def record_trajectories(root: str | Path, tasks: list[str], seed: int, static_size: int = 200, **options) -> dict:
    """``record_subtask_demos`` in a play table made for it (scene D, the static camera at `static_size` px, a
    small gripper camera) with its scripted expert, rng from `seed`; `options` are record_subtask_demos's
    (only_successes, action_noise, steps_after_success, max_steps, video). Returns its counts."""
    import gymnasium as gym  # CalvinPlayTable-v0 is registered by envs.calvin, this module's package

    from envs.calvin.expert import ScriptedExpert

    env = gym.make("CalvinPlayTable-v0", static_size=static_size, gripper_size=8)
    try:
        return record_subtask_demos(env, ScriptedExpert(env.unwrapped), root, tasks, np.random.default_rng(seed),
                                    **options)
    finally:
        env.close()

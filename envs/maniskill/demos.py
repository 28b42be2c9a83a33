"""Recording ManiSkill demonstrations (the scripted experts in a ManiSkillVectorEnv) in the project's one
on-disk format, envs/demos.py (LeRobot v2.1 layout); DemoWriter and DemoDataset are re-exported here."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from envs.demos import DemoDataset, DemoWriter

__all__ = ["DemoDataset", "DemoWriter", "expert_success_rate", "record_demos"]


def record_demos(env, expert, root: str | Path, seeds: list[int], video: bool = False,
                 only_successes: bool = True, progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run the expert in a ManiSkillVectorEnv (obs_mode="rgb") on the given episode seeds (B at a time)
    and write each episode; returns counts. The images are the env's cameras; the state is its
    proprio ``state``; the instruction is the task string (the Zarl tasks) or the env id.
    ``progress``, if given, gets the counts so far after every batch of B episodes."""
    B = env.num_envs
    space = env.single_observation_space
    cameras = {k: tuple(v.shape) for k, v in space.spaces.items() if k not in ("state", "instruction")}
    fps = float(getattr(env.blocks[0], "control_freq", 10))
    writer = DemoWriter(root, fps=fps, state_dim=space["state"].shape[0], action_dim=env.single_action_space.shape[0],
                        cameras=cameras, video=video, env_id=env.env_id)
    written = attempted = successes = 0
    for start in range(0, len(seeds), B):
        batch = list(seeds[start:start + B])
        batch += [batch[-1]] * (B - len(batch))  # pad the last batch (extra rows are not written)
        keep = min(B, len(seeds) - start)
        obs = env.reset(seed=batch)
        tasks = env.instructions() if env.has_instructions else [env.env_id] * B
        buf = [{"state": [], "action": [], "reward": [], "done": [], "success": [], **{c: [] for c in cameras}}
               for _ in range(B)]
        finished = np.zeros(B, bool)
        while not finished[:keep].all():
            action = expert.act(env.privileged_state())
            a = action.cpu().numpy()
            next_obs, reward, _, _, info = env.step(action)
            for b in range(keep):
                if finished[b]:
                    continue
                buf[b]["state"].append(obs["state"][b])
                for c in cameras:
                    buf[b][c].append(obs[c][b])
                buf[b]["action"].append(a[b])
                buf[b]["reward"].append(reward[b])
                buf[b]["done"].append(info["done"][b])
                buf[b]["success"].append(info["success"][b])
                if info["done"][b]:
                    finished[b] = True
            obs = next_obs
        for b in range(keep):
            attempted += 1
            ok = bool(np.any(buf[b]["success"]))
            successes += ok
            if ok or not only_successes:
                writer.add_episode(np.stack(buf[b]["state"]), np.stack(buf[b]["action"]), np.array(buf[b]["reward"]),
                                   np.array(buf[b]["done"]), np.array(buf[b]["success"]),
                                   {c: np.stack(buf[b][c]) for c in cameras}, task=tasks[b], seed=batch[b])
                written += 1
        if progress is not None:
            progress({"attempted": attempted, "successes": successes, "written": written})
    writer.close()
    return {"attempted": attempted, "successes": successes, "written": written}


def expert_success_rate(env_id: str, seeds: list[int], env_kwargs: dict | None = None) -> float:
    """The scripted expert's success rate over one seeded episode per seed of `env_id` (one env, state
    observations, CPU physics). A plain function of picklable arguments, so that a process pool can run several
    task splits side by side."""
    from envs.maniskill.expert import ScriptedExpert
    from envs.maniskill.vector import ManiSkillVectorEnv

    env = ManiSkillVectorEnv(env_id, 1, obs_mode="state", **(env_kwargs or {}))
    expert = ScriptedExpert(env_id, 1)
    wins = []
    try:
        for seed in seeds:
            env.reset(seed=[seed])
            while True:
                _, _, _, _, info = env.step(expert.act(env.privileged_state()))
                if info["done"][0]:
                    wins.append(bool(info["episode_success"][0]))
                    break
    finally:
        env.close()
    return float(np.mean(wins))

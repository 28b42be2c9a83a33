"""The evaluator process: deterministic episodes with the newest weights, every N learner updates.

It is an actor that sends no experience. Keeping evaluation out of the
learner means the learner never pauses for it, and out of the training
actors means their data stays on-policy for exploration.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
from omegaconf import OmegaConf

from actors.weights import WeightsSubscriber
from core import seeding
from core.config import EnvConfig, RunConfig
from core.devices import actor_device
from core.net import endpoint
from core.roles import Policy, acts_in_chunks, per_step_actions
from envs import make_vector_env
from wire.runtime import RoleRuntime


def run_episodes(env, policy, episodes: int, seed, deterministic: bool = True,
                 record_key: str | None = None) -> tuple[dict, list]:
    """Run exactly ceil(episodes / num_envs) episodes in each env; returns metrics and env 0's first-episode frames.
    A chunk of C actions is C env steps (an env whose episode ends inside it goes on with the chunk's rest)."""
    per_env = -(-episodes // env.num_envs)
    obs = env.reset(seed=seed)
    done_count = np.zeros(env.num_envs, int)
    returns, lengths, successes, frames = [], [], [], []
    while np.any(done_count < per_env):
        decision = policy.act(obs, deterministic=deterministic)
        for action in (per_step_actions(np.asarray(decision)) if acts_in_chunks(policy) else [decision]):
            if record_key is not None and done_count[0] == 0 and isinstance(obs, dict) and record_key in obs:
                frames.append(np.asarray(obs[record_key][0]).copy())
            obs, _, _, _, info = env.step(action)
            for b in np.flatnonzero(info["done"]):
                if done_count[b] < per_env and len(returns) < episodes:
                    returns.append(float(info["episode_return"][b]))
                    lengths.append(int(info["episode_length"][b]))
                    successes.append(bool(info["episode_success"][b]))
                done_count[b] += 1
            if not np.any(done_count < per_env):
                break
    metrics = {"eval/return_mean": float(np.mean(returns)), "eval/return_std": float(np.std(returns)),
               "eval/episode_len": float(np.mean(lengths)), "eval/episodes": len(returns)}
    if getattr(env, "reports_success", True):
        metrics["eval/success_rate"] = float(np.mean(successes))
    return metrics, frames


class Evaluator:
    def __init__(self, cfg: RunConfig, make_policy: Callable[..., Policy]):
        self.cfg = cfg
        self.rt = RoleRuntime(cfg, "evaluator", "evaluator")
        self.log = self.rt.log
        env_cfg: EnvConfig = OmegaConf.to_object(OmegaConf.merge(cfg.env, cfg.eval_env))  # eval_env overrides env
        self.env = make_vector_env(env_cfg, num_envs=cfg.eval.num_envs)
        device = actor_device(cfg.actor, 0)  # the evaluator shares actor 0's device
        self.policy = make_policy(self.env.single_observation_space, self.env.single_action_space, device,
                                  seed=seeding.seed_of(cfg.runner.seed, "evaluator_policy"))
        self.weights = WeightsSubscriber(self.rt.ctx, endpoint(cfg, "weights", bind=False))
        self.next_eval = 0
        # Every evaluation starts from the same states, so that evaluations of successive weights compare.
        self.env_seeds = seeding.seeds(cfg.runner.seed, "evaluator_envs", count=self.env.num_envs)

    def evaluate(self, final: bool = False) -> None:
        t0 = time.time()
        record = "front" if self.cfg.eval.video else None
        metrics, frames = run_episodes(self.env, self.policy, self.cfg.eval.episodes,
                                       seed=self.env_seeds, record_key=record)
        metrics["eval/wall_s"] = time.time() - t0
        video = None
        if frames:
            from envs.video import save_frame_strip, save_video

            stem = Path(self.cfg.runner.run_dir) / "videos" / f"eval_{self.weights.updates:08d}"
            save_frame_strip(frames, stem.with_suffix(".png"))
            try:
                video = save_video(frames, stem.with_suffix(".mp4"), fps=10)
            except Exception as e:  # e.g. no ffmpeg on this machine: the frame strip still exists, eval goes on
                self.log.warning(f"no eval video ({e}); frame strip written to {stem.with_suffix('.png')}")
        success = f", success {metrics['eval/success_rate']:.2f}" if "eval/success_rate" in metrics else ""
        self.log.info(f"eval after {self.weights.updates:,} updates: return {metrics['eval/return_mean']:.1f}"
                      f"{success} ({metrics['eval/wall_s']:.1f} s)")
        self.rt.report(scalars=metrics, eval_updates=self.weights.updates, final=final,
                       video=str(video) if video else None)

    def run(self) -> int:
        every = max(1, int(self.cfg.eval.every_updates))
        while not self.rt.should_stop():
            new = self.weights.poll(timeout_ms=200)
            if new is not None:
                self.policy.load_weights(new)
                if self.weights.updates >= self.next_eval:
                    self.evaluate()
                    self.next_eval = (self.weights.updates // every + 1) * every
        # Final evaluation on the last weights the learner publishes when it stops (marked final),
        # unless the run was interrupted (Ctrl-C, SIGTERM): then every process must be gone within seconds.
        if self.rt.final_eval_wanted:
            deadline = time.time() + 5.0
            while not self.weights.final and time.time() < deadline:
                new = self.weights.poll(timeout_ms=200)
                if new is not None:
                    self.policy.load_weights(new)
            if self.weights.policy_version > 0:
                self.evaluate(final=True)
        else:
            self.log.info(f"no final evaluation: {self.rt.stop_reason}")
        self.weights.close()
        self.env.close()
        self.rt.close()
        return 0

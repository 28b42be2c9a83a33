"""Evaluating a saved VLA on ZarlPutOnPlate-v1's splits, or on CALVIN's chains of the play table
(launch/eval_vla.py).

The policy is rebuilt from disk the way a deployment would get it: the base model of the `vla` section, the
trained weights and action statistics of `vla.init_from` loaded into it, the LoRA adapters merged into the
base weights (`vla_eval.merge_lora`), so the figure is the saved policy's and not the training process's.

Each split (`vla_eval.splits`) is run on its fixed evaluation episodes (`split_seeds(split, eval.episodes)`,
the same on every machine and disjoint between splits), `eval.num_envs` episodes at a time: every env is reset
with one episode's seed and runs until that episode ends (a chunk of C actions is C env steps; what an env does
after its episode ended is not counted). An episode succeeded when the env's `info["success"]` was true at one
of its steps (on ZarlPutOnPlate-v1 success terminates the episode). Decoding is greedy by default
(`vla_eval.greedy`: the most likely token of each position), else sampled at vla.temperature / vla.top_k.

On CalvinPlayTable-v0 (a pi0 / pi0.5, or any policy reading the play table's cameras) the episodes are the first
`eval.episodes` of CALVIN's fixed 5-subtask chains (envs/calvin/chains.py: each subtask judged by its oracle from
its own start, `vla_eval.subtask_steps` steps each, a chain stops at its first failure), in one env, the policy
given each subtask's instruction (envs/calvin/language.py) and acting in chunks (a new chunk at every subtask's
start); greedy = pi0's deterministic ODE sampler. The figures: average completed length and success at 1..5.

On LiberoSpatial-v0 (the real LIBERO simulator) the episodes are, for each task of env.kwargs.tasks, one from each
of LIBERO's first `eval.episodes` fixed init states (at most 50), `eval.num_envs` at a time; the env's copies step
in `eval_env.workers` processes of LIBERO's venv (.venv-libero: its mujoco 3 cannot share this process's), the
policy runs here, batched over all of them. The figures: success per task and over all, with the env steps.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from omegaconf import OmegaConf

from core import seeding
from core.devices import actor_device
from core.roles import per_step_actions

Act = Callable[[object], np.ndarray]  # observations -> actions [B, C, A] (or [B, A])


def run_seeded_episodes(env, act: Act, seeds: list[int], options: list[dict] | None = None) -> dict:
    """One episode per seed, env.num_envs at a time (the last batch padded with repeats that are not counted);
    `options`, one per seed, are the episodes' reset options (LIBERO's task and init state).

    Returns episodes, successes, success_rate, per-episode `success` and `length`, `env_steps` (the counted
    episodes' steps) and `env_steps_simulated` (every env step stepped, padding and after-episode steps too)."""
    if not seeds:
        raise ValueError("no episode to evaluate (0 seeds)")
    n = env.num_envs
    successes: list[bool] = []
    lengths: list[int] = []
    simulated = 0
    for start in range(0, len(seeds), n):
        batch = list(seeds[start:start + n])
        keep = len(batch)
        batch += [batch[-1]] * (n - keep)
        if options is None:
            obs = env.reset(seed=batch)
        else:
            batch_options = list(options[start:start + n])
            obs = env.reset(seed=batch, options=batch_options + [batch_options[-1]] * (n - keep))
        done = np.zeros(n, bool)
        success = np.zeros(n, bool)
        length = np.zeros(n, np.int64)
        while not done[:keep].all():
            actions = np.asarray(act(obs))
            if actions.ndim == 2:
                actions = actions[:, None]
            for action in per_step_actions(actions):
                obs, _, _, _, info = env.step(action)
                simulated += n
                live = ~done
                success |= live & np.asarray(info["success"], bool)
                length += live
                done |= np.asarray(info["done"], bool)
                if done[:keep].all():
                    break
        successes += success[:keep].tolist()
        lengths += length[:keep].tolist()
    return {"episodes": len(successes), "successes": int(sum(successes)),
            "success_rate": float(np.mean(successes)), "env_steps": int(sum(lengths)),
            "env_steps_simulated": int(simulated), "success": successes, "length": lengths}


def split_env_config(cfg, split: str):
    """The run's env (with eval_env's overrides) on `split`."""
    env_cfg = OmegaConf.to_object(OmegaConf.merge(cfg.env, cfg.eval_env))
    return replace(env_cfg, kwargs={**dict(env_cfg.kwargs), "split": split})


class ChunkedChainPolicy:
    """chains.evaluate's ``policy(obs, task) -> action`` from a chunked policy: one decision every `chunk` steps,
    a fresh one when a subtask starts; counts the env steps it acted."""

    def __init__(self, policy, deterministic: bool):
        from envs.calvin.language import instruction

        self.policy, self.deterministic, self.instruction = policy, deterministic, instruction
        self.queue: list[np.ndarray] = []
        self.text = ""
        self.env_steps = 0

    def start(self, task: str) -> None:
        self.queue, self.text = [], self.instruction(task)

    def __call__(self, obs: dict, task: str) -> np.ndarray:
        if not self.queue:
            batch = {**{k: np.asarray(v)[None] for k, v in obs.items()}, "instruction": [self.text]}
            actions = np.asarray(self.policy.act(batch, deterministic=self.deterministic))[0]
            self.queue = list(actions if actions.ndim == 2 else actions[None])
        self.env_steps += 1
        return self.queue.pop(0)


def evaluate_calvin(cfg, policy, log) -> dict:
    """CALVIN's chains with a saved policy (module docstring)."""
    import gymnasium as gym
    import torch

    from envs.calvin.chains import evaluate, make_chain

    # the chains set each subtask themselves: no fixed subtask, none drawn per episode
    env = gym.make(cfg.env.id, **{**dict(cfg.env.kwargs), "cameras": True, "task": None, "tasks": None})
    act = ChunkedChainPolicy(policy, bool(cfg.vla_eval.greedy))
    first = int(cfg.vla_eval.first_chain)
    chains = [make_chain(i) for i in range(first, first + int(cfg.eval.episodes))]
    try:
        with torch.no_grad():
            result = evaluate(env, chains, act, start_subtask=act.start, steps_per_subtask=cfg.vla_eval.subtask_steps)
    finally:
        env.close()
    result["env_steps"] = act.env_steps
    log.info(f"chains: average length {result['avg_len']:.2f} over {result['chains']}, success at 1..5 "
             f"{[round(result[f'success_{k}'], 3) for k in range(1, 6)]}, {act.env_steps:,} env steps")
    return result


def libero_episodes(cfg) -> list[tuple[int, int]]:
    """(task, init state) of each evaluation episode: the tasks of env.kwargs.tasks (eval_env's overrides merged),
    and of each its LIBERO init states 0 .. eval.episodes - 1."""
    from envs.libero import LiberoConfig
    from envs.libero.config import INIT_STATES_PER_TASK

    kwargs = dict(OmegaConf.merge(cfg.env, cfg.eval_env).kwargs or {})
    tasks = LiberoConfig.from_kwargs(**kwargs).task_indices
    n = int(cfg.eval.episodes)
    if not 1 <= n <= INIT_STATES_PER_TASK:
        raise ValueError(f"eval.episodes={n}: LIBERO-spatial has {INIT_STATES_PER_TASK} init states per task, and an "
                         f"evaluation runs one episode from each of the first eval.episodes (1..{INIT_STATES_PER_TASK})")
    return [(task, init) for task in tasks for init in range(n)]


def evaluate_libero(cfg, policy, log) -> dict:
    """LiberoSpatial-v0's tasks from their fixed init states (libero_episodes), eval.num_envs at a time in
    eval_env.workers processes of LIBERO's venv (envs.make_vector_env), the policy batched over all of them here.
    Each episode's reset seed (the fixtures' jitter) is derived from runner.seed, its task and init state."""
    import torch

    from envs import make_vector_env

    episodes = libero_episodes(cfg)
    seeds = [seeding.seed_of(cfg.runner.seed, "evaluator_envs", task, init) for task, init in episodes]
    options = [{"task": task, "init_state": init} for task, init in episodes]
    greedy = bool(cfg.vla_eval.greedy)
    env_cfg = OmegaConf.to_object(OmegaConf.merge(cfg.env, cfg.eval_env))
    num_envs = min(int(cfg.eval.num_envs), len(episodes))
    t0 = time.time()
    env = make_vector_env(env_cfg, num_envs=num_envs)
    try:
        with torch.no_grad():
            result = run_seeded_episodes(env, lambda obs: policy.act(obs, deterministic=greedy), seeds, options)
    finally:
        env.close()
    tasks: dict[str, dict] = {}
    for (task, _), success, length in zip(episodes, result["success"], result["length"]):
        row = tasks.setdefault(str(task), {"episodes": 0, "successes": 0, "env_steps": 0})
        row["episodes"] += 1
        row["successes"] += int(success)
        row["env_steps"] += int(length)
    for task, row in tasks.items():
        row["success_rate"] = row["successes"] / row["episodes"]
        log.info(f"task {task}: success {row['success_rate']:.3f} ({row['successes']}/{row['episodes']})")
    result.update(tasks=tasks, init_states=[init for _, init in episodes], num_envs=num_envs,
                  workers=env_cfg.workers, wall_s=time.time() - t0)
    return result


def _device_name(device: str) -> str:
    """The GPU's name for a results file ("NVIDIA H200"), or "cpu"."""
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def saved_policy(cfg):
    """The policy `vla` builds with `vla.init_from`'s weights (LoRA merged as vla_eval asks), in eval mode."""
    from learner.vla_checkpoint import build_policy

    if not cfg.vla.init_from:
        raise ValueError("nothing to evaluate: set vla.init_from=DIR (an SFT or VLA learner checkpoint, or the run "
                         "directory holding it)")
    policy = build_policy(cfg.vla, actor_device(cfg.actor, 0), seeding.seed_of(cfg.runner.seed, "evaluator_policy"),
                          merge_lora=cfg.vla_eval.merge_lora)
    policy.model.eval()
    return policy


def evaluate_vla(cfg, log) -> dict:
    """Evaluate the policy of a typed run config (sections `vla` with init_from, `vla_eval`) on its splits, or on
    the play table's chains."""
    import torch

    from envs.calvin import ENV_ID as CALVIN_ID
    from envs.libero import ENV_ID as LIBERO_ID
    from envs.maniskill import PUT_ON_PLATE_ID, SPLITS, make_maniskill_vector_env, split_seeds
    from learner.vla_checkpoint import resolve

    if cfg.env.id == CALVIN_ID:
        checkpoint = resolve(cfg.vla.init_from) if cfg.vla.init_from else None
        t_start = time.time()
        policy = saved_policy(cfg)
        device = str(policy.device)
        log.info(f"evaluating {checkpoint} on {cfg.eval.episodes} CALVIN chains ({device}, "
                 f"{'deterministic' if cfg.vla_eval.greedy else 'sampled'})")
        chains = evaluate_calvin(cfg, policy, log)
        return {"checkpoint": str(checkpoint), "config": cfg.name, "chains": chains,
                "first_chain": int(cfg.vla_eval.first_chain),
                "avg_len": chains["avg_len"], "greedy": bool(cfg.vla_eval.greedy), "env_steps": chains["env_steps"],
                "wall_s": time.time() - t_start, "device": _device_name(device)}
    if cfg.env.id == LIBERO_ID:
        checkpoint = resolve(cfg.vla.init_from)
        t_start = time.time()
        policy = saved_policy(cfg)
        device = str(policy.device)
        log.info(f"evaluating {checkpoint} on LIBERO-spatial: {cfg.eval.episodes} init states per task, "
                 f"{cfg.eval.num_envs} envs, policy on {device}")
        result = evaluate_libero(cfg, policy, log)
        log.info(f"LIBERO-spatial: success {result['success_rate']:.3f} ({result['successes']}/{result['episodes']}), "
                 f"{result['env_steps']:,} env steps, {result['wall_s']:.0f} s")
        return {"checkpoint": str(checkpoint), "config": cfg.name, "env": LIBERO_ID, "libero": result,
                "tasks": result["tasks"], "success_rate": result["success_rate"], "episodes": result["episodes"],
                "episodes_per_task": int(cfg.eval.episodes), "greedy": bool(cfg.vla_eval.greedy),
                "merged_lora": bool(cfg.vla_eval.merge_lora and cfg.vla.lora), "env_steps": result["env_steps"],
                "wall_s": time.time() - t_start, "device": _device_name(device)}
    if cfg.env.id != PUT_ON_PLATE_ID:
        raise ValueError(f"the VLA evaluator runs {PUT_ON_PLATE_ID}'s splits; env.id is {cfg.env.id}")
    unknown = [s for s in cfg.vla_eval.splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; {PUT_ON_PLATE_ID} has {list(SPLITS)}")
    checkpoint = resolve(cfg.vla.init_from)
    device = actor_device(cfg.actor, 0)
    t_start = time.time()
    policy = saved_policy(cfg)
    greedy = bool(cfg.vla_eval.greedy)
    log.info(f"evaluating {checkpoint} ({'merged' if cfg.vla_eval.merge_lora and cfg.vla.lora else 'as saved'}, "
             f"{'greedy' if greedy else 'sampled'}) on {', '.join(cfg.vla_eval.splits)}: {cfg.eval.episodes} "
             f"episodes each, {cfg.eval.num_envs} envs, {device}")
    splits: dict[str, dict] = {}
    for split in cfg.vla_eval.splits:
        t0 = time.time()
        env = make_maniskill_vector_env(split_env_config(cfg, split), num_envs=cfg.eval.num_envs)
        try:
            with torch.no_grad():
                result = run_seeded_episodes(env, lambda obs: policy.act(obs, deterministic=greedy),
                                             split_seeds(split, cfg.eval.episodes))
        finally:
            env.close()
        result["wall_s"] = time.time() - t0
        splits[split] = result
        log.info(f"{split}: success {result['success_rate']:.3f} ({result['successes']}/{result['episodes']}), "
                 f"{result['env_steps']:,} env steps, {result['wall_s']:.0f} s")
    return {"checkpoint": str(checkpoint), "config": cfg.name, "splits": splits,
            "success_rate": {s: r["success_rate"] for s, r in splits.items()},
            "episodes_per_split": cfg.eval.episodes, "num_envs": cfg.eval.num_envs, "greedy": greedy,
            "merged_lora": bool(cfg.vla_eval.merge_lora and cfg.vla.lora),
            "env_steps": sum(r["env_steps"] for r in splits.values()), "wall_s": time.time() - t_start,
            "device": _device_name(device)}

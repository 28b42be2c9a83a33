"""The data-parallel learner (learner/distributed.py): the same rollouts trained on 2 gloo ranks in real processes
give the weights that 1 rank gives (tiny OpenVLA with PPO and GRPO, the MLP's PPO; and a whole run through the
launcher); a rank that dies fails the learner with RankFailed naming it."""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from core import seeding
from core.config import ConfigError
from envs.maniskill.put_on_plate import INSTRUCTION_BYTES, encode_instruction
from launch.run_config import builder, load_config, typed
from learner.checkpoint import load_latest_checkpoint
from learner.distributed import RankFailed, RankGroup

REPO = Path(__file__).resolve().parents[2]

LOG = logging.getLogger("test")
TOLERANCE = 1e-5  # float32 rounding: shard sums against whole-minibatch means, batched values in other shapes


def learner_setup(preset: str, world_size: int, *overrides: str):
    cfg = load_config(preset, ["learner.device=cpu", f"learner.world_size={world_size}", *overrides])
    run = typed(cfg)
    return run, functools.partial(builder(cfg).make_algorithm, run), seeding.seed_of(run.runner.seed, "learner")


def train(preset: str, world_size: int, rollouts: list[dict], spaces=(None, None), *overrides: str):
    """What learner/on_policy.py does with each rollout, on `world_size` ranks: (trained weights, the last update's
    metrics, gradient steps)."""
    run, make_algorithm, seed = learner_setup(preset, world_size, *overrides)
    ranks = RankGroup(run.learner, make_algorithm, *spaces, seed, LOG)
    algorithm = make_algorithm(*spaces, ranks.device, seed)
    ranks.connect(algorithm)
    for rollout in rollouts:
        with ranks.guard():
            ranks.send("train", {"progress": 0.0}, rollout)
            metrics = algorithm.train(rollout, 0.0)
    ranks.stop()
    return {k: v.detach().clone() for k, v in algorithm.acting_weights().items()}, metrics, algorithm.gradient_steps


def max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


def vla_obs(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    words = ["put the red cube on the plate", "put the blue sphere on the plate"]
    return {"base_camera": torch.as_tensor(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)),
            "instruction": torch.as_tensor(np.array([encode_instruction(words[i % 2]) for i in range(n)],
                                                     np.uint8).reshape(n, INSTRUCTION_BYTES))}


def vla_rollout(preset: str, n: int, t: int, seed: int, ended: list[tuple[int, int]]) -> dict:
    """A rollout in replay/rollout_store.py's layout, acted by the config's tiny VLA (the learner's start) on random
    camera images; `ended`: (env, step) where an episode ended, alternately truncated and terminated."""
    cfg = load_config(preset, ["learner.device=cpu"])
    run = typed(cfg)
    policy = builder(cfg).make_policy(run, None, None, "cpu", seeding.seed_of(run.runner.seed, "learner"))
    rng = np.random.default_rng(seed)
    obs = vla_obs(n * t, seed)
    tokens, log_probs = policy.sample({k: v.numpy() for k, v in obs.items()})
    terminated, truncated = np.zeros((n, t), bool), np.zeros((n, t), bool)
    for i, (b, s) in enumerate(ended):
        (terminated if i % 2 else truncated)[b, s] = True
    steps = {"obs": {k: v.reshape(n, t, *v.shape[1:]) for k, v in obs.items()},
             "action": torch.as_tensor(tokens).reshape(n, t, -1),
             "log_prob": torch.as_tensor(log_probs).reshape(n, t, -1),
             "reward": torch.as_tensor(rng.uniform(0, 1, (n, t)).astype(np.float32)),
             "terminated": torch.as_tensor(terminated), "truncated": torch.as_tensor(truncated)}
    return {"steps": steps, "finals": {"obs": vla_obs(len(ended), seed + 1), "index": torch.tensor(ended).int()},
            "envs": {"last_obs": vla_obs(n, seed + 2)}}


def test_two_gloo_ranks_give_the_one_rank_vla_ppo_update():
    preset = "maniskill_ppo_openvla"
    # 3 envs x 3 steps = 9 rows, minibatches of 4: 4, 4, 1 rows; the 1-row minibatch leaves rank 1 without a row
    rollouts = [vla_rollout(preset, 3, 3, seed, [(0, 1), (2, 2)]) for seed in (0, 10)]
    one, one_metrics, steps = train(preset, 1, rollouts)
    two, two_metrics, two_steps = train(preset, 2, rollouts)
    assert steps == two_steps == 2 * 2 * 3  # 2 rollouts x 2 epochs x 3 minibatches
    difference = max_difference(one, two)
    print(f"VLA PPO: max |w(1 rank) - w(2 ranks)| = {difference:.3g}")
    assert difference < TOLERANCE
    assert max_difference(one, start_weights(preset)) > 100 * TOLERANCE  # the update moved the weights
    for key in ("train/actor/policy_loss", "train/critic/value_loss", "train/actor/clip_fraction",
                "train/actor/ratio_max_dev", "train/actor/grad_norm", "rollout/advantages_mean"):
        assert two_metrics[key] == pytest.approx(one_metrics[key], rel=1e-4, abs=1e-6), key


def start_weights(preset: str) -> dict:
    """The weights every rank starts from (the config's model at the learner's seed)."""
    run, make_algorithm, seed = learner_setup(preset, 1)
    return {k: v.detach() for k, v in make_algorithm(None, None, "cpu", seed).acting_weights().items()}


def test_two_gloo_ranks_give_the_one_rank_vla_grpo_update():
    preset = "maniskill_grpo_oft"
    rollout = vla_rollout(preset, 4, 2, 3, [])
    n, t = 4, 2
    rollout["steps"]["valid"] = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    # groups of 2: (0.0, 1.0) mixed, (1.0, 1.0) uniform and dropped: 3 rows kept, one minibatch of 3
    rollout["envs"].update(episode_return=torch.tensor([0.0, 1.0, 1.0, 1.0]),
                           episode_success=torch.tensor([False, True, True, True]),
                           episode_length=torch.full((n,), t))
    overrides = ("grpo.group_size=2", "grpo.lr=1e-3")  # 2 Adam steps of 1e-3: far above the tolerance
    one, one_metrics, steps = train(preset, 1, [rollout], (None, None), *overrides)
    two, two_metrics, _ = train(preset, 2, [rollout], (None, None), *overrides)
    assert steps > 0 and one_metrics["grpo/steps_trained"] == two_metrics["grpo/steps_trained"] == 3
    difference = max_difference(one, two)
    print(f"VLA GRPO: max |w(1 rank) - w(2 ranks)| = {difference:.3g}")
    assert difference < TOLERANCE
    assert max_difference(one, start_weights(preset)) > 100 * TOLERANCE
    assert two_metrics["train/actor/policy_loss"] == pytest.approx(one_metrics["train/actor/policy_loss"], rel=1e-4,
                                                                   abs=1e-6)


def cartpole_rollout(n: int, t: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    done = rng.random((n, t)) < 0.1
    ended = np.argwhere(done)
    return {"steps": {"obs": torch.as_tensor(rng.normal(size=(n, t, 4)).astype(np.float32)),
                      "action": torch.as_tensor(rng.integers(0, 2, (n, t))),
                      "log_prob": torch.full((n, t), float(np.log(0.5))),
                      "reward": torch.ones(n, t), "terminated": torch.as_tensor(done),
                      "truncated": torch.zeros(n, t, dtype=torch.bool)},
            "finals": {"obs": torch.as_tensor(rng.normal(size=(len(ended), 4)).astype(np.float32)),
                       "index": torch.as_tensor(ended).int()},
            "envs": {"last_obs": torch.as_tensor(rng.normal(size=(n, 4)).astype(np.float32))}}


CARTPOLE_SPACES = (gym.make("CartPole-v1").observation_space, gym.make("CartPole-v1").action_space)


def test_two_gloo_ranks_give_the_one_rank_mlp_ppo_update():
    rollouts = [cartpole_rollout(8, 50, seed) for seed in range(3)]
    overrides = ("ppo.epochs=3", "ppo.minibatch_size=64")  # 400 rows: 6 minibatches of 64 and one of 16
    one, _, steps = train("cartpole_ppo_mlp", 1, rollouts, CARTPOLE_SPACES, *overrides)
    two, _, _ = train("cartpole_ppo_mlp", 2, rollouts, CARTPOLE_SPACES, *overrides)
    assert steps == 3 * 3 * 7
    difference = max_difference(one, two)
    print(f"MLP PPO: max |w(1 rank) - w(2 ranks)| = {difference:.3g}")
    assert difference < TOLERANCE


def test_a_minibatch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(ConfigError, match="ppo.minibatch_size"):
        load_config("cartpole_ppo_mlp", ["learner.world_size=3", "ppo.minibatch_size=64"])


def test_a_rank_that_dies_fails_the_learner_naming_it():
    run, make_algorithm, seed = learner_setup("cartpole_ppo_mlp", 2)
    ranks = RankGroup(run.learner, make_algorithm, *CARTPOLE_SPACES, seed, LOG)
    algorithm = make_algorithm(*CARTPOLE_SPACES, ranks.device, seed)
    ranks.connect(algorithm)
    os.kill(ranks.processes[0].pid, signal.SIGKILL)
    ranks.processes[0].join(10)
    with pytest.raises(RankFailed) as failed:
        with ranks.guard():
            rollout = cartpole_rollout(8, 50, 0)
            ranks.send("train", {"progress": 0.0}, rollout)
            algorithm.train(rollout, 0.0)
    assert failed.value.rank == 1 and failed.value.exitcode == -signal.SIGKILL
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_run_on_two_ranks_trains_the_weights_of_one_rank(tmp_path):
    """CartPole PPO through the launcher, 3 rollouts: the same actions are taken, so the same weights come out."""
    models = {}
    for world_size in (1, 2):
        run_dir = tmp_path / f"w{world_size}"
        command = [sys.executable, str(REPO / "launch" / "run_sync.py"), "cartpole_ppo_mlp", f"runner.run_dir={run_dir}",
                   "logging.wandb=disabled", "logging.tensorboard=false", "logging.progress_bar=false",
                   "runner.max_env_steps=3000", "eval.enabled=false", f"learner.world_size={world_size}"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-4000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
        assert summary["roles"]["learner"]["counters"]["updates"] == 3 * 10 * 4  # rollouts x epochs x minibatches
        models[world_size] = load_latest_checkpoint(run_dir / "checkpoints")[0]["algorithm"]["model"]
    difference = max_difference(models[1], models[2])
    print(f"CartPole run: max |w(1 rank) - w(2 ranks)| = {difference:.3g}")
    assert difference < TOLERANCE

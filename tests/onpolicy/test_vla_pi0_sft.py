"""pi0 on the play table, around PPO: SFT with the flow-matching loss on expert demonstrations it records itself,
its checkpoint as the PPO policy's start (vla.init_from), Flow-Noise through the learner's update, and the
evaluator (CALVIN's chains) on the saved -> loaded policy. A tiny random pi0 and 16 px cameras (the CPU configs)."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("pybullet")

from core import seeding, tree  # noqa: E402
from envs.calvin.play_table import observation_space  # noqa: E402
from core.log import get_logger  # noqa: E402
from learner.sft import load_frames, run_sft  # noqa: E402
from learner.vla_checkpoint import build_policy, load_vla  # noqa: E402
from pipelines.vla import VLAPPOBuilder  # noqa: E402
from vla_helpers import QUIET, config  # noqa: E402

LOG = get_logger("test_pi0_sft")


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """calvin_sft_pi0: 1 recorded open_drawer episode of the expert, 20 flow-matching steps."""
    run_dir = tmp_path_factory.mktemp("sft")
    rows = []
    result = run_sft(config("calvin_sft_pi0", f"runner.run_dir={run_dir}"), run_dir,
                     lambda row, step: rows.append(row), LOG)
    return run_dir, result, rows


def test_sft_lowers_the_flow_matching_loss_and_its_checkpoint_starts_ppo_with_the_same_policy(sft_run):
    run_dir, result, rows = sft_run
    summary = result.summary
    assert summary["recorded"] == {"attempted": 1, "successes": 1, "written": 1} and summary["steps"] == 20
    assert summary["flow_demos_end"] < 0.9 * summary["flow_demos_start"]
    assert rows[0]["sft/flow_demos"] == summary["flow_demos_start"]
    # the statistics are the demonstrations' (pi0: mean/std of the state and the actions), saved with the weights
    frames = load_frames(run_dir / "demos", ("rgb_static", "rgb_gripper"), 5, "robot_obs")
    saved = load_vla(run_dir)
    assert np.allclose(saved.norm_stats["actions"]["mean"], frames.actions.mean(0), atol=1e-6)
    assert np.allclose(saved.norm_stats["state"]["std"], frames.obs["robot_obs"].std(0), atol=1e-5)
    assert set(saved.weights) == set(result.policy.trainable_weights())
    # The PPO configs start from it: the same weights and statistics, so the same actions for the same noise
    # (the same sampling seed), deterministic (ODE) and Flow-SDE alike.
    obs = frames.batch(np.array([0, len(frames) // 2, len(frames) - 1]))
    sft_policy = build_policy(config("calvin_sft_pi0", f"vla.init_from={run_dir}").vla, "cpu", seed=7)
    ppo_policy = build_policy(config("calvin_ppo_pi0_sde", f"vla.init_from={run_dir}").vla, "cpu", seed=7)
    for name, value in result.policy.trainable_weights().items():
        assert np.array_equal(ppo_policy.trainable_weights()[name], value), name
    assert np.array_equal(sft_policy.act(obs, deterministic=True), ppo_policy.act(obs, deterministic=True))
    (rec_a, lp_a), (rec_b, lp_b) = sft_policy.sample(obs), ppo_policy.sample(obs)
    assert np.array_equal(rec_a, rec_b) and np.array_equal(lp_a, lp_b)
    fresh = build_policy(config("calvin_ppo_pi0_sde").vla, "cpu", seed=7, obs_space=observation_space(16, 16))
    assert not np.array_equal(fresh.act(obs, deterministic=True), ppo_policy.act(obs, deterministic=True))


def play_table_rollout(policy, cfg, decisions: int = 3) -> dict:
    """`decisions` chunked steps of one real play-table env, laid out as the rollout store hands them to PPO."""
    env = gym.make(cfg.env.id, **dict(cfg.env.kwargs))
    obs, _ = env.reset(seed=3)
    rows = []
    for _ in range(decisions):
        batch = {k: v[None] for k, v in obs.items()}
        recorded, log_prob = policy.sample(batch)
        reward, terminated = 0.0, False
        for action in policy.env_actions(recorded)[0]:
            obs, r, terminated, _, _ = env.step(action)
            reward += r
            if terminated:
                break
        rows.append((batch, recorded[0], log_prob[0], reward, terminated))
        if terminated:
            obs, _ = env.reset(seed=4)
    env.close()
    steps = {"obs": tree.map(lambda *a: torch.as_tensor(np.concatenate(a))[None], *[r[0] for r in rows]),
             "action": torch.as_tensor(np.stack([r[1] for r in rows]))[None],
             "log_prob": torch.as_tensor(np.stack([r[2] for r in rows]))[None],
             "reward": torch.tensor([[r[3] for r in rows]], dtype=torch.float32),
             "terminated": torch.tensor([[r[4] for r in rows]]),
             "truncated": torch.zeros(1, decisions, dtype=torch.bool)}
    last = {k: torch.as_tensor(v[None]) for k, v in obs.items()}
    finals = {"obs": tree.map(lambda a: a[:0], last), "index": torch.zeros(0, 2, dtype=torch.int32)}
    return {"steps": steps, "finals": finals, "envs": {"last_obs": last}}


def test_flow_noise_ppo_update_from_the_sft_checkpoint_moves_the_policy_and_the_noise_head(sft_run):
    run_dir, _, _ = sft_run
    cfg = config("calvin_ppo_pi0_noise", f"vla.init_from={run_dir}", "ppo.minibatch_size=1")
    algorithm = VLAPPOBuilder().make_algorithm(cfg, None, None, "cpu", seeding.seed_of(0, "learner"))
    policy = algorithm.policy
    assert policy.cfg.sampler == "noise"
    before = {n: v.copy() for n, v in policy.trainable_weights().items()}
    rollout = play_table_rollout(policy, cfg)
    metrics = algorithm.train(rollout)
    # 3 decisions, minibatches of 1, 2 epochs: 6 gradient steps; the first minibatch's ratio is exactly 1 (the
    # learner recomputes the actor's log-prob), later ones moved
    assert algorithm.gradient_steps == 6
    assert metrics["rollout/advantages_abs_max"] > 0 and metrics["train/actor/ratio_max_dev"] > 0
    assert np.isfinite(metrics["train/actor/approx_kl"]) and np.isfinite(metrics["train/actor/entropy_loss"])
    after = policy.trainable_weights()
    moved = {n for n in before if not np.array_equal(before[n], after[n])}
    assert any("noise_head" in n for n in moved) and any("gemma_expert" in n for n in moved)
    assert any("value_head" in n for n in moved)
    assert set(algorithm.acting_weights()) == set(before)  # published: exactly the trained parameters


def test_evaluator_runs_calvin_chains_with_the_saved_pi0(sft_run, tmp_path):
    from launch.eval_vla import main

    run_dir, _, _ = sft_run
    out = tmp_path / "eval_run"
    code = main(["calvin_sft_pi0", f"vla.init_from={run_dir}", f"runner.run_dir={out}", "eval.episodes=1",
                 "vla_eval.subtask_steps=10", *QUIET])
    assert code == 0
    [path] = list((out / "eval").glob("*.json"))
    summary = json.loads(path.read_text())
    chains = summary["chains"]
    assert chains["chains"] == 1 and summary["greedy"] is True
    done = chains["lengths"][0]
    # each subtask gets 10 steps (2 chunks of 5): a chain that stops at its first failure took 10 per subtask tried
    assert summary["env_steps"] == 10 * min(done + 1, 5) and summary["avg_len"] == done

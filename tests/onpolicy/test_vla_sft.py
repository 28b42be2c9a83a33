"""The SFT stage of a VLA (learner/sft.py) on the scripted expert's demonstrations of ZarlPutOnPlate-v1, its
checkpoint as the RL policy's start (vla.init_from), and the offline evaluator (actors/vla_evaluator.py) with the
saved -> loaded -> LoRA-merged policy. A tiny random OpenVLA and 8-step episodes (the CPU configs)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("mani_skill")

from actors.vla_evaluator import evaluate_vla, run_seeded_episodes  # noqa: E402
from core.config import ConfigError  # noqa: E402
from core.log import get_logger  # noqa: E402
from envs.demos import DemoDataset  # noqa: E402
from launch.run_config import load_config  # noqa: E402
from learner.sft import chunk_targets, load_frames, run_sft  # noqa: E402
from learner.vla_checkpoint import build_policy, load_vla, resolve  # noqa: E402
from policies.vla.build import build_vla_policy  # noqa: E402
from vla_helpers import QUIET, config  # noqa: E402

LOG = get_logger("test_sft")


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """SFT of the tiny OpenVLA on 2 expert episodes it records itself (1 env, 8 steps each)."""
    run_dir = tmp_path_factory.mktemp("sft")
    rows = []
    cfg = config("maniskill_sft_openvla", f"runner.run_dir={run_dir}", "env.num_envs=1", "sft.steps=30")
    result = run_sft(cfg, run_dir, lambda row, step: rows.append(row), LOG)
    return run_dir, result, rows


def demo_batch(run_dir, chunk: int, n: int = 4):
    frames = load_frames(run_dir / "demos", "base_camera", chunk)
    idx = np.arange(n) * (len(frames) // n)
    return frames.batch(idx)


def test_sft_records_demos_computes_statistics_and_lowers_the_cross_entropy(sft_run):
    run_dir, result, rows = sft_run
    summary = result.summary
    assert summary["recorded"] == {"attempted": 2, "successes": 0, "written": 2}
    assert summary["episodes"] == 2 and summary["frames"] == 16 and summary["steps"] == 30
    # before training the 256 action ids are about equally likely: cross-entropy ~ log 256 = 5.55
    start, end = rows[0]["sft/ce_demos"], rows[-1]["sft/ce_demos"]
    assert abs(start - np.log(256)) < 0.3 and start == summary["ce_demos_start"]
    assert end < start - 0.5 and end == summary["ce_demos_end"]
    trained = [r for r in rows if "sft/ce" in r]
    assert [r["updates"] for r in trained] == [5, 10, 15, 20, 25, 30]  # sft.log_every=5
    assert trained[-1]["sft/ce"] < trained[0]["sft/ce"]
    # the statistics are the demonstrations' q01/q99, saved with the weights
    ds = DemoDataset(run_dir / "demos")
    actions = np.concatenate([ds.episode(e)["action"] for e in range(ds.num_episodes)])
    saved = load_vla(run_dir)
    assert saved.path == result.checkpoint and saved.path.parent == run_dir / "checkpoints"
    np.testing.assert_allclose(saved.action_stats.q01, np.quantile(actions, 0.01, axis=0))
    np.testing.assert_allclose(saved.action_stats.q99, np.quantile(actions, 0.99, axis=0))
    assert saved.action_stats.mask.tolist() == [True] * 6 + [False]
    # only the trained parts are saved: LoRA adapters and the value head
    assert saved.weights and all("lora_" in n or "value_head" in n for n in saved.weights)


def test_init_from_gives_the_rl_policy_the_sft_policy(sft_run):
    run_dir, result, _ = sft_run
    rl = config("maniskill_ppo_openvla", f"vla.init_from={run_dir}")
    policy = build_policy(rl.vla, "cpu", seed=123)
    fresh = build_policy(config("maniskill_ppo_openvla").vla, "cpu", seed=123)
    obs = demo_batch(run_dir, 1)
    for p in (policy, result.policy, fresh):
        p.model.eval()
    with torch.no_grad():
        tokens = result.policy.decode(obs, greedy=True).tokens
        want = result.policy.evaluate(obs, tokens).log_probs
        got = policy.evaluate(obs, tokens)
        base = fresh.evaluate(obs, tokens).log_probs
    torch.testing.assert_close(got.log_probs, want)
    assert float((base - want).abs().max()) > 1e-2  # without init_from: another policy
    np.testing.assert_array_equal(policy.act(obs, deterministic=True), result.policy.act(obs, deterministic=True))
    np.testing.assert_array_equal(policy.action_stats.q99, result.policy.action_stats.q99)
    assert set(policy.trainable_weights()) == set(load_vla(run_dir).weights)


def test_merged_policy_acts_as_the_adapter_policy(sft_run):
    run_dir, _, _ = sft_run
    cfg = config("maniskill_sft_openvla", f"vla.init_from={run_dir}").vla
    adapter, merged = (build_policy(cfg, "cpu", 0, merge_lora=m) for m in (False, True))
    assert not any("lora_" in n for n, _ in merged.model.named_parameters())
    obs = demo_batch(run_dir, 1)
    adapter.model.eval()
    merged.model.eval()
    with torch.no_grad():
        a, m = adapter.decode(obs, greedy=True), merged.decode(obs, greedy=True)
        torch.testing.assert_close(m.log_probs, a.log_probs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m.values, a.values, atol=1e-5, rtol=1e-5)
    assert torch.equal(m.tokens, a.tokens)


def test_oft_sft_command_and_the_evaluator_on_a_split(sft_run, tmp_path):
    """OFT: chunks of 8 actions as targets, through launch/run_sft.py's main on the recorded demos; then the
    evaluator runs the merged OFT policy on the train split, one 8-action chunk per 8-step episode."""
    from launch.run_sft import main

    demos = sft_run[0] / "demos"
    run_dir = tmp_path / "oft"
    assert main(["maniskill_sft_oft", f"runner.run_dir={run_dir}", f"sft.demos={demos}", "sft.steps=10",
                 *QUIET]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert rows[-1]["updates"] == 10 and rows[-1]["sft/ce_demos"] < rows[0]["sft/ce_demos"] - 0.1
    assert summary["recorded"] is None and summary["frames"] == 16
    cfg = config("maniskill_sft_oft", f"vla.init_from={run_dir}", "vla_eval.splits=[train]", "eval.episodes=2",
                 "eval.num_envs=1")
    out = evaluate_vla(cfg, LOG)
    train = out["splits"]["train"]
    assert out["checkpoint"] == summary["checkpoint"] and out["merged_lora"] and out["greedy"]
    assert train["episodes"] == 2 and train["length"] == [8, 8] and train["env_steps"] == 16
    assert train["success_rate"] == np.mean(train["success"])
    assert out["success_rate"] == {"train": train["success_rate"]}


@pytest.fixture(scope="module")
def small_env():
    """One ZarlPutOnPlate-v1 env with 32-step episodes (the expert needs about 26 steps), shared: making one costs
    more than the steps of these tests."""
    from envs.maniskill import ManiSkillVectorEnv

    env = ManiSkillVectorEnv("ZarlPutOnPlate-v1", 1, obs_mode="rgb", camera_size=32, wrist_camera_size=16,
                             max_episode_steps=32)
    yield env
    env.close()


def test_success_counts_the_envs_info_success_per_episode(small_env):
    """The scripted expert through the evaluator's episode loop: one episode per seed, success from info."""
    from envs.maniskill import split_seeds
    from envs.maniskill.expert import ScriptedExpert

    env = small_env
    expert = ScriptedExpert("ZarlPutOnPlate-v1", 1)
    seen = []

    def act(obs):
        return expert.act(env.privileged_state()).cpu().numpy()

    def recording_step(actions):  # what the env reported, to count against
        out = type(env).step(env, actions)
        seen.append(bool(out[4]["success"][0]))
        return out

    env.step = recording_step
    try:
        result = run_seeded_episodes(env, act, split_seeds("train", 1))
    finally:
        del env.step
    assert result["episodes"] == 1 and result["success"] == [True] and result["success_rate"] == 1.0
    # success terminates the episode: the last step is the first successful one, and every step is counted
    assert seen[-1] and not any(seen[:-1]) and result["length"] == [len(seen)] and result["env_steps"] == len(seen)


def test_the_online_evaluators_episode_loop_runs_a_vlas_chunks(small_env):
    """actors/evaluator.py's run_episodes (the evaluator process of an RL run with eval.enabled) steps an OFT
    policy's chunk of 8 actions one by one: a 32-step episode takes 4 decisions."""
    from actors.evaluator import run_episodes

    policy = build_policy(config("maniskill_ppo_oft").vla, "cpu", 0)
    decisions = []
    act = policy.act
    policy.act = lambda obs, deterministic=False: decisions.append(1) or act(obs, deterministic)
    metrics, _ = run_episodes(small_env, policy, 1, seed=[7])
    assert metrics["eval/episodes"] == 1 and metrics["eval/episode_len"] == 32 and len(decisions) == 4
    assert metrics["eval/success_rate"] == 0.0


def test_chunk_targets_repeat_the_last_action():
    actions = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    got = chunk_targets(actions, 4)
    assert got.shape == (3, 4, 2)
    np.testing.assert_array_equal(got[0], actions[[0, 1, 2, 2]])
    np.testing.assert_array_equal(got[2], actions[[2, 2, 2, 2]])
    np.testing.assert_array_equal(chunk_targets(actions, 1)[:, 0], actions)


def test_bad_inputs_are_named(sft_run, tmp_path):
    run_dir, _, _ = sft_run
    with pytest.raises(ConfigError, match="vla.init_from=.*nowhere.*no such directory"):
        load_config("maniskill_ppo_openvla", [f"vla.init_from={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="no such directory"):
        resolve(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        resolve(tmp_path / "empty")
    with pytest.raises(ConfigError, match="vla_eval.splits"):
        load_config("maniskill_sft_openvla", ["vla_eval.splits=[train,moon]"])
    # weights trained on one base model do not load into another
    with pytest.raises(ValueError, match="vla.lora_rank: saved 4, this config 8"):
        build_policy(config("maniskill_ppo_openvla", f"vla.init_from={run_dir}", "vla.lora_rank=8").vla, "cpu", 0)
    with pytest.raises(ValueError, match="vla.init_from=.*build_policy"):  # the builder never ignores init_from
        build_vla_policy(config("maniskill_ppo_openvla", f"vla.init_from={run_dir}").vla, "cpu", 0)
    with pytest.raises(ValueError, match="vla.decoding: saved 'autoregressive'"):
        build_policy(config("maniskill_ppo_oft", f"vla.init_from={run_dir}").vla, "cpu", 0)
    from launch.cli import main as run_sync
    from launch.eval_vla import main as eval_vla
    from launch.run_sft import main as run_sft_main

    assert eval_vla(["maniskill_sft_openvla"]) == 2  # no vla.init_from
    assert eval_vla(["maniskill_sft_openvla", f"vla.init_from={tmp_path / 'empty'}"]) == 2
    assert run_sync(["maniskill_sft_openvla"], expect="sync") == 2  # an SFT config is not a run of roles
    assert run_sft_main(["maniskill_ppo_openvla"]) == 2
    with pytest.raises(FileNotFoundError, match="not a demonstration data set"):
        load_frames(tmp_path / "empty", "base_camera", 1)
    with pytest.raises(ValueError, match="no camera 'wrist'"):
        load_frames(run_dir / "demos", "wrist", 1)


def test_a_vla_learner_checkpoint_loads_like_an_sft_one(sft_run, tmp_path):
    """The on-policy learner's checkpoint layout (learner/on_policy.py: algorithm state + config) is read too, with
    the action statistics the policy had, so an RL run's result evaluates and starts another run the same way."""
    import dataclasses

    from learner.checkpoint import save_checkpoint
    from learner.vla import VLAPPO

    rl = config("maniskill_ppo_openvla", f"vla.init_from={sft_run[0]}")
    algorithm = VLAPPO(build_policy(rl.vla, "cpu", 0), rl.ppo, rl.vla)
    save_checkpoint({"algorithm": algorithm.state_dict(), "config": dataclasses.asdict(rl)}, tmp_path / "checkpoints",
                    label="u0")
    saved, sft = load_vla(tmp_path), load_vla(sft_run[0])
    assert saved.path.parent == tmp_path / "checkpoints" and saved.vla["init_from"] == str(sft_run[0])
    assert set(saved.weights) == set(sft.weights)
    assert all(np.array_equal(saved.weights[n], sft.weights[n]) for n in sft.weights)
    np.testing.assert_array_equal(saved.action_stats.q01, sft.action_stats.q01)


def test_action_statistics_normalise_as_they_unnormalise():
    from policies.vla.action_tokenizer import ActionStats

    rng = np.random.default_rng(0)
    actions = np.concatenate([rng.uniform(-0.5, 0.3, (200, 2)), np.zeros((200, 1)),
                              rng.choice([-1.0, 1.0], (200, 1))], axis=1)
    stats = ActionStats.from_actions(actions)
    np.testing.assert_allclose(stats.q01[:2], np.quantile(actions[:, :2], 0.01, axis=0))
    assert stats.mask.tolist() == [True, True, True, False] and stats.q01[2] == stats.q99[2] == 0
    inside = np.clip(actions, stats.q01, stats.q99)
    norm = stats.normalize(inside)
    assert norm.min() >= -1 and norm.max() <= 1
    np.testing.assert_allclose(stats.unnormalize(norm)[:, :2], inside[:, :2], atol=1e-7)
    np.testing.assert_array_equal(norm[:, 3], actions[:, 3])  # the gripper stays as it is
    np.testing.assert_array_equal(stats.unnormalize(norm)[:, 2], 0)  # a constant dim comes back as its value
    assert stats.normalize(np.array([[5.0, -5.0, 0.0, 1.0]]))[0, :2].tolist() == [1.0, -1.0]  # clipped
    round_trip = ActionStats.from_norm_stats(stats.to_norm_stats("demos"))
    np.testing.assert_array_equal(round_trip.q99, stats.q99)


"""pi0.5 on ZarlGSPutCubeOnPlate-v0 (issue 20), the CPU-sized version of scripts/gs_gpu.sh's training steps in one
process (each RGB ManiSkill process compiles its shaders on the CPU Vulkan driver, ~40 s): SFT on expert
demonstrations rendered with Gaussians (recorded by the SFT stage itself), a Flow-SDE PPO update from its checkpoint
on a rollout of the Gaussian-rendered env, and the two-way appearance-gap table (launch/appearance_gap.py) of saved
checkpoints under both renderings. A tiny random pi0.5, tiny Gaussian assets (tests/conftest.py), a 32 px camera.
Marked slow: ~100 s with the asset build (shared with tests/envs/test_gs_put_cube_on_plate.py in one session)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

try:
    import mani_skill  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover
    pytest.fail(f"ManiSkill is not installed ({e}): run scripts/setup.sh", pytrace=False)

from core import seeding  # noqa: E402
from core.log import get_logger  # noqa: E402
from envs.maniskill import make_maniskill_vector_env  # noqa: E402
from envs.maniskill.put_cube_on_plate import INSTRUCTION  # noqa: E402
from learner.sft import run_sft  # noqa: E402
from learner.vla_checkpoint import load_vla, save_vla  # noqa: E402
from pipelines.vla import VLAPPOBuilder  # noqa: E402
from vla_helpers import REPO, config  # noqa: E402

pytestmark = pytest.mark.slow
LOG = get_logger("test_pi05_gs")
STATE_DIM = 26  # the Panda's 9 joint positions and 9 velocities, the TCP pose (7), grasped (1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models and renders on a shared 2-core machine
    yield
    torch.set_num_threads(before)


def gs(assets, *overrides: str) -> list[str]:
    return [f"env.kwargs.gaussian_assets={assets}", *overrides]


@pytest.fixture(scope="module")
def sft_run(tiny_gs_assets, tmp_path_factory):
    """gs_sft_pi05: 2 expert episodes of 5 steps recorded with Gaussian frames, one flow-matching step."""
    run_dir = tmp_path_factory.mktemp("gs_sft")
    cfg = config("gs_sft_pi05", *gs(tiny_gs_assets[0], f"runner.run_dir={run_dir}", "sft.steps=1", "sft.log_every=1",
                                    "env.max_episode_steps=5"))
    result = run_sft(cfg, run_dir, lambda row, step: None, LOG)
    return run_dir, result


def test_sft_on_gaussian_demos_saves_the_envs_observation_layout(sft_run):
    run_dir, result = sft_run
    summary = result.summary
    assert summary["recorded"] == {"attempted": 2, "successes": 0, "written": 2} and summary["steps"] == 1
    assert summary["frames"] == 10 and np.isfinite(summary["flow_demos_end"])
    saved = load_vla(run_dir)
    # the layout comes from the env's observation space (via the demonstrations): its one camera and its state
    assert saved.layout == {"image_keys": ["base_camera"], "state_key": "state", "state_dim": STATE_DIM}
    assert result.policy.model.config.state_dim == STATE_DIM and result.policy.model.config.num_images == 1
    assert len(saved.norm_stats["state"]["q01"]) == STATE_DIM and len(saved.norm_stats["actions"]["q99"]) == 7


def gs_rollout(policy, env, seed: int) -> dict:
    """One chunked decision per env of the Gaussian-rendered vector env, in the rollout store's layout
    ([envs, decisions, ...])."""
    obs = env.reset(seed=seed)
    recorded, log_prob = policy.sample(obs)
    last, rewards, terminated, truncated, _ = env.chunk_step(policy.env_actions(recorded))
    assert not (terminated.any() or truncated.any())  # 5 of the episode's 10 steps
    n = env.num_envs
    steps = {"obs": {k: torch.as_tensor(v)[:, None] for k, v in obs.items()},
             "action": torch.as_tensor(recorded)[:, None], "log_prob": torch.as_tensor(log_prob)[:, None],
             "reward": torch.as_tensor(rewards.sum(1), dtype=torch.float32)[:, None],
             "terminated": torch.zeros(n, 1, dtype=torch.bool), "truncated": torch.zeros(n, 1, dtype=torch.bool)}
    last_obs = {k: torch.as_tensor(v) for k, v in last.items()}
    finals = {"obs": {k: v[:0] for k, v in last_obs.items()}, "index": torch.zeros(0, 2, dtype=torch.int32)}
    return {"steps": steps, "finals": finals, "envs": {"last_obs": last_obs}}


@pytest.fixture(scope="module")
def gs_env(tiny_gs_assets):
    env = make_maniskill_vector_env(config("gs_ppo_pi05", *gs(tiny_gs_assets[0])).env)
    yield env
    env.close()


def test_flow_sde_ppo_update_from_the_sft_checkpoint_on_the_gaussian_env(sft_run, gs_env, tiny_gs_assets, tmp_path):
    run_dir, _ = sft_run
    cfg = config("gs_ppo_pi05", *gs(tiny_gs_assets[0], f"vla.init_from={run_dir}", "ppo.minibatch_size=1"))
    space = gs_env.single_observation_space
    assert set(space) == {"state", "base_camera", "instruction"} and space["state"].shape == (STATE_DIM,)
    algorithm = VLAPPOBuilder().make_algorithm(cfg, space, gs_env.single_action_space, "cpu",
                                               seeding.seed_of(0, "learner"))
    policy = algorithm.policy
    assert policy.cfg.sampler == "sde" and policy.cfg.image_keys == ("base_camera",)
    before = {n: v.copy() for n, v in policy.trainable_weights().items()}
    metrics = algorithm.train(gs_rollout(policy, gs_env, seed=11))
    # 2 envs x 1 decision, minibatches of 1, 2 epochs: 4 gradient steps
    assert algorithm.gradient_steps == 4
    assert metrics["rollout/advantages_abs_max"] > 0 and metrics["train/actor/ratio_max_dev"] > 0
    after = policy.trainable_weights()
    moved = {n for n in before if not np.array_equal(before[n], after[n])}
    assert any("gemma_expert" in n for n in moved) and any("value_head" in n for n in moved)
    # saved as the learner saves it, it rebuilds with the same layout
    path = save_vla(policy, cfg.vla, tmp_path / "ppo", label="u1")
    assert load_vla(path).layout == load_vla(run_dir).layout


def test_appearance_gap_table_of_saved_policies_under_both_renderings(sft_run, tiny_gs_assets, tmp_path):
    from launch.appearance_gap import evaluate_gap, write

    run_dir, _ = sft_run
    cfg = config("gs_ppo_pi05", *gs(tiny_gs_assets[0], "env.max_episode_steps=5"))
    # one checkpoint in both rows: the same policy under the same rendering must score the same on the same seeds
    result = evaluate_gap(cfg, {"gaussians": str(run_dir), "simulator": str(run_dir)}, episodes=2, num_envs=2,
                          log=lambda *_: None)
    cells = {(c["trained_on"], c["evaluated_on"]): c for c in result["cells"]}
    assert set(cells) == {(t, e) for t in ("gaussians", "simulator") for e in ("gaussians", "simulator")}
    assert all(c["episodes"] == 2 and c["env_steps"] == 10 for c in cells.values())  # 2 episodes of 5 steps
    for rendering in ("gaussians", "simulator"):
        assert cells[("gaussians", rendering)]["successes"] == cells[("simulator", rendering)]["successes"]
    assert result["gap"]["gaussians"] == -result["gap"]["simulator"]
    js, md = write(result, tmp_path / "gap")
    assert json.loads(js.read_text())["seeds"] == result["seeds"] and len(result["seeds"]) == 2
    assert md.read_text().count("\n| ") == 3  # header + 2 rows (the separator line starts "|---")


def test_gpu_script_parses_and_its_configs_load(tiny_gs_assets):
    """scripts/gs_gpu.sh (the H200 run) is valid bash, and its SFT / PPO configs load with its GPU overrides."""
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gs_gpu.sh")]).returncode == 0
    from launch.run_config import load_config

    sizes = ["vla.model=small_pi05", "vla.pi0_horizon=10", "env.kwargs.camera_size=224", "env.max_episode_steps=100",
             "env.kwargs.gaussian_backend=gsplat", "learner.device=cuda"]
    load_config("gs_sft_pi05", gs(tiny_gs_assets[0], *sizes, "sft.record_episodes=200"))
    load_config("gs_ppo_pi05", gs(tiny_gs_assets[0], *sizes, "env.num_envs=64", "ppo.epochs=4", "runner.max_wall_s=3600"))
    assert INSTRUCTION == config("gs_ppo_pi05").vla.instruction


def test_gap_command_line_refuses_bad_arguments():
    from launch.appearance_gap import main, parse_trained

    assert parse_trained(["gaussians=/a", "simulator=/b"]) == {"gaussians": "/a", "simulator": "/b"}
    # overrides before and after the options; a rendering the env does not have is refused
    assert main(["gs_ppo_pi05", "env.max_episode_steps=5", "--trained", "photos=/a", "--episodes", "2"]) == 2
    assert main(["gs_ppo_pi05", "--trained", "gaussians=/a", "--trained", "gaussians=/b"]) == 2
    assert main(["gs_ppo_pi05", "--episodes", "2"]) == 2  # nothing to evaluate
    assert main(["cartpole_ppo_mlp", "--trained", "gaussians=/a"]) == 2  # not a VLA config

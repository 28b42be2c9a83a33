"""SmallPi0 (policies/vla/small_pi0.py): pi0 / pi0.5 over the installed pretrained encoders (EfficientNet-Lite0,
MiniLM-L6), through Pi0Policy."""
import numpy as np
import pytest
import torch

from policies.vla.pi0_policy import Pi0Policy, Pi0PolicyConfig
from policies.vla.pi0_build import build_pi0, load_pi0
from policies.vla.small_pi0 import SmallPi0, small_pi0_config

PLAY_TABLE = dict(image_keys=("rgb_static", "rgb_gripper"), state_key="robot_obs")  # the observations below


def observation(b: int = 2):
    rng = np.random.default_rng(0)
    return {"rgb_static": rng.integers(0, 256, (b, 80, 80, 3), dtype=np.uint8),
            "rgb_gripper": rng.integers(0, 256, (b, 40, 40, 3), dtype=np.uint8),
            "robot_obs": rng.uniform(-1, 1, (b, 15)).astype(np.float32),
            "instruction": ["open the drawer", "lift the red block from the table"][:b]}


def tiny_small_config(pi05: bool):
    return small_pi0_config(pi05, hidden=64, expert_hidden=64, layers=2, head_dim=32, horizon=4,
                            small=dict(image_size=64), value_head_hidden=[32, 16, 8])


@pytest.mark.parametrize("pi05,sampler", [(False, "sde"), (True, "noise")])
def test_small_pi0_samples_scores_and_round_trips(pi05, sampler, tmp_path):
    torch.manual_seed(0)
    model = build_pi0(tiny_small_config(pi05))
    assert isinstance(model, SmallPi0)
    assert model.image_encoder._bn0.running_mean.abs().sum() > 0  # ImageNet statistics, not a fresh BatchNorm
    policy = Pi0Policy(model, Pi0PolicyConfig(sampler=sampler, action_chunk=2, **PLAY_TABLE), seed=3)
    trained = policy.trainable_weights()
    assert not any(k.startswith("image_encoder.") for k in trained)  # frozen pretrained encoder
    assert any(k.startswith("paligemma_with_expert.paligemma.") for k in trained)  # the small prefix Gemma trains
    obs = observation()
    recorded, log_prob = policy.sample(obs)
    scored = policy.evaluate(obs, recorded)
    assert torch.equal(scored.log_probs.detach(), torch.as_tensor(log_prob))
    assert policy.env_actions(recorded).shape == (2, 2, 7)
    model.save_pretrained(tmp_path / "small")
    loaded = load_pi0(tmp_path / "small")
    assert isinstance(loaded, SmallPi0)
    again = Pi0Policy(loaded, Pi0PolicyConfig(sampler=sampler, action_chunk=2, **PLAY_TABLE),
                      seed=3)
    recorded2, log_prob2 = again.sample(obs)
    assert np.array_equal(recorded, recorded2) and np.array_equal(log_prob, log_prob2)


def test_small_pi05_puts_the_state_into_the_prefix():
    torch.manual_seed(0)
    model = build_pi0(tiny_small_config(True))
    obs = observation(1)
    state = torch.zeros(1, 32)
    embeds, mask = model.encode_observation([torch.as_tensor(obs["rgb_static"]), torch.as_tensor(obs["rgb_gripper"])],
                                            obs["instruction"], state)
    n_text = len(model.instruction_states(obs["instruction"][0]))
    assert mask.shape[1] == 2 * 4 + n_text + 15 and mask.all()
    state[0, :15] = 0.9
    embeds2, _ = model.encode_observation([torch.as_tensor(obs["rgb_static"]), torch.as_tensor(obs["rgb_gripper"])],
                                          obs["instruction"], state)
    assert torch.equal(embeds[:, :-15], embeds2[:, :-15]) and not torch.equal(embeds[:, -15:], embeds2[:, -15:])

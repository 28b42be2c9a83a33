"""The learner's copy of the replay buffer (learner.batch_source=device): rows from the service's buffer, placed in
the same slots, give the same live transitions, through eviction, lag, partial replies and a new service epoch; and
a whole run trains from it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.device_replay import DeviceReplay, RowsError
from replay.buffer import ReplayBuffer
from wire.schema import Spec

REPO = Path(__file__).resolve().parents[2]
SPEC = Spec(obs={"image": ((4, 4, 3), "uint8"), "state": ((3,), "float32")}, action=((2,), "float32"))
CHUNK_BYTES = 8 * (48 + 12)  # about one row's observations


class Chunks:
    """Random chunks whose action[0] numbers every transition, with episode ends (and final observations)."""

    def __init__(self, seed: int):
        self.rng, self.count = np.random.default_rng(seed), 0

    def make(self, B: int, T: int) -> dict:
        rng = self.rng
        done = rng.random((B, T)) < 0.15
        final_index = np.argwhere(done).astype(np.int32)
        final_index = final_index[np.lexsort((final_index[:, 0], final_index[:, 1]))]
        n = len(final_index)
        action = rng.standard_normal((B, T, 2)).astype(np.float32)
        action[..., 0] = self.count + np.arange(B * T).reshape(B, T)
        self.count += B * T
        return {"obs": {"image": rng.integers(0, 256, (B, T + 1, 4, 4, 3), dtype=np.uint8),
                        "state": rng.standard_normal((B, T + 1, 3)).astype(np.float32)},
                "action": action, "reward": rng.standard_normal((B, T)).astype(np.float32),
                "terminated": done & (rng.random((B, T)) < 0.5), "truncated": done,
                "final_obs": {"image": rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
                              "state": rng.standard_normal((n, 3)).astype(np.float32)},
                "final_index": final_index}


def sync(buffer: ReplayBuffer, copy: DeviceReplay, sent, epoch: str = "e0", max_bytes: float = 1e9) -> tuple[int, int]:
    """Replies until the copy has every row (each holding at most max_bytes of rows); returns (sent, replies)."""
    replies = 0
    while True:
        meta, arrays, sent = buffer.rows_reply(sent, max_bytes)
        copy.apply({"epoch": epoch, **meta}, arrays)
        replies += 1
        if sent == buffer.written:
            return sent, replies


def assert_same_live_transitions(buffer: ReplayBuffer, copy: DeviceReplay) -> None:
    assert (copy.start, copy.end) == (buffer.start, buffer.written)
    t = np.arange(buffer.start, buffer.written) % buffer.capacity
    o, n = buffer.obs_index[t] % buffer.obs_capacity, buffer.next_obs_index[t] % buffer.obs_capacity
    steps = {k: v.cpu().numpy() for k, v in copy.steps.items()}
    co, cn = steps["obs_index"][t] % buffer.obs_capacity, steps["next_obs_index"][t] % buffer.obs_capacity
    for name in ("action", "reward", "terminated"):
        np.testing.assert_array_equal(steps[name][t], getattr(buffer, name)[t], err_msg=name)
    for k in SPEC.obs:
        np.testing.assert_array_equal(copy.obs[k].cpu().numpy()[co], buffer.obs[k][o], err_msg=f"obs {k}")
        np.testing.assert_array_equal(copy.obs[k].cpu().numpy()[cn], buffer.obs[k][n], err_msg=f"next obs {k}")


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_the_copy_holds_the_buffers_live_transitions_through_eviction_lag_and_partial_replies(device):
    buffer = ReplayBuffer(SPEC, capacity=60, chunk_len=8)
    copy = DeviceReplay(torch.device(device), seed=0)
    chunks, sent = Chunks(0), None
    for i in range(40):  # 40 x 16 transitions through a ring of 60: evicted many times over
        buffer.add_chunk(chunks.make(B=2, T=8))
        if i % 5 == 3:
            continue  # the learner lags: rows of two chunks, some of them evicted before they were sent
        # One row per reply every third chunk (a copy catching up), everything at once otherwise.
        sent, replies = sync(buffer, copy, sent, max_bytes=1 if i % 3 == 0 else 1e9)
        assert_same_live_transitions(buffer, copy)
    assert copy.resets == 0 and copy.rows_received > 40


def test_batches_from_the_copy_are_transitions_of_the_buffer():
    buffer = ReplayBuffer(SPEC, capacity=200, chunk_len=8)
    copy = DeviceReplay(torch.device("cpu"), seed=0)
    chunks, sent = Chunks(1), None
    for _ in range(20):
        buffer.add_chunk(chunks.make(B=2, T=8))
    sync(buffer, copy, sent)
    batch = copy.sample(512)
    reference = buffer.sample(4, np.random.default_rng(0))
    for key in ("action", "reward", "terminated"):
        assert tuple(batch[key].shape[1:]) == reference[key].shape[1:]
        assert str(batch[key].dtype).removeprefix("torch.") == str(reference[key].dtype)
    # action[0] numbers the transitions: each sampled one is live and has its own obs, next obs and reward.
    ids = batch["action"][:, 0].numpy().astype(np.int64)
    live = buffer.action[np.arange(buffer.start, buffer.written) % buffer.capacity, 0].astype(np.int64)
    assert set(ids) <= set(live) and len(set(ids)) > 100
    slot = {int(a): s for s, a in enumerate(buffer.action[:, 0].astype(np.int64))}
    for row, i in enumerate(ids[:64]):
        s = slot[int(i)]
        np.testing.assert_array_equal(batch["obs"]["image"][row].numpy(),
                                      buffer.obs["image"][buffer.obs_index[s] % buffer.obs_capacity])
        np.testing.assert_array_equal(batch["next_obs"]["state"][row].numpy(),
                                      buffer.obs["state"][buffer.next_obs_index[s] % buffer.obs_capacity])
        assert batch["reward"][row].item() == buffer.reward[s]
    # Seeded: the same seed draws the same batch.
    again = DeviceReplay(torch.device("cpu"), seed=0)
    sync(buffer, again, None)
    assert torch.equal(again.sample(512)["action"], batch["action"])


def test_a_new_service_epoch_empties_the_copy_and_rows_are_taken_afresh():
    buffer = ReplayBuffer(SPEC, capacity=100, chunk_len=8)
    copy = DeviceReplay(torch.device("cpu"), seed=0)
    chunks = Chunks(2)
    for _ in range(4):
        buffer.add_chunk(chunks.make(B=2, T=8))
    sync(buffer, copy, None, epoch="first")
    # A restarted service restored a snapshot of only the first two chunks: another buffer, same geometry.
    restored = ReplayBuffer(SPEC, capacity=100, chunk_len=8)
    for _ in range(3):
        restored.add_chunk(Chunks(3).make(B=2, T=8))
    sync(restored, copy, None, epoch="second")
    assert copy.resets == 1
    assert_same_live_transitions(restored, copy)


def test_rows_that_do_not_match_their_description_are_refused_before_anything_is_written():
    buffer = ReplayBuffer(SPEC, capacity=100, chunk_len=8)
    copy = DeviceReplay(torch.device("cpu"), seed=0)
    chunks = Chunks(4)
    buffer.add_chunk(chunks.make(B=1, T=8))
    sent, _ = sync(buffer, copy, None)
    buffer.add_chunk(chunks.make(B=1, T=8))
    meta, arrays, _ = buffer.rows_reply(sent, 1e9)
    with pytest.raises(RowsError, match="action"):
        copy.apply({"epoch": "e0", **meta}, {**arrays, "action": arrays["action"][:, :1]})
    with pytest.raises(RowsError, match="epoch"):
        copy.apply(meta, arrays)
    buffer.add_chunk(chunks.make(B=1, T=8))
    skipped, arrays, _ = buffer.rows_reply(sent + 8, 1e9)  # leaves out the row the copy lacks: a gap
    with pytest.raises(RowsError, match="the copy ends at"):
        copy.apply({"epoch": "e0", **skipped}, arrays)
    assert (copy.start, copy.end) == (0, 8)
    assert_same_live_transitions_prefix(buffer, copy)


def assert_same_live_transitions_prefix(buffer: ReplayBuffer, copy: DeviceReplay) -> None:
    t = np.arange(copy.start, copy.end) % buffer.capacity
    np.testing.assert_array_equal(copy.steps["action"].numpy()[t], buffer.action[t])


def test_a_run_trains_from_the_learners_copy(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "launch" / "run_async.py"), "pendulum_sac_mlp", f"runner.run_dir={run_dir}",
           "runner.max_env_steps=2500", "policy.hidden=[32,32]", "eval.every_updates=100000", "eval.episodes=1",
           "logging.wandb=disabled", "logging.tensorboard=false", "learner.batch_source=device",
           "replay.rows_max_mb=1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    learner, replay = summary["roles"]["learner"]["counters"], summary["roles"]["replay"]["counters"]
    assert summary["learner_updates"] > 500
    assert learner["copy_transitions"] >= 2000 and learner["copy_resets"] == 0
    assert replay["rows_bytes_sent"] > 0 and replay["updates_served"] >= summary["learner_updates"]
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]


# ----------------------------------------------------------------------------- sac.stored_features

VISION_SPEC = Spec(obs={"front": ((32, 32, 3), "uint8"), "wrist": ((32, 32, 3), "uint8"),
                        "state": ((7,), "float32")}, action=((4,), "float32"))


def _vision_agent(seed: int = 0):
    import gymnasium

    from policies.config import EncoderConfig, PolicyConfig
    from policies.sac_agent import SACAgent

    image = gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    obs_space = gymnasium.spaces.Dict({"front": image, "wrist": image,
                                       "state": gymnasium.spaces.Box(-1, 1, (7,), np.float32)})
    cfg = PolicyConfig(hidden=[32, 32], encoder=EncoderConfig(type="resnet10", num_spatial_kernels=2,
                                                               image_feature_dim=16, proprio_dim=8, dropout=0.0))
    return SACAgent(obs_space, 4, cfg, num_q=3, seed=seed)


def _vision_chunk(rng: np.random.Generator, B: int, T: int) -> dict:
    frames = lambda *lead: rng.integers(0, 256, (*lead, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    return {"obs": {"front": frames(B, T + 1), "wrist": frames(B, T + 1),
                    "state": rng.standard_normal((B, T + 1, 7)).astype(np.float32)},
            "action": rng.uniform(-1, 1, (B, T, 4)).astype(np.float32),
            "reward": rng.standard_normal((B, T)).astype(np.float32),
            "terminated": np.zeros((B, T), bool), "truncated": np.zeros((B, T), bool),
            "final_obs": {"front": frames(0), "wrist": frames(0), "state": np.zeros((0, 7), np.float32)},
            "final_index": np.zeros((0, 2), np.int32)}


def test_a_copy_that_stores_feature_maps_serves_the_frozen_backbones_maps_of_the_sampled_frames():
    agent = _vision_agent()
    buffer = ReplayBuffer(VISION_SPEC, capacity=40, chunk_len=6)
    frames_copy = DeviceReplay(torch.device("cpu"), seed=3)
    maps_copy = DeviceReplay(torch.device("cpu"), seed=3, encoder=agent.encoder, chunk_frames=5)  # chunks of 5
    rng, sent_frames, sent_maps = np.random.default_rng(0), None, None
    for _ in range(8):  # 8 x 12 transitions through a ring of 40: evicted twice
        buffer.add_chunk(_vision_chunk(rng, B=2, T=6))
        sent_frames, _ = sync(buffer, frames_copy, sent_frames)
        sent_maps, _ = sync(buffer, maps_copy, sent_maps)
    assert set(maps_copy.obs) == {"state"} and set(maps_copy.maps) == {"front", "wrist"}
    assert maps_copy.maps["front"].shape[1:] == (1, *agent.encoder.map_shapes["front"])
    with_frames, with_maps = frames_copy.sample(64), maps_copy.sample(64)  # same seed: the same transitions
    assert torch.equal(with_frames["action"], with_maps["action"])
    assert set(with_maps["obs"]) == {"state"}
    for key in ("obs", "next_obs"):
        expected = agent.encoder.precompute(with_frames[key])
        for cam in ("front", "wrist"):
            torch.testing.assert_close(with_maps[f"{key}_maps"][cam], expected[cam], rtol=1e-5, atol=1e-5)


def test_an_update_on_stored_maps_equals_the_update_on_the_frames_without_augmentation():
    from learner.configs import SACConfig
    from learner.sac import SAC

    buffer = ReplayBuffer(VISION_SPEC, capacity=200, chunk_len=6)
    rng = np.random.default_rng(1)
    for _ in range(4):
        buffer.add_chunk(_vision_chunk(rng, B=2, T=6))
    cfg = SACConfig(batch_size=16, num_q=3, critic_actor_ratio=2, augment_pad=0)
    results = []
    for stored in (False, True):
        agent = _vision_agent(seed=5)
        copy = DeviceReplay(torch.device("cpu"), seed=7, encoder=agent.encoder if stored else None)
        sync(buffer, copy, None)
        sac = SAC(agent, 4, cfg, torch.device("cpu"))
        torch.manual_seed(11)  # the target heads' random subset and the actor's samples
        for _ in range(3):
            metrics = sac.update([copy.sample(16) for _ in range(cfg.critic_actor_ratio)])
        results.append((metrics, {k: v.clone() for k, v in agent.state_dict().items()}))
    (m_frames, w_frames), (m_maps, w_maps) = results
    for k in w_frames:
        torch.testing.assert_close(w_maps[k], w_frames[k], rtol=1e-4, atol=1e-5, msg=k)
    assert m_maps["train/critic/q_loss"] == pytest.approx(m_frames["train/critic/q_loss"], rel=1e-4)


def test_with_a_shift_pad_the_copy_stores_the_maps_of_shifted_copies_and_draws_one_per_use():
    agent = _vision_agent()
    pad, shifts = 2, 3
    buffer = ReplayBuffer(VISION_SPEC, capacity=40, chunk_len=6)
    copy = DeviceReplay(torch.device("cpu"), seed=3, encoder=agent.encoder, shift_pad=pad, shifts=shifts)
    buffer.add_chunk(_vision_chunk(np.random.default_rng(2), B=1, T=6))
    sync(buffer, copy, None)
    assert copy.maps["wrist"].shape[1] == shifts
    # Every stored copy is the backbone's maps of the frame under one shift in [-pad, pad] x [-pad, pad].
    frame = torch.from_numpy(buffer.obs["wrist"][buffer.obs_index[0] % buffer.obs_capacity])
    size = frame.shape[0]
    every_shift = []
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            rows = (torch.arange(size) + dy).clamp(0, size - 1)
            cols = (torch.arange(size) + dx).clamp(0, size - 1)
            every_shift.append(frame[rows][:, cols])
    candidates = agent.encoder.frozen_feature_maps({"wrist": torch.stack(every_shift)})["wrist"]
    slot = int(buffer.obs_index[0] % buffer.obs_capacity)
    for j in range(shifts):
        distance = (candidates - copy.maps["wrist"][slot, j]).abs().flatten(1).max(1).values
        assert distance.min().item() < 1e-5
    # Uses draw among the copies: sampled maps of that frame take more than one of them.
    seen = set()
    for _ in range(20):
        batch = copy.sample(64)
        for row in batch["obs_maps"]["wrist"]:
            match = [(row - copy.maps["wrist"][slot, j]).abs().max().item() < 1e-6 for j in range(shifts)]
            if any(match):
                seen.add(match.index(True))
    assert seen == set(range(shifts))


def test_stored_features_refuse_a_trainable_or_service_fed_config():
    from core.config import ConfigError
    from launch.run_config import load_config

    base = ["sac.stored_features=true", "learner.batch_source=device"]
    load_config("frankasim_sac_cnn", base)  # the valid combination loads (shifted copies: augment_pad=4)
    for bad, named in ((["sac.stored_shifts=0"], "stored_shifts"), (["policy.encoder.trainable=true"], "trainable"),
                       (["learner.batch_source=service"], "batch_source")):
        with pytest.raises(ConfigError, match=named):
            load_config("frankasim_sac_cnn", [*base, *bad])
    with pytest.raises(ValueError, match="shifts"):
        DeviceReplay(torch.device("cpu"), seed=0, shift_pad=0, shifts=2)

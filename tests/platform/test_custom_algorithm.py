"""A pipeline defined in this file alone, run end to end through the launcher with real processes.

The algorithm: actors act at random, the learner only counts the batches the replay service serves it.
The run's config names this file in `imports`; the launcher and every role process import it, which
registers the pipeline under `algo: count_batches`. Nothing outside this file knows it.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import pipelines
from core.roles import Builder, Learner, Policy

REPO = Path(__file__).resolve().parents[2]
ALGO = "count_batches"


@dataclass
class CountBatchesConfig:
    batch_size: int = 16


class RandomPolicy(Policy):
    def __init__(self, action_space, seed: int):
        self.action_space = action_space
        self.action_space.seed(seed)

    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        return np.stack([self.action_space.sample() for _ in range(len(obs))])

    def load_weights(self, weights) -> None:
        pass  # nothing to learn


class CountingLearner(Learner):
    """Asks the replay service for batches and counts them; publishes no weights."""

    def __init__(self, cfg):
        import torch

        from core.net import endpoint
        from learner.batch_fetcher import BatchFetcher
        from wire.runtime import RoleRuntime

        self.cfg, self.rt = cfg, RoleRuntime(cfg, "learner", "learner")
        self.fetcher = BatchFetcher(self.rt.ctx, endpoint(cfg, "replay_learner", bind=False),
                                    cfg.count_batches.batch_size, cfg.replay.prefetch, torch.device("cpu")).start()
        self.batches = self.rows = 0

    def step(self) -> dict[str, float]:
        batch = self.fetcher.get(timeout=0.1)
        if batch is None:
            return {}
        self.batches += 1
        self.rows += len(batch["reward"])
        return {"count/batches": float(self.batches)}

    def weights(self) -> dict[str, np.ndarray]:
        return {}

    def _report(self) -> None:
        # "updates" is what the monitor and the summary count as the learner's updates.
        self.rt.report(counters={"updates": self.batches, "batches": self.batches, "rows": self.rows})

    def run(self) -> int:
        while not self.rt.should_stop():
            if self.step() and self.batches % 10 == 0:
                self._report()
        self.fetcher.stop()
        self._report()
        self.rt.close()
        return 0


class CountBatchesBuilder(Builder):
    config_sections = {ALGO: CountBatchesConfig}

    def make_policy(self, cfg, obs_space, action_space, device, seed):
        return RandomPolicy(action_space, seed)

    def make_actor(self, cfg, index):
        from actors.actor import ChunkedActor

        return ChunkedActor(cfg, index, functools.partial(self.make_policy, cfg))

    def make_replay(self, cfg):
        from replay.service import OffPolicyReplayService

        return OffPolicyReplayService(cfg)

    def make_learner(self, cfg):
        return CountingLearner(cfg)


pipelines.register(ALGO, CountBatchesBuilder)


def test_an_algorithm_registered_in_a_test_file_runs_through_the_launcher(tmp_path):
    preset = tmp_path / "count_batches.yaml"
    preset.write_text(f"""
algo: {ALGO}
imports: [{Path(__file__).resolve()}]
count_batches:
  batch_size: 8
env:
  id: Pendulum-v1
actor:
  num_actors: 2
  chunk_len: 32
  random_steps: 0
replay:
  min_size: 64
eval:
  enabled: false
logging:
  wandb: disabled
  tensorboard: false
runner:
  max_env_steps: 1500
  log_every_s: 0.5
""")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(REPO / "launch" / "run_async.py"), str(preset),
                             f"runner.run_dir={run_dir}"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"].startswith("reached 1,500 env steps"), summary["stop_reason"]
    assert summary["env_steps"] >= 1500
    assert summary["learner_updates"] > 0  # the learner's count of batches it received
    assert set(summary["exit_codes"]) == {"replay", "learner", "actor-0", "actor-1"}
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]

"""SFT of a VLA: behaviour cloning on the scripted expert's demonstrations, teacher-forced token cross-entropy.

The data: a demonstration data set in envs/demos.py's layout (recorded first with the expert of
envs/maniskill/expert.py when the directory does not exist yet). A training example is one frame: the camera
image at `vla.image_key`, the episode's instruction, and the action tokens the policy should emit there:
* OpenVLA (autoregressive): the frame's action, 7 tokens;
* OFT (parallel, chunk C = 8): the frame's action and the next C - 1 of the episode, C x 7 tokens; at the
  episode's end the last action is repeated (the expert holds still after its last step).
Actions are normalised with the demonstrations' own statistics (ActionStats.from_actions: per-dim q01/q99,
the gripper left as it is, OpenVLA's convention) and tokenised with the model's ActionTokenizer; the
statistics are saved with the weights, so that RL and evaluation un-normalise the tokens the same way.

The loss is the mean over the action tokens of -log p(token | image, prompt, earlier tokens) under the
distribution the policy acts from (VLAPolicy.evaluate: logits restricted to the 256 action ids, at
temperature 1, no top-k), so SFT maximises exactly the log-probability that PPO's ratio is taken over. Only
what requires grad is trained (LoRA adapters, or SmallVLA's trainable parts; the value head gets no gradient
here and keeps its initial weights), with AdamW and a clipped gradient norm.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core import seeding
from core.devices import prepare_learner_device
from learner.configs import SFTConfig
from policies.vla.action_tokenizer import ActionStats
from policies.vla.policy import VLAPolicy

STATS_DATASET = "demos"  # the data set name in the saved norm_stats layout
CE_FRAMES = 512  # frames of the fixed subset the whole-data cross-entropy (sft/ce_demos) is measured on


def chunk_targets(actions: np.ndarray, chunk: int) -> np.ndarray:
    """An episode's actions [T, A] -> per frame the actions t .. t + chunk - 1 [T, chunk, A], the last action
    repeated past the episode's end."""
    actions = np.asarray(actions)
    if actions.ndim != 2 or len(actions) == 0:
        raise ValueError(f"an episode's actions must be [T >= 1, A], got shape {actions.shape}")
    index = np.minimum(np.arange(len(actions))[:, None] + np.arange(chunk)[None, :], len(actions) - 1)
    return actions[index]


@dataclass
class DemoFrames:
    """Every frame of a demonstration set, as training examples."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    instructions: list[str]  # [N]
    targets: np.ndarray  # float32 [N, chunk, A]: the actions the policy should emit at the frame (un-normalised)
    actions: np.ndarray  # float32 [M, A]: every recorded action once (what the statistics are computed from)
    episodes: int

    def __len__(self) -> int:
        return len(self.images)


def load_frames(root: str | Path, image_key: str, chunk: int) -> DemoFrames:
    from envs.demos import DemoDataset

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"sft.demos={root}: not a demonstration data set (no meta/info.json)")
    ds = DemoDataset(root)
    camera = f"observation.images.{image_key}"
    if camera not in ds.cameras:
        raise ValueError(f"the demonstrations in {root} have no camera {image_key!r} (vla.image_key); they have "
                         f"{[c.removeprefix('observation.images.') for c in ds.cameras]}")
    if ds.num_episodes == 0:
        raise ValueError(f"the demonstration data set {root} holds no episode")
    images, instructions, targets, actions = [], [], [], []
    for e in range(ds.num_episodes):
        ep = ds.episode(e)
        images.append(ep[camera])
        instructions += [ep["task"]] * len(ep["action"])
        targets.append(chunk_targets(ep["action"], chunk))
        actions.append(ep["action"])
    return DemoFrames(np.concatenate(images), instructions, np.concatenate(targets).astype(np.float32),
                      np.concatenate(actions).astype(np.float32), ds.num_episodes)


def record_expert_demos(cfg, root: Path, log) -> dict:
    """Record `sft.record_episodes` expert episodes of the run's env into `root` (written under a temporary name
    and renamed when complete, so an interrupted recording is never taken for a data set)."""
    from envs.maniskill import make_maniskill_vector_env
    from envs.maniskill.demos import record_demos
    from envs.maniskill.expert import ScriptedExpert

    sft: SFTConfig = cfg.sft
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    seeds = seeding.seeds(cfg.runner.seed, "sft_demos", count=sft.record_episodes)
    env = make_maniskill_vector_env(cfg.env)
    try:
        if getattr(env, "obs_mode", "rgb") != "rgb":
            raise ValueError("recording demonstrations for a VLA needs camera images: env.kwargs.obs_mode=rgb")
        log.info(f"recording {len(seeds)} expert episodes of {env.env_id} into {root} ({env.num_envs} envs)")
        t0 = time.time()

        def progress(counts: dict) -> None:
            log.info(f"demos: {counts['attempted']}/{len(seeds)} episodes, {counts['successes']} successful, "
                     f"{counts['written']} written ({time.time() - t0:.0f} s)")

        counts = record_demos(env, ScriptedExpert(env.env_id, env.num_envs, device=env.device), partial, seeds,
                              only_successes=sft.record_only_successes, progress=progress)
    finally:
        env.close()
    if counts["written"] == 0:
        raise RuntimeError(f"the expert succeeded in none of {counts['attempted']} episodes, so no demonstration "
                           "was written (sft.record_only_successes=true): check env.max_episode_steps")
    partial.rename(root)
    return counts


class SFTTrainer:
    """Token cross-entropy steps on a VLAPolicy's trainable parameters (module docstring)."""

    def __init__(self, policy: VLAPolicy, cfg: SFTConfig, seed: int):
        self.policy, self.cfg = policy, cfg
        params = [p for p in policy.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the VLA has no trainable parameters (vla.lora=false and everything frozen?)")
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = 0

    def obs(self, frames: DemoFrames, idx: np.ndarray) -> dict:
        return {self.policy.cfg.image_key: frames.images[idx], "instruction": [frames.instructions[i] for i in idx]}

    def cross_entropy(self, frames: DemoFrames, tokens: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        out = self.policy.evaluate(self.obs(frames, idx), torch.as_tensor(tokens[idx]))
        return -out.log_probs.mean()

    @torch.no_grad()
    def mean_cross_entropy(self, frames: DemoFrames, tokens: np.ndarray, idx: np.ndarray) -> float:
        """The cross-entropy over the frames idx, in eval mode, batch by batch."""
        was_training = self.policy.model.training
        self.policy.model.eval()
        total = 0.0
        for start in range(0, len(idx), self.cfg.batch_size):
            part = idx[start:start + self.cfg.batch_size]
            total += float(self.cross_entropy(frames, tokens, part)) * len(part)
        self.policy.model.train(was_training)
        return total / len(idx)

    def step(self, frames: DemoFrames, tokens: np.ndarray, idx: np.ndarray) -> dict[str, float]:
        self.policy.model.train()
        loss = self.cross_entropy(frames, tokens, idx)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        self.optimizer.step()
        self.steps += 1
        return {"sft/ce": float(loss.detach()), "sft/grad_norm": float(grad_norm)}

    def batches(self, n: int):
        """Minibatch indices: a fresh permutation of the n frames per epoch, the last batch of each may be short."""
        while True:
            order = torch.randperm(n, generator=self.generator).numpy()
            for start in range(0, n, self.cfg.batch_size):
                yield order[start:start + self.cfg.batch_size]


def budget_steps(cfg: SFTConfig, n_frames: int) -> int:
    """Gradient steps of the run: sft.epochs passes over the frames when set, else sft.steps."""
    if cfg.epochs is not None:
        return cfg.epochs * math.ceil(n_frames / cfg.batch_size)
    return cfg.steps


@dataclass
class SFTResult:
    checkpoint: Path
    policy: VLAPolicy
    summary: dict


def run_sft(cfg, run_dir: Path, write_row: Callable[[dict, int], None], log) -> SFTResult:
    """The whole stage on a typed run config (sections `sft`, `vla`): demonstrations (recorded if missing),
    statistics, training, the checkpoint under <run_dir>/checkpoints (learner/vla_checkpoint.py) and summary.json."""
    from learner.vla_checkpoint import build_policy, save_vla

    t_start = time.time()
    sft: SFTConfig = cfg.sft
    demos = Path(sft.demos).expanduser() if sft.demos else run_dir / "demos"
    recorded = None
    if not demos.exists():
        recorded = record_expert_demos(cfg, demos, log)
    frames = load_frames(demos, cfg.vla.image_key, cfg.vla.action_chunk)
    stats = ActionStats.from_actions(frames.actions)
    log.info(f"{len(frames):,} frames of {frames.episodes} episodes from {demos}; action q01 "
             f"{np.round(stats.q01, 3).tolist()}, q99 {np.round(stats.q99, 3).tolist()}")

    # SFT fits the plain action-token distribution; the RL config's temperature / top-k apply when acting
    train_vla = dataclasses.replace(cfg.vla, temperature=1.0, top_k=None)
    seed = seeding.seed_of(cfg.runner.seed, "learner")
    policy = build_policy(train_vla, str(prepare_learner_device(cfg.learner, seed)), seed)
    policy.action_stats = stats  # acting with the SFT'd policy un-normalises as its targets were normalised
    tokenizer = policy.vla.action_tokenizer
    tokens = tokenizer.encode(stats.normalize(frames.targets)).reshape(len(frames), -1)

    trainer = SFTTrainer(policy, sft, seeding.seed_of(cfg.runner.seed, "sft_batches"))
    total = budget_steps(sft, len(frames))
    ce_idx = np.sort(seeding.generator(cfg.runner.seed, "sft_batches", 1).permutation(len(frames))[:CE_FRAMES])
    ce_start = trainer.mean_cross_entropy(frames, tokens, ce_idx)
    log.info(f"SFT: {total:,} steps of {sft.batch_size} frames, "
             f"{sum(p.numel() for p in trainer.params):,} trainable parameters; cross-entropy {ce_start:.3f}")
    write_row({"updates": 0, "sft/ce_demos": ce_start, "wall_s": time.time() - t_start}, 0)
    window: list[dict] = []
    t0 = time.time()
    batches = trainer.batches(len(frames))
    for _ in range(total):
        window.append(trainer.step(frames, tokens, next(batches)))
        if trainer.steps % sft.log_every == 0 or trainer.steps == total:
            row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            elapsed = time.time() - t0
            row.update({"updates": trainer.steps, "sft/epoch": trainer.steps * sft.batch_size / len(frames),
                        "sft/frames_per_s": trainer.steps * sft.batch_size / max(elapsed, 1e-9),
                        "wall_s": time.time() - t_start})
            if trainer.steps == total:
                row["sft/ce_demos"] = trainer.mean_cross_entropy(frames, tokens, ce_idx)
            write_row(row, trainer.steps)
            log.info(f"SFT step {trainer.steps:,}/{total:,}: cross-entropy {row['sft/ce']:.3f}, grad norm "
                     f"{row['sft/grad_norm']:.2f} ({elapsed:.0f} s)")
            window = []
    ce_end = row["sft/ce_demos"]
    summary = {"steps": trainer.steps, "frames": len(frames), "episodes": frames.episodes, "demos": str(demos),
               "recorded": recorded, "ce_demos_start": ce_start, "ce_demos_end": ce_end,
               "wall_s": time.time() - t_start, "train_s": time.time() - t0, "device": str(policy.device)}
    path = save_vla(policy, cfg.vla, run_dir / "checkpoints", label=f"s{trainer.steps}",
                    extra={"sft": {k: v for k, v in summary.items() if k != "recorded"},
                           "config": {"env": dataclasses.asdict(cfg.env), "runner_seed": cfg.runner.seed}},
                    keep=cfg.runner.keep_checkpoints)
    summary["checkpoint"] = str(path)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info(f"SFT done: cross-entropy {ce_start:.3f} -> {ce_end:.3f}; checkpoint {path}")
    return SFTResult(path, policy, summary)

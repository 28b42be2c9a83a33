"""SFT of a VLA: behaviour cloning on the scripted expert's demonstrations: teacher-forced token cross-entropy
for the token VLAs (OpenVLA, OFT, SmallVLA), the flow-matching loss for pi0 / pi0.5.

The data: a demonstration data set in envs/demos.py's layout (recorded first with the expert of
envs/maniskill/expert.py, or envs/calvin/expert.py on the play table, when the directory does not exist yet).
A training example is one frame: the camera image at `vla.image_key` (pi0: every camera of the data set and
its state, as `vla.state_key`), the episode's instruction, and the actions the policy should emit there:
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

pi0 / pi0.5 (`Objective` FLOW): the targets are the frame's action and the next H - 1 (H the model's horizon,
the last repeated), normalised with openpi's statistics computed from the demonstrations (pi0: mean/std,
pi0.5: q01/q99, of the state and the actions; saved with the weights as `norm_stats`) and zero-padded to 32
dims; the loss is Pi0Model.flow_matching_loss (x_t = t eps + (1 - t) a, target eps - a, t from openpi's Beta),
on the expert and heads when the VLM is frozen. Its whole-data figure (`sft/flow_demos`) draws eps and t from
one fixed generator, so the start and end figures are of the same noise.
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

    obs: dict[str, np.ndarray]  # per observation key [N, ...]: the cameras (uint8 [N, H, W, 3]) and the state
    instructions: list[str]  # [N]
    targets: np.ndarray  # float32 [N, chunk, A]: the actions the policy should emit at the frame (un-normalised)
    actions: np.ndarray  # float32 [M, A]: every recorded action once (what the statistics are computed from)
    episodes: int

    def __len__(self) -> int:
        return len(self.instructions)

    def batch(self, idx: np.ndarray) -> dict:
        """The observations of frames idx, as the policy reads them."""
        return {**{k: v[idx] for k, v in self.obs.items()}, "instruction": [self.instructions[i] for i in idx]}


def load_frames(root: str | Path, image_keys: str | tuple[str, ...], chunk: int,
                state_key: str | None = None) -> DemoFrames:
    """The frames of the data set at root: the cameras image_keys (and the state as obs[state_key] if given),
    with per frame the actions t .. t + chunk - 1 as targets."""
    from envs.demos import DemoDataset

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"sft.demos={root}: not a demonstration data set (no meta/info.json)")
    ds = DemoDataset(root)
    image_keys = (image_keys,) if isinstance(image_keys, str) else tuple(image_keys)
    for key in image_keys:
        if f"observation.images.{key}" not in ds.cameras:
            raise ValueError(f"the demonstrations in {root} have no camera {key!r} (vla.image_key); they have "
                             f"{[c.removeprefix('observation.images.') for c in ds.cameras]}")
    if ds.num_episodes == 0:
        raise ValueError(f"the demonstration data set {root} holds no episode")
    keys = {k: f"observation.images.{k}" for k in image_keys}
    if state_key is not None:
        keys[state_key] = "observation.state"
    obs: dict[str, list] = {k: [] for k in keys}
    instructions, targets, actions = [], [], []
    for e in range(ds.num_episodes):
        ep = ds.episode(e)
        for k, column in keys.items():
            obs[k].append(ep[column])
        instructions += [ep["task"]] * len(ep["action"])
        targets.append(chunk_targets(ep["action"], chunk))
        actions.append(ep["action"])
    return DemoFrames({k: np.concatenate(v) for k, v in obs.items()}, instructions,
                      np.concatenate(targets).astype(np.float32), np.concatenate(actions).astype(np.float32),
                      ds.num_episodes)


def record_calvin_demos(cfg, partial: Path, log) -> dict:
    """`sft.record_episodes` play-table episodes of the scripted expert (envs/calvin/demos.py: one subtask each,
    from a start that allows it), the subtasks `sft.tasks` in turn (default: env.kwargs.task, else all 34)."""
    import gymnasium as gym

    from envs.calvin.demos import record_subtask_demos
    from envs.calvin.expert import ScriptedExpert
    from envs.calvin.tasks import TASKS

    sft: SFTConfig = cfg.sft
    kwargs = dict(cfg.env.kwargs)
    chosen = list(sft.tasks or ([kwargs["task"]] if kwargs.get("task") else TASKS))
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise ValueError(f"sft.tasks: unknown subtasks {unknown}; see envs.calvin.tasks.TASKS")
    tasks = [chosen[i % len(chosen)] for i in range(sft.record_episodes)]
    env = gym.make(cfg.env.id, **{**kwargs, "cameras": True})
    log.info(f"recording {len(tasks)} expert episodes of {cfg.env.id} ({len(chosen)} subtasks) into {partial}")
    try:
        return record_subtask_demos(env, ScriptedExpert(env), partial, tasks,
                                    seeding.generator(cfg.runner.seed, "sft_demos"),
                                    only_successes=sft.record_only_successes)
    finally:
        env.close()


def record_expert_demos(cfg, root: Path, log) -> dict:
    """Record `sft.record_episodes` expert episodes of the run's env into `root` (written under a temporary name
    and renamed when complete, so an interrupted recording is never taken for a data set)."""
    from envs.calvin import ENV_ID as CALVIN_ID
    from envs.libero import ENV_ID as LIBERO_ID

    if cfg.env.id == LIBERO_ID:  # the simulator is in LIBERO's venv, not in this one
        raise FileNotFoundError(f"sft.demos: no LIBERO demonstrations at {root}; record them first with "
                                f"`.venv-libero/bin/python -m envs.libero.demos out={root} episodes=N noise=[0.0] "
                                f"only_successes=true` and give sft.demos={root}")
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    if cfg.env.id == CALVIN_ID:
        counts = record_calvin_demos(cfg, partial, log)
    else:
        counts = record_maniskill_demos(cfg, partial, log)
    if counts["written"] == 0:
        raise RuntimeError(f"the expert succeeded in none of {counts['attempted']} episodes, so no demonstration "
                           "was written (sft.record_only_successes=true): check env.max_episode_steps")
    partial.rename(root)
    return counts


def record_maniskill_demos(cfg, partial: Path, log) -> dict:
    from envs.maniskill import make_maniskill_vector_env
    from envs.maniskill.demos import record_demos
    from envs.maniskill.expert import ScriptedExpert

    sft: SFTConfig = cfg.sft
    seeds = seeding.seeds(cfg.runner.seed, "sft_demos", count=sft.record_episodes)
    env = make_maniskill_vector_env(cfg.env)
    try:
        if getattr(env, "obs_mode", "rgb") != "rgb":
            raise ValueError("recording demonstrations for a VLA needs camera images: env.kwargs.obs_mode=rgb")
        log.info(f"recording {len(seeds)} expert episodes of {env.env_id} into {partial} ({env.num_envs} envs)")
        t0 = time.time()

        def progress(counts: dict) -> None:
            log.info(f"demos: {counts['attempted']}/{len(seeds)} episodes, {counts['successes']} successful, "
                     f"{counts['written']} written ({time.time() - t0:.0f} s)")

        counts = record_demos(env, ScriptedExpert(env.env_id, env.num_envs, device=env.device), partial, seeds,
                              only_successes=sft.record_only_successes, progress=progress)
    finally:
        env.close()
    return counts


class TokenObjective:
    """Token VLAs: the targets are action token ids [N, n]; the loss is their mean -log p (VLAPolicy.evaluate)."""

    name = "ce"

    def __init__(self, policy: VLAPolicy, frames: DemoFrames):
        self.policy = policy
        stats = ActionStats.from_actions(frames.actions)
        policy.action_stats = stats  # acting with the SFT'd policy un-normalises as its targets were normalised
        self.targets = policy.vla.action_tokenizer.encode(stats.normalize(frames.targets)).reshape(len(frames), -1)
        self.describe = (f"action q01 {np.round(stats.q01, 3).tolist()}, q99 {np.round(stats.q99, 3).tolist()}")

    def loss(self, frames: DemoFrames, idx: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
        return -self.policy.evaluate(frames.batch(idx), torch.as_tensor(self.targets[idx])).log_probs.mean()


def norm_stats_of(states: np.ndarray, actions: np.ndarray) -> dict:
    """openpi's norm_stats ({"state"|"actions": {mean, std, q01, q99}}) of the demonstrations."""
    def entry(x):
        x = np.asarray(x, np.float64)
        return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "q01": np.quantile(x, 0.01, 0).tolist(),
                "q99": np.quantile(x, 0.99, 0).tolist()}
    return {"state": entry(states), "actions": entry(actions)}


class FlowObjective:
    """pi0 / pi0.5: the targets are normalised, padded action chunks [N, H, 32]; the loss is flow matching."""

    name = "flow"

    def __init__(self, policy, frames: DemoFrames):
        from policies.vla.openpi_checkpoint import normalize

        self.policy = policy
        mc = policy.model.config
        stats = norm_stats_of(frames.obs[policy.cfg.state_key], frames.actions)
        policy.set_norm_stats(stats)
        targets = np.zeros((len(frames), mc.action_horizon, mc.action_dim), np.float32)
        targets[..., :mc.env_action_dim] = normalize(frames.targets, stats["actions"], quantile=mc.pi05)
        self.targets = targets
        self.describe = f"action mean {np.round(stats['actions']['mean'], 3).tolist()}"

    def loss(self, frames: DemoFrames, idx: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
        return self.policy.flow_matching_loss(frames.batch(idx), torch.as_tensor(self.targets[idx]), generator)


def objective_for(policy, frames: DemoFrames):
    return FlowObjective(policy, frames) if hasattr(policy, "flow_matching_loss") else TokenObjective(policy, frames)


class SFTTrainer:
    """Steps of the objective's loss (token cross-entropy or flow matching) on a policy's trainable parameters."""

    def __init__(self, policy, cfg: SFTConfig, seed: int, objective):
        self.policy, self.cfg, self.objective = policy, cfg, objective
        params = [p for p in policy.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the VLA has no trainable parameters (vla.lora=false and everything frozen?)")
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.noise = torch.Generator(device=policy.device).manual_seed(seed)  # flow matching's eps and t
        self.steps = 0

    @torch.no_grad()
    def mean_loss(self, frames: DemoFrames, idx: np.ndarray) -> float:
        """The loss over the frames idx, in eval mode, batch by batch (flow matching: the same eps and t each call)."""
        was_training = self.policy.model.training
        self.policy.model.eval()
        fixed = torch.Generator(device=self.policy.device).manual_seed(0)
        total = 0.0
        for start in range(0, len(idx), self.cfg.batch_size):
            part = idx[start:start + self.cfg.batch_size]
            total += float(self.objective.loss(frames, part, fixed)) * len(part)
        self.policy.model.train(was_training)
        return total / len(idx)

    def step(self, frames: DemoFrames, idx: np.ndarray) -> dict[str, float]:
        self.policy.model.train()
        loss = self.objective.loss(frames, idx, self.noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        self.optimizer.step()
        self.steps += 1
        return {f"sft/{self.objective.name}": float(loss.detach()), "sft/grad_norm": float(grad_norm)}

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
    policy: VLAPolicy  # or a Pi0Policy
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
    # SFT fits the plain action-token distribution; the RL config's temperature / top-k apply when acting
    train_vla = dataclasses.replace(cfg.vla, temperature=1.0, top_k=None)
    seed = seeding.seed_of(cfg.runner.seed, "learner")
    from envs.demos import DemoDataset

    # the policy reads what the demonstrations hold (pi0: every camera and the state), as the env's observations do
    space = DemoDataset(demos).observation_space(cfg.vla.state_key) if (demos / "meta" / "info.json").is_file() \
        else None
    policy = build_policy(train_vla, str(prepare_learner_device(cfg.learner, seed)), seed, obs_space=space)
    if hasattr(policy, "flow_matching_loss"):  # pi0: every camera and the state; targets over the model's horizon
        frames = load_frames(demos, policy.cfg.image_keys, policy.model.config.action_horizon, policy.cfg.state_key)
    else:
        frames = load_frames(demos, cfg.vla.image_key, cfg.vla.action_chunk)
    objective = objective_for(policy, frames)
    name = objective.name
    log.info(f"{len(frames):,} frames of {frames.episodes} episodes from {demos}; {objective.describe}")

    trainer = SFTTrainer(policy, sft, seeding.seed_of(cfg.runner.seed, "sft_batches"), objective)
    total = budget_steps(sft, len(frames))
    ce_idx = np.sort(seeding.generator(cfg.runner.seed, "sft_batches", 1).permutation(len(frames))[:CE_FRAMES])
    ce_start = trainer.mean_loss(frames, ce_idx)
    log.info(f"SFT: {total:,} steps of {sft.batch_size} frames, "
             f"{sum(p.numel() for p in trainer.params):,} trainable parameters; {name} loss {ce_start:.3f}")
    write_row({"updates": 0, f"sft/{name}_demos": ce_start, "wall_s": time.time() - t_start}, 0)
    window: list[dict] = []
    t0 = time.time()
    batches = trainer.batches(len(frames))
    for _ in range(total):
        window.append(trainer.step(frames, next(batches)))
        if trainer.steps % sft.log_every == 0 or trainer.steps == total:
            row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            elapsed = time.time() - t0
            row.update({"updates": trainer.steps, "sft/epoch": trainer.steps * sft.batch_size / len(frames),
                        "sft/frames_per_s": trainer.steps * sft.batch_size / max(elapsed, 1e-9),
                        "wall_s": time.time() - t_start})
            if trainer.steps == total:
                row[f"sft/{name}_demos"] = trainer.mean_loss(frames, ce_idx)
            write_row(row, trainer.steps)
            log.info(f"SFT step {trainer.steps:,}/{total:,}: {name} loss {row[f'sft/{name}']:.3f}, grad norm "
                     f"{row['sft/grad_norm']:.2f} ({elapsed:.0f} s)")
            window = []
    ce_end = row[f"sft/{name}_demos"]
    summary = {"steps": trainer.steps, "frames": len(frames), "episodes": frames.episodes, "demos": str(demos),
               "recorded": recorded, f"{name}_demos_start": ce_start, f"{name}_demos_end": ce_end,
               "wall_s": time.time() - t_start, "train_s": time.time() - t0, "device": str(policy.device)}
    path = save_vla(policy, cfg.vla, run_dir / "checkpoints", label=f"s{trainer.steps}",
                    extra={"sft": {k: v for k, v in summary.items() if k != "recorded"},
                           "config": {"env": dataclasses.asdict(cfg.env), "runner_seed": cfg.runner.seed}},
                    keep=cfg.runner.keep_checkpoints)
    summary["checkpoint"] = str(path)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info(f"SFT done: {name} loss {ce_start:.3f} -> {ce_end:.3f}; checkpoint {path}")
    return SFTResult(path, policy, summary)

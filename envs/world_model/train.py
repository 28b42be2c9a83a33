"""Training and held-out evaluation of the world model's four parts, from a trajectory data set.

    python -m envs.world_model.train data=DIR out=DIR [model.image_size=64 ...] [train.generator_steps=...]

(OmegaConf key=value overrides of WorldModelConfig under ``model.`` and TrainConfig under ``train.``.) The
episodes are split into train and held-out (whole episodes, ``train.held_out_fraction``); each part is trained
on the train episodes in turn (the autoencoder first: the generator learns in its latent space), then evaluated
on the held-out ones:

* ``psnr`` / ``ssim``: the generated 8 frames of every held-out window (true memory frames, pose and actions;
  the poses predicted by ActionToPose, as in the env) against the recorded ones, averaged over frames; with
  ``psnr_reconstruction`` (the autoencoder's own, the ceiling) and ``psnr_copy_last`` (repeating the last memory
  frame, the floor a generator must beat);
* ``classifier_accuracy`` (and ``classifier_balanced_accuracy``, the mean of the per-class accuracies, since
  success frames are few) on the held-out real frames;
* ``pose_error``: the mean absolute error of the predicted poses (angles wrapped), and ``pose_error_hold``, the
  error of predicting no motion.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from core.devices import resolve_device
from envs.world_model.autoencoder import frames_to_tensor
from envs.world_model.config import WorldModelConfig
from envs.world_model.metrics import psnr, ssim
from envs.world_model.model import WorldModel
from envs.world_model.pose import wrap_angles
from envs.world_model.trajectories import FrameTable, load_episodes, split_episodes


@dataclass
class TrainConfig:
    autoencoder_steps: int = 2000
    generator_steps: int = 4000
    pose_steps: int = 2000
    classifier_steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-4
    held_out_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    device: str = "auto"
    eval_windows: int = 512  # held-out windows evaluated at most (evenly spaced)
    log_every: int = 200


def _batches(n: int, batch: int, steps: int, generator: torch.Generator):
    for _ in range(steps):
        yield torch.randint(n, (min(batch, n),), generator=generator)


def _fit(params, loss_of: Callable[[torch.Tensor], torch.Tensor], n: int, steps: int, cfg: TrainConfig,
         generator: torch.Generator, name: str, log: Callable[[str], None]) -> float:
    """`steps` AdamW steps of loss_of(batch indices into n rows); returns the mean loss of the last 10%."""
    optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    tail, last = [], max(1, steps // 10)
    start = time.monotonic()
    for i, idx in enumerate(_batches(n, cfg.batch_size, steps, generator)):
        loss = loss_of(idx)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if i >= steps - last:
            tail.append(loss.item())
        if cfg.log_every and (i + 1) % cfg.log_every == 0:
            log(f"{name}: step {i + 1} of {steps}, loss {loss.item():.4f}, {time.monotonic() - start:.0f} s")
    return float(np.mean(tail)) if tail else float("nan")


def train_autoencoder(model: WorldModel, table: FrameTable, cfg: TrainConfig, generator: torch.Generator,
                      log: Callable[[str], None] = print) -> float:
    device = next(model.parameters()).device
    frames = torch.as_tensor(table.frames)
    ae = model.autoencoder

    def loss_of(idx):
        x = frames_to_tensor(frames[idx].to(device))
        y = ae.decoder(ae.encoder(x))  # raw latents: the statistics are set after training
        return F.l1_loss(y, x) + F.mse_loss(y, x)

    loss = _fit(ae.parameters(), loss_of, len(frames), cfg.autoencoder_steps, cfg, generator, "autoencoder", log)
    with torch.no_grad():
        sample = frames[torch.randperm(len(frames), generator=generator)[:2048]].to(device)
        ae.set_latent_statistics(frames_to_tensor(sample))
    return loss


@torch.no_grad()
def encode_table(model: WorldModel, table: FrameTable, batch: int = 256) -> torch.Tensor:
    """Latents [F, C, s, s] of every frame of the table (on the model's device)."""
    device = next(model.parameters()).device
    return torch.cat([model.encode_frames(torch.as_tensor(table.frames[i:i + batch], device=device))
                      for i in range(0, len(table.frames), batch)])


def train_pose(model: WorldModel, table: FrameTable, cfg: TrainConfig, generator: torch.Generator,
               log: Callable[[str], None] = print) -> float:
    device = next(model.parameters()).device
    poses, actions = torch.as_tensor(table.poses, device=device), torch.as_tensor(table.actions, device=device)
    current, future = torch.as_tensor(table.current), torch.as_tensor(table.future)
    window_actions = torch.as_tensor(table.window_actions)
    model.pose.set_statistics(poses[current], poses[future])

    def loss_of(idx):
        pose, target = poses[current[idx]], poses[future[idx]]
        return F.mse_loss(model.pose.offsets(pose, actions[window_actions[idx]]),
                          model.pose.target_offsets(pose, target))

    return _fit(model.pose.parameters(), loss_of, len(table), cfg.pose_steps, cfg, generator, "pose", log)


def train_generator(model: WorldModel, table: FrameTable, cfg: TrainConfig, generator: torch.Generator,
                    log: Callable[[str], None] = print) -> float:
    """Trained on the recorded poses (teacher forcing); the env conditions on ActionToPose's."""
    device = next(model.parameters()).device
    latents = encode_table(model, table)
    poses, actions = torch.as_tensor(table.poses, device=device), torch.as_tensor(table.actions, device=device)
    memory, future = torch.as_tensor(table.memory), torch.as_tensor(table.future)
    window_actions = torch.as_tensor(table.window_actions)
    noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))

    def loss_of(idx):
        condition = model.condition(actions[window_actions[idx]], poses[future[idx]])
        return model.generator.loss(latents[future[idx]], latents[memory[idx]], condition, noise)

    return _fit(model.generator.parameters(), loss_of, len(table), cfg.generator_steps, cfg, generator,
                "generator", log)


def train_classifier(model: WorldModel, table: FrameTable, cfg: TrainConfig, generator: torch.Generator,
                     log: Callable[[str], None] = print) -> float:
    """Binary cross-entropy with the positives weighted by the negatives-to-positives ratio (success frames
    are a small share of a trajectory)."""
    device = next(model.parameters()).device
    frames, labels = torch.as_tensor(table.frames), torch.as_tensor(table.success, dtype=torch.float32)
    positives = float(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ValueError(f"the training frames are all {'failures' if positives == 0 else 'successes'}: the success "
                         "classifier needs both (record failed and successful episodes)")
    weight = torch.tensor((len(labels) - positives) / positives, device=device)

    def loss_of(idx):
        logits = model.classifier(frames_to_tensor(frames[idx].to(device)))
        return F.binary_cross_entropy_with_logits(logits, labels[idx].to(device), pos_weight=weight)

    return _fit(model.classifier.parameters(), loss_of, len(frames), cfg.classifier_steps, cfg, generator,
                "classifier", log)


@torch.no_grad()
def evaluate(model: WorldModel, table: FrameTable, cfg: TrainConfig, seed: int = 0) -> dict[str, float]:
    """The held-out metrics of the module docstring, on `table` (the held-out episodes)."""
    model.eval()
    device = next(model.parameters()).device
    chosen = np.unique(np.linspace(0, len(table) - 1, min(cfg.eval_windows, len(table))).round().astype(np.int64))
    frames = torch.as_tensor(table.frames, device=device)
    poses, actions = torch.as_tensor(table.poses, device=device), torch.as_tensor(table.actions, device=device)
    noise = torch.Generator(device=device).manual_seed(seed)
    out: dict[str, list] = {k: [] for k in ("psnr", "ssim", "psnr_reconstruction", "psnr_copy_last", "pose_error",
                                            "pose_error_hold")}
    dims = model.config.angle_dims
    for i in range(0, len(chosen), cfg.batch_size):
        w = chosen[i:i + cfg.batch_size]
        memory, future = frames[table.memory[w]], frames[table.future[w]]
        pose, true_poses = poses[table.current[w]], poses[table.future[w]]
        pred = model.predict(model.encode_frames(memory), pose, actions[table.window_actions[w]], generator=noise)
        flat_pred, flat_true = pred.frames.flatten(0, 1), future.flatten(0, 1)
        out["psnr"].append(psnr(flat_pred, flat_true))
        out["ssim"].append(ssim(flat_pred, flat_true))
        out["psnr_reconstruction"].append(psnr(model.decode_latents(model.encode_frames(flat_true)), flat_true))
        out["psnr_copy_last"].append(psnr(memory[:, -1:].expand_as(future).flatten(0, 1), flat_true))
        out["pose_error"].append(wrap_angles(pred.poses - true_poses, dims).abs().mean((1, 2)))
        out["pose_error_hold"].append(wrap_angles(pose[:, None] - true_poses, dims).abs().mean((1, 2)))
    metrics = {k: float(torch.cat(v).mean()) for k, v in out.items()}
    labels = torch.as_tensor(table.success, device=device)
    prob = torch.cat([model.success_prob(frames[j:j + 256]) for j in range(0, len(frames), 256)])
    predicted = prob > model.config.success_threshold
    metrics["classifier_accuracy"] = float((predicted == labels).float().mean())
    per_class = [float((predicted[labels == c] == c).float().mean()) for c in (False, True) if bool((labels == c).any())]
    metrics["classifier_balanced_accuracy"] = float(np.mean(per_class))
    metrics.update(held_out_windows=len(chosen), held_out_frames=len(frames),
                   held_out_success_frames=int(labels.sum()))
    return metrics


def train_world_model(data: str | Path, out: str | Path | None, model_cfg: WorldModelConfig, cfg: TrainConfig,
                      log: Callable[[str], None] = print) -> tuple[WorldModel, dict]:
    """Train every part on the train episodes of `data`, evaluate on the held-out ones, save to `out` (with
    metrics.json) when given; returns (model, metrics)."""
    device = torch.device(resolve_device(cfg.device))
    seeds = np.random.SeedSequence(cfg.seed).generate_state(2, np.uint32)
    torch.manual_seed(int(seeds[0]))
    generator = torch.Generator().manual_seed(int(seeds[1]))
    episodes = load_episodes(data, model_cfg.image_size, model_cfg.pose_dim, model_cfg.camera)
    train_idx, held_idx = split_episodes(len(episodes), cfg.held_out_fraction, cfg.split_seed)
    if not len(held_idx):
        raise ValueError(f"{data}: {len(episodes)} episode(s) leave none held out (held_out_fraction "
                         f"{cfg.held_out_fraction})")
    train = FrameTable.of([episodes[i] for i in train_idx], model_cfg.memory_frames, model_cfg.chunk)
    held = FrameTable.of([episodes[i] for i in held_idx], model_cfg.memory_frames, model_cfg.chunk)
    log(f"{len(train_idx)} training episodes ({len(train.frames)} frames, {len(train)} windows), "
        f"{len(held_idx)} held out; training on {device}")
    model = WorldModel(model_cfg).to(device)
    start = time.monotonic()
    losses = {"autoencoder_loss": train_autoencoder(model, train, cfg, generator, log),
              "pose_loss": train_pose(model, train, cfg, generator, log),
              "generator_loss": train_generator(model, train, cfg, generator, log),
              "classifier_loss": train_classifier(model, train, cfg, generator, log)}
    metrics = {**losses, "train_s": time.monotonic() - start, **evaluate(model, held, cfg, seed=int(seeds[0]))}
    if out is not None:
        model.save_pretrained(out)
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return model, metrics


def main(argv: list[str]) -> int:
    schema = OmegaConf.create({"data": None, "out": None, "model": dataclasses.asdict(WorldModelConfig()),
                               "train": dataclasses.asdict(TrainConfig())})
    conf = OmegaConf.merge(schema, OmegaConf.from_dotlist(argv))
    if conf.data is None or conf.out is None:
        print("usage: python -m envs.world_model.train data=DIR out=DIR [model.KEY=VALUE ...] [train.KEY=VALUE ...]")
        return 2
    _, metrics = train_world_model(conf.data, conf.out, WorldModelConfig(**OmegaConf.to_container(conf.model)),
                                   TrainConfig(**OmegaConf.to_container(conf.train)))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

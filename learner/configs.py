"""The config sections of the learner's algorithms (sac, ppo, grpo, a VLA's sft). Plain dataclasses, without torch: the
replay service and the launcher read a run's config without importing the networks. Each algorithm's pipeline
(pipelines/) declares its section; the algorithm modules (learner/sac.py, ppo.py, grpo.py) use these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from core import rules as R


@dataclass
class SACConfig:
    RULES: ClassVar[dict] = {
        "batch_size": R.count(1, 2**20), "gamma": R.fraction(), "tau": R.fraction(lo_open=True),
        "actor_lr": R.LEARNING_RATE, "critic_lr": R.LEARNING_RATE, "temperature_lr": R.LEARNING_RATE,
        "num_q": R.count(1, 64), "num_min_q": R.count(1, 64), "critic_actor_ratio": R.count(1, 1000),
        "actor_q": R.OneOf(("mean", "min")), "init_temperature": R.positive(1e6),
        "target_entropy": R.Range(-1e6, 1e6, optional=True), "max_grad_norm": R.at_least(0, 1e9),
        "augment_pad": R.count(0, 64), "stored_shifts": R.count(1, 64)}

    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005  # Polyak averaging rate of the target networks
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    num_q: int = 2  # Q heads in the ensemble
    num_min_q: int = 2  # target = min over a random subset of this many heads
    critic_actor_ratio: int = 1  # critic updates (each on its own batch) per actor update
    actor_q: str = "mean"  # how the actor loss combines the heads: "mean" | "min"
    init_temperature: float = 1.0
    target_entropy: Optional[float] = None  # None = -action_dim
    backup_entropy: bool = True  # subtract alpha*log pi in the critic target
    max_grad_norm: float = 0.0  # 0 = no clipping
    augment_pad: int = 4  # DrQ random shift (images only)
    # The learner's copy of the buffer (learner.batch_source=device) keeps each stored frame's frozen-backbone
    # feature maps instead of the frame, computed once when the frame arrives, so no update runs the backbone
    # (learner/device_replay.py). Needs a frozen backbone. A shift cannot be applied to maps, so with augment_pad
    # > 0 the copy keeps the maps of `stored_shifts` randomly shifted copies of each frame (that many times the
    # memory) and each use draws one of them. With learner.batch_source=auto on a CPU (no copy) it is off.
    stored_features: bool = False
    stored_shifts: int = 4
    # GPU speed switches; both keep the update's math, and neither does anything on a CPU.
    # cuda_graph: capture the whole learner step (every critic update, the actor and temperature updates, the
    # target averaging) once as a CUDA graph and replay it each step, so the host launches one graph instead
    # of thousands of kernels. The first 3 steps run eagerly (compiling, if learner.compile), the 4th captures.
    cuda_graph: bool = False
    # tf32_matmul: matrix products in TF32, as PyTorch already runs the convolutions (cudnn.allow_tf32).
    tf32_matmul: bool = False


@dataclass
class ClippedUpdateConfig:
    """The settings PPO and GRPO share: `epochs` passes of minibatches of the clipped surrogate (learner/ppo.py)."""

    RULES: ClassVar[dict] = {
        "clip": R.fraction(lo_open=True, hi_open=True), "epochs": R.count(1, 10_000), "minibatch_size": R.count(1, 2**24),
        "lr": R.LEARNING_RATE, "lr_schedule": R.OneOf(("constant", "linear")), "weight_decay": R.at_least(0, 10),
        "max_grad_norm": R.at_least(0, 1e9), "entropy_coef": R.at_least(0, 100),
        "dead_signal_after": R.count(1, 10**9), "clip_high": R.Range(0, 10, lo_open=True, optional=True)}

    clip: float = 0.2  # policy ratio clipped to [1 - clip, 1 + clip_high]
    clip_high: Optional[float] = None  # upper clip of the ratio, 1 + clip_high (RLinf's clip_ratio_high); None = clip
    epochs: int = 8
    minibatch_size: int = 256
    lr: float = 3e-4
    lr_schedule: str = "constant"  # "constant" | "linear" (to 0 at runner.max_env_steps)
    weight_decay: float = 0.01
    max_grad_norm: float = 0.5
    entropy_coef: float = 0.0
    # learner/alarms.py: warn once the ratio stayed exactly 1, every advantage was 0, or no episode succeeded
    # for this many updates (rollouts) in a row
    dead_signal_after: int = 5


@dataclass
class PPOConfig(ClippedUpdateConfig):
    RULES: ClassVar[dict] = {
        **ClippedUpdateConfig.RULES, "rollout_len": R.count(1, 10**7), "gamma": R.fraction(), "gae_lambda": R.fraction(),
        "value_clip": R.at_least(0, 1e9), "huber_delta": R.positive(1e9), "value_coef": R.at_least(0, 1e6),
        "value_batch": R.count(1, 2**24), "dual_clip": R.at_least(0, 1e6)}

    rollout_len: int = 200  # env steps per env per rollout
    gamma: float = 0.99
    gae_lambda: float = 0.95
    value_clip: float = 0.2  # new values kept within this distance of the rollout's values; 0 = no value clipping
    huber_delta: float = 10.0
    value_coef: float = 0.5
    normalize_advantages: bool = True  # per minibatch
    value_batch: int = 8192  # states per critic pass when computing the rollout's values
    dual_clip: float = 0.0  # with a negative advantage the loss is capped at -dual_clip * A (RLinf: 3.0); 0 = off


@dataclass
class GRPOConfig(ClippedUpdateConfig):
    RULES: ClassVar[dict] = {**ClippedUpdateConfig.RULES, "group_size": R.count(2, 65_536), "score": R.OneOf(("return", "success")),
                             "filter_mean_low": R.Range(-1e9, 1e9, optional=True),
                             "filter_mean_high": R.Range(-1e9, 1e9, optional=True)}

    group_size: int = 8  # each reset state is repeated this many times
    score: str = "return"  # what ranks the members of a group: "return" | "success" (succeeded at any step)
    epochs: int = 4
    weight_decay: float = 0.0
    filter_uniform_groups: bool = True  # drop groups where all failed or all succeeded (all scores equal)
    # RLinf's LIBERO / world-model filter: keep only groups whose mean score lies strictly between these bounds
    # (with reward 5 on success, 0.5 and 4.5: neither all failed nor all succeeded); None: no bound
    filter_mean_low: Optional[float] = None
    filter_mean_high: Optional[float] = None


@dataclass
class SFTConfig:
    """The SFT stage of a VLA (learner/sft.py, launch/run_sft.py): behaviour cloning on demonstrations."""

    RULES: ClassVar[dict] = {
        "record_episodes": R.count(1, 10**7), "steps": R.count(1, 10**9),
        "epochs": R.Range(1, 10**6, integer=True, optional=True), "batch_size": R.count(1, 2**20), "lr": R.LEARNING_RATE,
        "weight_decay": R.at_least(0, 10), "max_grad_norm": R.at_least(0, 1e9), "log_every": R.count(1, 10**9)}

    # the demonstration data set (envs/demos.py's layout); None: <runner.run_dir>/demos. A directory that does not
    # exist yet is recorded first: record_episodes episodes of the scripted expert (envs/maniskill/expert.py, or
    # envs/calvin/expert.py on the play table) in the run's env, env.num_envs at a time, episode seeds from runner.seed
    demos: Optional[str] = None
    record_episodes: int = 100
    record_only_successes: bool = True  # keep only the expert's successful episodes
    # the play table (CalvinPlayTable-v0): the subtasks recorded, in turn, one per episode; None: env.kwargs.task,
    # else all 34 (envs/calvin/tasks.py)
    tasks: Optional[list] = None
    # the budget: `steps` gradient steps, or with `epochs` set, that many passes over the frames (it wins)
    steps: int = 2000
    epochs: Optional[int] = None
    batch_size: int = 16  # frames per gradient step (OpenVLA's LoRA fine-tuning: 16)
    lr: float = 5e-4  # OpenVLA's LoRA fine-tuning: 5e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    log_every: int = 10  # gradient steps between metrics rows (metrics.jsonl) and progress lines

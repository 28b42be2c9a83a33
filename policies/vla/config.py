"""The `vla` config section of the VLA pipelines (pipelines/vla.py): which model, how it decodes, LoRA, the
value head's learning rate, the log-prob level of the PPO ratio and the trained weights to start from; and
`vla_eval`, what launch/eval_vla.py evaluates a saved VLA on. Plain dataclasses without torch, so that the
launcher and the rollout store read a run's config without importing transformers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from core import rules as R

# the flow-matching VLAs (policies/vla/pi0_policy.py); the others decode action tokens
PI0_MODELS = ("tiny_pi0", "tiny_pi05", "small_pi0", "small_pi05", "pi0")
MODELS = ("tiny_openvla", "openvla", "small", *PI0_MODELS)


def is_pi0(model: str) -> bool:
    return model in PI0_MODELS


@dataclass
class VLAConfig:
    RULES: ClassVar[dict] = {
        "model": R.OneOf(MODELS), "decoding": R.OneOf(("autoregressive", "parallel")),
        "action_chunk": R.count(1, 64), "temperature": R.positive(100), "top_k": R.Range(1, 256, integer=True, optional=True),
        "model_seed": R.count(0, 2**31 - 1), "lora_rank": R.count(1, 4096), "lora_alpha": R.positive(1e6),
        "value_lr": R.LEARNING_RATE, "logprob_type": R.OneOf(("token", "action", "chunk")),
        "tiny_hidden": R.count(8, 4096), "tiny_layers": R.count(1, 64), "tiny_image_size": R.count(14, 1024),
        "small_hidden": R.count(8, 4096), "small_layers": R.count(1, 64), "small_image_size": R.count(32, 1024),
        "small_heads": R.count(1, 64), "adam_beta2": R.fraction(lo_open=True, hi_open=True),
        "sampler": R.OneOf(("sde", "noise")), "num_steps": R.count(2, 1000), "noise_level": R.at_least(0, 10),
        "pi0_horizon": R.count(1, 1000)}

    # "tiny_openvla": OpenVLA's architecture at a CPU test size, randomly initialised from model_seed (the same
    # weights in every process: policies/vla/tiny_checkpoints.py); "openvla": a checkpoint directory in
    # OpenVLA-7B's HF layout (`checkpoint`); "small": SmallVLA (policies/vla/small_vla.py).
    # Flow-matching (policies/vla/pi0_policy.py): "tiny_pi0" / "tiny_pi05": pi0 / pi0.5 at a CPU test size, random
    # from model_seed (policies/vla/tiny_pi0.py); "small_pi0" / "small_pi05": SmallPi0 (small_pi0.py); "pi0": a
    # directory (`checkpoint`) in openpi's PyTorch layout (with a PaliGemma tokenizer in it) or saved by this project
    model: str = "tiny_openvla"
    checkpoint: Optional[str] = None  # model "openvla" / "pi0": the directory (config.json, safetensors, tokenizer)
    # trained weights to start from (LoRA + value head, or SmallVLA's trainable parts) and the action statistics
    # saved with them: an SFT run's checkpoint (launch/run_sft.py) or an RL learner's (learner/vla_checkpoint.py);
    # a checkpoint directory, or a directory holding them (a run directory or its checkpoints/: the newest)
    init_from: Optional[str] = None
    model_seed: int = 0  # random base weights (tiny_openvla, small): identical in actors and learner
    decoding: str = "autoregressive"  # "autoregressive" (OpenVLA) | "parallel" (OpenVLA-OFT)
    action_chunk: int = 1  # actions per decision; OFT: 8
    temperature: float = 1.0  # rollout sampling (RLinf's OpenVLA PPO: 1.0)
    top_k: Optional[int] = None
    instruction: str = "put the object on the plate"  # when the env gives none
    image_key: str = "base_camera"  # the observation entry the model sees (ZarlPutOnPlate-v1's camera)
    # pi0 / pi0.5: the observation entry holding the proprio state ("state": the ManiSkill and Franka envs';
    # the play table's is "robot_obs"); the cameras are every image entry of the env's observation space
    state_key: str = "state"
    # train LoRA adapters + the value head; false: every parameter that requires grad. pi0 / pi0.5: adapters on the
    # VLM prefix (the alternative to the frozen VLM of train_vlm=false), the expert and heads trained in full
    lora: bool = True
    lora_rank: int = 32  # RLinf: r = 32, alpha = 32
    lora_alpha: float = 32.0
    value_lr: float = 3e-3  # the value head's own learning rate (RLinf: 3e-3; LoRA's is the algorithm's lr, 1e-4)
    adam_beta2: float = 0.999  # the optimiser's second-moment decay (seed 003's pi0 PPO: 0.95)
    # the level the PPO ratio is taken at (RLinf's logprob_type): per "token", per "action" (7 tokens summed) or
    # per "chunk" (every token of a decision summed). pi0: "action" (each executed action's log-density, summed
    # over its dims) or "chunk" (the decision's: the sum over the executed actions); no tokens
    logprob_type: str = "token"
    # pi0 / pi0.5 (flow matching): the rollout sampler, "sde" (Flow-SDE: one random denoising step per decision
    # stochastic, noise level a = noise_level) or "noise" (Flow-Noise: every step, learned std in [0.08, 0.16]);
    # evaluation runs the deterministic ODE. num_steps: denoising steps N (seed 003: 5, a = 0.5)
    sampler: str = "sde"
    num_steps: int = 5
    noise_level: float = 0.5
    pi0_horizon: int = 10  # tiny / small pi0: the action horizon H the model predicts (>= action_chunk)
    train_vlm: bool = False  # pi0: false = the VLM prefix is frozen, the action expert and heads train (seed 003)
    tiny_hidden: int = 64
    tiny_layers: int = 2
    tiny_image_size: int = 28
    small_hidden: int = 256
    small_layers: int = 4
    small_heads: int = 4
    small_image_size: int = 128
    small_pretrained: bool = True  # SmallVLA: ImageNet EfficientNet-Lite0 weights from the installed package


SPLITS = ("train", "vision", "semantic", "execution")  # ZarlPutOnPlate-v1's (envs/maniskill/put_on_plate.py)


@dataclass
class VLAEvalConfig:
    """launch/eval_vla.py: `eval.episodes` episodes of each split (the split's fixed seeds) in `eval.num_envs`
    envs, with the policy `vla` builds (its weights from `vla.init_from`) after a save -> load -> LoRA merge; on
    the play table, `eval.episodes` chains (one env)."""

    RULES: ClassVar[dict] = {"splits": R.SubsetOf(SPLITS), "subtask_steps": R.count(1, 10**6),
                             "first_chain": R.count(0, 10**6)}

    splits: list = field(default_factory=lambda: list(SPLITS))
    greedy: bool = True  # the most likely action token (argmax); false: sampled at vla.temperature / vla.top_k
    merge_lora: bool = True  # evaluate the merged model (what a deployment runs); false: the adapter model
    # the play table (CalvinPlayTable-v0): eval.episodes of CALVIN's fixed 5-subtask chains (envs/calvin/chains.py)
    # instead of the splits, each subtask given subtask_steps env steps (CALVIN: 360)
    subtask_steps: int = 360
    # the chains evaluated are first_chain .. first_chain + eval.episodes - 1 of the fixed 1,000: a long evaluation
    # split into parts (processes, or sessions) whose lengths are pooled afterwards (scripts/vla_results.py --table calvin)
    first_chain: int = 0

"""PPO and GRPO on a vision-language-action policy (issue 17): the on-policy pipelines (pipelines/on_policy.py)
with a VLA (policies/vla/) in the rollout actors and the learner's updates of learner/vla.py; and the SFT stage
before them (`algo: vla_sft`, learner/sft.py), a single process started with launch/run_sft.py.

The rollout actor records the VLA's token ids and per-token log-probs (a pi0 / pi0.5: its denoising chain
and per-action log-densities, `vla.model` tiny_pi0 / small_pi0 / pi0 ...) and executes its decoded actions
(a chunk of 8 for OFT, `vla.action_chunk` for pi0) in the env; the learner trains LoRA + value head (or SmallVLA's trainable parts) and
publishes only those. Config sections: `ppo`, `grpo` or `sft` (learner/configs.py), `vla` and `vla_eval`
(policies/vla/config.py; what launch/eval_vla.py evaluates on).
"""
from __future__ import annotations

from pathlib import Path

from core.config import ConfigError, require
from core.roles import Builder
from learner.configs import GRPOConfig, PPOConfig, SFTConfig
from pipelines.grpo import GRPOBuilder
from pipelines.ppo import PPOBuilder
from policies.vla.config import VLAConfig, VLAEvalConfig, is_pi0


def _validate_vla(cfg) -> None:
    vla = cfg.vla
    require(not vla.init_from or Path(vla.init_from).expanduser().is_dir(),
            f"vla.init_from={vla.init_from}: no such directory (an SFT or VLA learner checkpoint, or a run directory "
            "holding them)")
    if is_pi0(vla.model):
        require(vla.logprob_type in ("action", "chunk"),
                f"vla.logprob_type={vla.logprob_type}: a pi0's log-densities are per action ('action' or 'chunk')")
        require(vla.model != "pi0" or bool(vla.checkpoint), "vla.model=pi0 needs vla.checkpoint (a directory)")
        require(not (vla.lora and vla.train_vlm), "vla.lora=true puts LoRA adapters on the VLM, vla.train_vlm=true "
                "trains it in full: choose one")
        require(vla.model == "pi0" or vla.action_chunk <= vla.pi0_horizon,
                f"vla.action_chunk={vla.action_chunk} exceeds the model's horizon vla.pi0_horizon={vla.pi0_horizon}")
        return
    require(vla.decoding == "parallel" or vla.action_chunk == 1,
            f"vla.action_chunk={vla.action_chunk}: autoregressive decoding gives one action per decision (OFT: "
            "vla.decoding=parallel)")
    require(vla.model != "openvla" or bool(vla.checkpoint), "vla.model=openvla needs vla.checkpoint (a directory)")


class _VLAPolicy:
    """What both VLA builders add to their on-policy builder: the VLA's checks and the VLA as the acting policy."""

    def validate(self, cfg) -> None:
        super().validate(cfg)
        _validate_vla(cfg)

    def learner_spaces(self, cfg):
        # Only a pi0 reads the env's spaces (its cameras and state size); the token VLAs read vla.image_key. A probe
        # of a camera env is a whole simulator and renderer start (ManiSkill's on a CPU: ~15 s of CPU time).
        return super().learner_spaces(cfg) if is_pi0(cfg.vla.model) else (None, None)

    def make_policy(self, cfg, obs_space, action_space, device, seed):
        from learner.vla_checkpoint import build_policy

        # with vla.init_from's weights, if set; a pi0 reads the cameras and state the env's observations hold
        return build_policy(cfg.vla, device, seed, obs_space=obs_space)


class VLAPPOBuilder(_VLAPolicy, PPOBuilder):
    config_sections = {"ppo": PPOConfig, "vla": VLAConfig, "vla_eval": VLAEvalConfig}

    def make_algorithm(self, cfg, obs_space, action_space, device, seed):
        from learner.vla import VLAPPO

        return VLAPPO(self.make_policy(cfg, obs_space, action_space, device, seed), cfg.ppo, cfg.vla, seed=seed)


class VLAGRPOBuilder(_VLAPolicy, GRPOBuilder):
    config_sections = {"grpo": GRPOConfig, "vla": VLAConfig, "vla_eval": VLAEvalConfig}

    def make_algorithm(self, cfg, obs_space, action_space, device, seed):
        from learner.vla import VLAGRPO

        return VLAGRPO(self.make_policy(cfg, obs_space, action_space, device, seed), cfg.grpo, cfg.vla, seed=seed)


class VLASFTBuilder(_VLAPolicy, Builder):
    """SFT of a VLA on demonstrations: one process (launch/run_sft.py), no actors, replay or learner roles."""

    config_sections = {"sft": SFTConfig, "vla": VLAConfig, "vla_eval": VLAEvalConfig}
    command = "launch/run_sft.py"  # launch/cli.py: the run_sync / run_async commands point here

    def _not_a_role(self, *args, **kwargs):
        raise ConfigError(f"algo=vla_sft runs in one process: start it with {self.command}")

    make_actor = make_replay = make_learner = _not_a_role

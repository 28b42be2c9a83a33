"""ManiSkill 3 backend: ManiSkill's tasks (PickCube-v1, PushCube-v1, ...) and ZarlPutOnPlate-v1 behind the
project's vector-env contract. Needs the `maniskill` extra (mani-skill, sapien) and a Vulkan driver
(see docs/envs.md). Importing registers ZarlPutOnPlate-v1 and ZarlGSPutCubeOnPlate-v0 (the Gaussian-splatting
rendered task) with ManiSkill and gymnasium."""
from __future__ import annotations

import gymnasium as gym
import mani_skill.envs  # noqa: F401  (registers ManiSkill's own tasks)

# envs/__init__.py registers a placeholder (so that `import envs` need not import ManiSkill): drop it, so
# that ManiSkill's own registration below takes its place without an "overriding" warning
for _zarl_id in ("ZarlPutOnPlate-v1", "ZarlGSPutCubeOnPlate-v0"):
    if _zarl_id in gym.registry and "gym_entry" in str(gym.registry[_zarl_id].entry_point):
        del gym.registry[_zarl_id]

from envs.maniskill import put_cube_on_plate  # noqa: F401,E402  (registers ZarlGSPutCubeOnPlate-v0)
from envs.maniskill import put_on_plate  # noqa: F401,E402  (registers ZarlPutOnPlate-v1)
from envs.maniskill.put_on_plate import ENV_ID as PUT_ON_PLATE_ID, SPLITS, decode_instruction, split_seeds
from envs.maniskill.vector import ManiSkillGymEnv, ManiSkillVectorEnv, is_maniskill_id, make_maniskill_vector_env, to_host

__all__ = ["ManiSkillGymEnv", "ManiSkillVectorEnv", "PUT_ON_PLATE_ID", "SPLITS", "decode_instruction", "is_maniskill_id",
           "make_maniskill_vector_env", "split_seeds", "to_host"]

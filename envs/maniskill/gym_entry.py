"""gymnasium entry point of the placeholders `envs/__init__.py` registers for the project's ManiSkill tasks
(ZarlPutOnPlate-v1, ZarlGSPutCubeOnPlate-v0), so that `gymnasium.make(id, ...)` works after a plain
`import envs` without `import envs` paying for importing ManiSkill. Importing envs.maniskill replaces the
placeholders with ManiSkill's registrations."""
from __future__ import annotations


def make_zarl_task(env_id: str, **kwargs):
    import gymnasium as gym

    import envs.maniskill  # noqa: F401  (registers the tasks for real)
    return gym.make(env_id, **kwargs)

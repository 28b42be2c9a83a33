"""gymnasium entry point of the placeholder `envs/__init__.py` registers for ZarlPutOnPlate-v1, so that
`gymnasium.make("ZarlPutOnPlate-v1", ...)` works after a plain `import envs` without `import envs` paying
for importing ManiSkill. Importing envs.maniskill replaces the placeholder with ManiSkill's registration."""
from __future__ import annotations


def make_put_on_plate(**kwargs):
    import gymnasium as gym

    import envs.maniskill  # noqa: F401  (registers ZarlPutOnPlate-v1 for real)
    return gym.make("ZarlPutOnPlate-v1", **kwargs)

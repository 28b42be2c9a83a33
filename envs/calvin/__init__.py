"""The CALVIN-style play table in pybullet (the `calvin` extra), registered with gymnasium on import.

``gymnasium.make("CalvinPlayTable-v0", scene="D", renderer="tiny", cameras=True, task=None)``: the
fields of :class:`envs.calvin.play_table.PlayTableConfig` are the kwargs; ``tasks="all"`` (or a list) instead
of ``task`` draws the subtask per episode and puts its instruction in the observation
(envs/calvin/subtask_episodes.py). pybullet is imported when an
env is made, not here, so ``import envs`` works without it. docs/envs.md describes the env.
"""
import gymnasium

ENV_ID = "CalvinPlayTable-v0"
# CALVIN ends an evaluation subtask after 360 steps (12 s at 30 Hz).
MAX_EPISODE_STEPS = 360

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.calvin.subtask_episodes:make_play_table",
                       max_episode_steps=MAX_EPISODE_STEPS)

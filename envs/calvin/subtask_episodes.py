"""Play-table episodes of a subtask drawn per episode, with its instruction in the observation (RL rollouts).

``gymnasium.make("CalvinPlayTable-v0", tasks="all", ...)`` (or ``tasks=[...]``, names of envs/calvin/tasks.py)
makes a :class:`CalvinPlayTableEnv` wrapped in :class:`SubtaskEpisodes`. Every reset draws, from the wrapper's
generator:

1. the subtask, uniformly from the configured set (CALVIN's 34 for ``"all"``);
2. its instruction, uniformly from the subtask's phrasings of ``instruction_split`` (train by default: RL trains
   on the phrasings SFT saw; the chain evaluation uses the validation ones, envs/calvin/language.py);
3. a start from which the subtask is feasible (:func:`envs.calvin.chains.start_for`, the chain generator's
   symbolic preconditions): for most subtasks a symbolic start where its precondition holds; place in the
   slider / drawer and stack need a held block, unstack a stack, which no start has, so a prefix of subtasks
   (a lift; a lift and a stack) is done first by the scripted expert, unrecorded, unrendered and not counted
   in the episode's steps;
4. the env's reset seed (block poses and joint values within the symbolic start).

The subtask is judged from the state after the prefix (``begin_subtask``); the reward is the env's (1 on the
step the oracle says done). The observation gets ``instruction``: the phrasing's UTF-8 bytes, zero-padded
(core/instruction.py), which the VLA policies read; ``info["task"]`` names the subtask.

Seeding: ``reset(seed=s)`` restarts the generator from s (the rollout actor's seeds come from the run's
SeedSequence, stream ``actor_envs``; GRPO's group members get one seed, so they draw the same subtask, phrasing
and start); a reset without a seed continues it, so an actor's sequence of episodes is fixed by the run's seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.calvin.chains import run_expert, start_for
from envs.calvin.expert import ScriptedExpert
from envs.calvin.language import phrasings
from envs.calvin.play_table import CalvinPlayTableEnv, StartSpec
from envs.calvin.tasks import TASKS
from core.instruction import INSTRUCTION_BYTES, encode_instruction

PREFIX_ATTEMPTS = 10  # draws of a start before giving up when the expert keeps failing a prefix


def resolve_tasks(tasks: Any) -> tuple[str, ...]:
    """``"all"`` -> the 34 subtasks (sorted); a list of names -> those, checked (duplicates weight a subtask)."""
    if isinstance(tasks, str):
        if tasks != "all":
            raise ValueError(f"tasks must be 'all' or a list of subtask names, got the string {tasks!r}")
        return tuple(sorted(TASKS))
    names = tuple(str(t) for t in tasks)
    if not names:
        raise ValueError("tasks is empty: give 'all' or at least one subtask name")
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown subtask(s) {unknown} in tasks; see envs.calvin.tasks.TASKS")
    return names


@dataclass(frozen=True)
class EpisodePlan:
    task: str
    instruction: str
    start: StartSpec
    prefix: tuple  # subtasks the expert does first, to set the start up
    seed: int  # the env's reset seed


def draw_start(task: str, instruction: str, rng: np.random.Generator) -> EpisodePlan:
    """A feasible start (and prefix) for `task` and the env's reset seed, from rng."""
    start, prefix = start_for(task, rng)
    return EpisodePlan(task, instruction, start, tuple(prefix), int(rng.integers(2 ** 63)))


def draw_episode(tasks: tuple[str, ...], rng: np.random.Generator, split: str = "train") -> EpisodePlan:
    """One episode's subtask, phrasing, feasible start (and prefix) and reset seed, in that order from rng."""
    task = tasks[int(rng.integers(len(tasks)))]
    options = phrasings(task, split)
    return draw_start(task, options[int(rng.integers(len(options)))], rng)


class SubtaskEpisodes(gym.Wrapper):
    def __init__(self, env: CalvinPlayTableEnv, tasks: Any = "all", instruction_split: str = "train"):
        super().__init__(env)
        if env.unwrapped.config.task is not None:
            raise ValueError("give the play table either task (one subtask for every episode) or tasks (one drawn "
                             "per episode), not both")
        self.tasks = resolve_tasks(tasks)
        phrasings(self.tasks[0], instruction_split)  # checks the split's name now, not at the first reset
        self.instruction_split = instruction_split
        self.observation_space = gym.spaces.Dict({
            **env.observation_space.spaces,
            "instruction": gym.spaces.Box(0, 255, (INSTRUCTION_BYTES,), np.uint8)})
        self.expert = ScriptedExpert(env)
        self.rng = np.random.default_rng()
        self.plan: EpisodePlan | None = None
        self._instruction = np.zeros(INSTRUCTION_BYTES, np.uint8)

    def _with_instruction(self, obs: dict) -> dict:
        return {**obs, "instruction": self._instruction.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options:
            raise ValueError(f"a play table with per-episode subtasks draws its own start and subtask; reset "
                             f"options {sorted(options)} are not taken")
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        base = self.env.unwrapped
        plan = draw_episode(self.tasks, self.rng, self.instruction_split)
        for attempt in range(PREFIX_ATTEMPTS):
            if attempt:  # the expert failed the prefix: another start for the same subtask and phrasing
                plan = draw_start(plan.task, plan.instruction, self.rng)
            with base.cameras_off():  # nothing before the subtask's start is seen
                _, info = self.env.reset(seed=plan.seed, options={"start": plan.start, "task": plan.task})
                if all(run_expert(self.env, self.expert, t)[0] for t in plan.prefix):
                    break
        else:
            raise RuntimeError(f"the scripted expert failed the prefix {plan.prefix} of {plan.task!r} from "
                               f"{PREFIX_ATTEMPTS} starts in a row")
        obs = base.begin_subtask()
        self.plan = plan
        self._instruction = encode_instruction(plan.instruction)
        info = {**info, "task": plan.task, "instruction": plan.instruction, "prefix": list(plan.prefix)}
        return self._with_instruction(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._with_instruction(obs), reward, terminated, truncated, info


def make_play_table(render_mode: str | None = None, tasks: Any = None, instruction_split: str = "train",
                    **config: Any) -> gym.Env:
    """The gymnasium entry point of CalvinPlayTable-v0: the env, wrapped in SubtaskEpisodes when `tasks` is
    given (config: PlayTableConfig's fields)."""
    env = CalvinPlayTableEnv(render_mode=render_mode, **config)
    if tasks is None:
        return env
    return SubtaskEpisodes(env, tasks, instruction_split)

"""CALVIN's long-horizon evaluation: chains of 5 subtasks, each feasible from its start state.

A chain is a symbolic start state (:class:`StartSpec`) and 5 subtasks drawn so that each one's
precondition holds in the symbolic state the previous ones leave (:func:`effect`); chain i comes from
the seed stream ``calvin_chains`` under key (i,) with base seed ``PROTOCOL_SEED``, so the 1,000
chains are the same on every machine. Evaluation (:func:`evaluate`): each subtask gets up to 360 steps
and is judged by its oracle from the state at its own start; a chain stops at its first failure. The
metric is the average number of completed subtasks (0-5) and the share of chains that complete at
least 1, 2, ..., 5. Settings: D->D (train on scene D) and ABC->D (train on A, B, C); both evaluate on D.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from core import seeding
from envs.calvin.play_table import StartSpec
from envs.calvin.state import COLOURS
from envs.calvin.tasks import TASKS

NUM_CHAINS = 1000
CHAIN_LENGTH = 5
STEPS_PER_SUBTASK = 360
PROTOCOL_SEED = 0
SETTINGS = {"D->D": {"train": ("D",), "eval": "D"}, "ABC->D": {"train": ("A", "B", "C"), "eval": "D"}}


@dataclass(frozen=True)
class Symbolic:
    door: str
    drawer: str
    led: int
    bulb: int
    where: tuple  # ((colour, table|slider|drawer|grasped|on_<colour>), ...)

    @classmethod
    def of(cls, spec: StartSpec) -> Symbolic:
        return cls(spec.door, spec.drawer, spec.led, spec.bulb, tuple(spec.blocks))

    def at(self, colour):
        return dict(self.where)[colour]

    def moved(self, colour, place) -> Symbolic:
        return replace(self, where=tuple((c, place if c == colour else w) for c, w in self.where))

    def grasped(self):
        return next((c for c, w in self.where if w == "grasped"), None)

    def free(self, colour) -> bool:
        """On the table with nothing on top."""
        return self.at(colour) == "table" and all(w != f"on_{colour}" for _, w in self.where)


def effect(s: Symbolic, task: str) -> Symbolic | None:
    """The symbolic state after `task`, or None when its precondition does not hold in s."""
    g = s.grasped()
    for c in COLOURS:
        if task.startswith(("rotate_", "push_")) and f"_{c}_" in task:
            return s if g is None and s.free(c) else None
        for where in ("table", "slider", "drawer"):
            if task == f"lift_{c}_block_{where}":
                ok = g is None and (s.free(c) if where == "table" else s.at(c) == where)
                if where == "drawer":
                    ok = ok and s.drawer == "open"
                return s.moved(c, "grasped") if ok else None
    if task in ("move_slider_left", "move_slider_right"):
        side = "left" if task.endswith("left") else "right"
        # The door would sweep a block in the compartment along: only with the compartment empty.
        ok = g is None and s.door != side and all(w != "slider" for _, w in s.where)
        return replace(s, door=side) if ok else None
    if task in ("open_drawer", "close_drawer"):
        want = "open" if task == "open_drawer" else "closed"
        ok = g is None and s.drawer != want and (want == "open" or all(w != "drawer" for _, w in s.where))
        return replace(s, drawer=want) if ok else None
    if task == "place_in_slider":  # the open half holds one block
        return s.moved(g, "slider") if g is not None and all(w != "slider" for _, w in s.where) else None
    if task == "place_in_drawer":
        return s.moved(g, "drawer") if g is not None and s.drawer == "open" else None
    if task == "push_into_drawer":
        free = [c for c in COLOURS if s.free(c)]
        return s.moved(free[0], "drawer") if g is None and s.drawer == "open" and free else None
    if task == "stack_block":
        below = [c for c in COLOURS if c != g and s.free(c)]
        return s.moved(g, f"on_{below[0]}") if g is not None and below else None
    if task == "unstack_block":
        top = [c for c, w in s.where if w.startswith("on_")]
        return s.moved(top[0], "table") if g is None and top else None
    for light in ("led", "lightbulb"):
        for value, word in ((1, "on"), (0, "off")):
            if task == f"turn_{word}_{light}":
                key = "led" if light == "led" else "bulb"
                ok = g is None and getattr(s, key) == 1 - value
                return replace(s, **{key: value}) if ok else None
    raise ValueError(f"unknown subtask {task!r}")


@dataclass(frozen=True)
class Chain:
    index: int
    start: StartSpec
    tasks: tuple
    seed: int  # the env's reset seed (block poses and joint values within the symbolic start)


def _start(rng: np.random.Generator) -> StartSpec:
    drawer = "open" if rng.random() < 0.5 else "closed"
    where = {c: "table" for c in COLOURS}
    u = rng.random()
    if u < 0.2:
        where[COLOURS[rng.integers(3)]] = "slider"
    elif u < 0.4 and drawer == "open":
        where[COLOURS[rng.integers(3)]] = "drawer"
    return StartSpec(door="left" if rng.random() < 0.5 else "right", drawer=drawer, led=int(rng.integers(2)),
                     bulb=int(rng.integers(2)), blocks=tuple((c, where[c]) for c in COLOURS))


def make_chain(index: int, seed: int = PROTOCOL_SEED) -> Chain:
    """Chain `index`: a start and 5 distinct subtasks, each feasible after the ones before it; a lift
    is followed by a place or stack while the block is held (nothing else can be done holding it)."""
    rng = seeding.generator(seed, "calvin_chains", index)
    names = sorted(TASKS)
    while True:
        start = _start(rng)
        s, tasks = Symbolic.of(start), []
        for _ in range(CHAIN_LENGTH):
            options = [t for t in names if t not in tasks and effect(s, t) is not None]
            if not options:
                break
            t = options[rng.integers(len(options))]
            tasks.append(t)
            s = effect(s, t)
        if len(tasks) == CHAIN_LENGTH and s.grasped() is None:
            return Chain(index, start, tuple(tasks), int(rng.integers(2 ** 63)))


def make_chains(count: int = NUM_CHAINS, seed: int = PROTOCOL_SEED) -> list[Chain]:
    return [make_chain(i, seed) for i in range(count)]


def summarise(lengths: list[int]) -> dict:
    """Average completed length and success rate at lengths 1..5."""
    lengths = np.asarray(lengths)
    return {"chains": len(lengths), "avg_len": float(lengths.mean()) if len(lengths) else 0.0,
            **{f"success_{k}": float((lengths >= k).mean()) if len(lengths) else 0.0
               for k in range(1, CHAIN_LENGTH + 1)}}


def evaluate(env, chains: list[Chain], policy: Callable[[dict, str], np.ndarray],
             start_subtask: Callable[[str], None] | None = None,
             steps_per_subtask: int = STEPS_PER_SUBTASK) -> dict:
    """Run each chain in `env` (a CalvinPlayTableEnv of the eval scene): ``policy(obs, task)`` -> action;
    ``start_subtask(task)``, when given, is called as each subtask begins (a scripted expert plans
    then). ``steps_per_subtask``: CALVIN's 360 (fewer only for quick checks). Returns :func:`summarise`
    of the completed lengths, plus ``lengths``."""
    from envs.calvin.tasks import is_completed
    base = env.unwrapped
    lengths = []
    for chain in chains:
        obs, _ = base.reset(seed=chain.seed, options={"start": chain.start})
        done = 0
        for task in chain.tasks:
            if start_subtask is not None:
                start_subtask(task)
            start = base.scene_state()
            ok = False
            for _ in range(steps_per_subtask):
                obs, *_ = base.step(policy(obs, task))
                if is_completed(task, start, base.scene_state()):
                    ok = True
                    break
            if not ok:
                break
            done += 1
        lengths.append(done)
    out = summarise(lengths)
    out["lengths"] = lengths
    return out


def start_for(task: str, rng: np.random.Generator) -> tuple[StartSpec, tuple]:
    """A random start from which `task` can be done after a short prefix of subtasks: nothing for most;
    a lift for those that need a held block (place, stack); a lift and a stack before unstack."""
    for _ in range(1000):
        spec = _start(rng)
        s = Symbolic.of(spec)
        if task == "unstack_block":
            free = [c for c in COLOURS if s.free(c)]
            prefix = (f"lift_{free[0]}_block_table", "stack_block") if len(free) >= 2 else None
        elif task in ("place_in_slider", "place_in_drawer", "stack_block"):
            free = [c for c in COLOURS if s.free(c)]
            prefix = (f"lift_{free[0]}_block_table",) if free else None
        else:
            prefix = ()
        if prefix is None:
            continue
        for t in prefix:
            s = effect(s, t) if s is not None else None
        if s is not None and effect(s, task) is not None:
            return spec, prefix
    raise RuntimeError(f"no start found for {task!r}")  # pragma: no cover - every subtask has starts


def run_expert(env, expert, task: str, max_steps: int = STEPS_PER_SUBTASK) -> tuple[bool, int, dict | None]:
    """Let the expert do `task` from the current state, judged by its oracle from that state; returns (done
    within max_steps, steps taken, the last observation, None if no step was taken)."""
    from envs.calvin.tasks import is_completed
    base = env.unwrapped
    expert.start(task)
    start = base.scene_state()
    obs = None
    for step in range(1, max_steps + 1):
        obs, *_ = base.step(expert.act())
        if is_completed(task, start, base.scene_state()):
            return True, step, obs
    return False, max_steps, obs


def run_subtask(env, expert, task: str, spec: StartSpec, prefix: tuple, seed: int) -> tuple[bool, int]:
    """Reset to (spec, seed), let the expert do the prefix (up to 360 steps each), then `task`; returns
    (the oracle's verdict within 360 steps of the task's start, steps taken). A failed prefix fails."""
    env.unwrapped.reset(seed=seed, options={"start": spec})
    for t in prefix + (task,):
        ok, step, _ = run_expert(env, expert, t)
        if not ok:
            return False, STEPS_PER_SUBTASK
    return True, step

"""The five roles of the system, as small interfaces.

Everything else in the project implements one of these. They say what a role
does, not how: an actor may step MuJoCo on a CPU or a GPU-batched simulator,
a replay service may hold a ring buffer or an on-policy rollout store.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import numpy as np

Arrays = Mapping[str, Any]  # a (possibly nested) dict of numpy arrays


class Env(abc.ABC):
    """A batch of B environments stepped together, with automatic reset.

    Observations are an array [B, ...] or a dict of such arrays.
    When env b finishes (terminated or truncated), the returned observation
    row b already belongs to the next episode; the last observation of the
    finished episode is in ``infos["final_obs"]`` (same structure as obs,
    meaningful only in rows where ``infos["done"]`` is true).
    """

    num_envs: int

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> Any: ...

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]: ...

    def chunk_step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Run C actions per env: ``actions[B, C, A]``, action c of row b applied at env b's c-th step.

        Returns (obs, rewards[B, C], terminations[B, C], truncations[B, C], infos): obs after the last of
        the C steps, and infos as a list of C dicts, one per step, each what ``step`` returns as its infos.
        An env that finishes inside the chunk resets at once and goes on with the chunk's next action;
        the final observation of its episode is in that step's ``infos[c]["final_obs"]``.
        This default makes C calls of ``step``; an env that makes a chunk in one pass (a world model) overrides it.
        """
        if getattr(actions, "ndim", 0) < 2 or actions.shape[0] != self.num_envs:
            raise ValueError(f"chunk_step expects actions[B={self.num_envs}, C, ...], got shape "
                             f"{tuple(getattr(actions, 'shape', ()))}")
        steps = [self.step(a) for a in per_step_actions(actions)]
        return (steps[-1][0], np.stack([s[1] for s in steps], 1), np.stack([s[2] for s in steps], 1),
                np.stack([s[3] for s in steps], 1), [s[4] for s in steps])

    @abc.abstractmethod
    def close(self) -> None: ...


class Policy(abc.ABC):
    """Maps a batch of observations to a batch of actions; weights are swappable."""

    @abc.abstractmethod
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray: ...

    def start_act(self, obs: Any) -> Callable[[], np.ndarray]:
        """Begin choosing (sampled) actions; the returned function gives them. A policy on a GPU returns
        before the GPU is done, so the caller can step other envs meanwhile. This default just acts."""
        action = self.act(obs)
        return lambda: action

    @abc.abstractmethod
    def load_weights(self, weights: Arrays) -> None: ...


def per_step_actions(chunk: Any) -> list:
    """The env actions of one decision's chunk ``[B, C, A]``, in the order the env takes them: C arrays [B, A]."""
    return [chunk[:, c] for c in range(chunk.shape[1])]


def acts_in_chunks(policy) -> bool:
    """Whether a policy's action for a batch is a chunk [B, C, A] of C env steps: it declares `env_actions`
    (decoding what it records into env actions, as the VLAs do) or an `action_chunk` above 1."""
    return getattr(policy, "env_actions", None) is not None or int(getattr(policy, "action_chunk", 1)) > 1


class Actor(abc.ABC):
    """Runs environments with the newest policy and emits experience."""

    @abc.abstractmethod
    def run(self) -> int:
        """Act until told to stop; return the process exit code."""


class ReplayService(abc.ABC):
    """Stores experience from actors and serves training batches to the learner."""

    @abc.abstractmethod
    def serve(self) -> int:
        """Serve until told to stop; return the process exit code."""


class Learner(abc.ABC):
    """Consumes batches, updates the networks, publishes versioned weights."""

    @abc.abstractmethod
    def step(self) -> dict[str, float]:
        """One learner step; returns the metrics it produced."""

    @abc.abstractmethod
    def weights(self) -> dict[str, np.ndarray]:
        """The weights actors need, as host arrays."""


class Builder(abc.ABC):
    """One algorithm's pipeline (as Acme's ActorLearnerBuilder): what each role of a run is made of.

    Registered by name in pipelines/ and picked by the run's `algo`. `cfg` is the run's config as
    dataclasses (core.config.RunConfig with this builder's `config_sections`), read-only.
    """

    config_sections: Mapping[str, type] = {}  # section name -> dataclass, added to the run's config
    services_resume: bool = False  # a crashed replay service or learner resumes from its snapshot/checkpoint,
    # so the launcher restarts it (launch.restart_services times)
    synchronous: bool = False  # on-policy lock step (started with launch/run_sync.py), else run_async.py

    def validate(self, cfg: Any) -> None:
        """Checks of the config that types alone cannot express; raise core.config.ConfigError."""

    @abc.abstractmethod
    def make_policy(self, cfg: Any, obs_space: Any, action_space: Any, device: str, seed: int) -> Policy: ...

    @abc.abstractmethod
    def make_actor(self, cfg: Any, index: int) -> Actor: ...

    @abc.abstractmethod
    def make_replay(self, cfg: Any) -> ReplayService: ...

    @abc.abstractmethod
    def make_learner(self, cfg: Any) -> Learner:
        """The learner role; its run() -> exit code is the process."""

    def make_evaluator(self, cfg: Any) -> Any:
        """The evaluator role (run() -> exit code); runs with eval.enabled=false need none."""
        raise NotImplementedError(f"{type(self).__name__} makes no evaluator: set eval.enabled=false")

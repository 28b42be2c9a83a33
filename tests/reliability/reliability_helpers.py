"""What several reliability tests share: reading the roles' reports, and a hand-driven actor on a real socket."""
from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import gymnasium as gym
import msgpack
import numpy as np
import psutil
import torch
import zmq
from omegaconf import OmegaConf

from actors.replay_writer import ReplayWriter
from core.net import endpoint
from learner.sac import SAC, SACConfig
from policies.config import PolicyConfig
from policies.sac_agent import SACAgent
from wire import protocol
from wire.protocol import Kind
from wire.session import ClientSession

# The Pendulum-v1 spec an actor registers with (wire.schema.Spec.to_meta of a (3,) float32 observation).
PENDULUM_SPEC = {"obs": {"": [[3], "float32"]}, "action": [[1], "float32"]}


def counters(system, sender: str) -> dict:
    return system.report(sender).get("counters", {})


def replay_actor(system, name: str) -> dict:
    """The replay service's record of one connected actor: chunks, last_seq, lost, waiting."""
    return system.report("replay").get("actors", {}).get(name, {})


def log_text(system, name: str) -> str:
    """Everything process `name` (and any process that replaced it) wrote to <run_dir>/logs/<name>.log."""
    return (Path(system.cfg.runner.run_dir) / "logs" / f"{name}.log").read_text()


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def pendulum_chunk(steps: int, reward: float = 0.0) -> dict:
    """A well-formed chunk of one env row and `steps` steps, no episode end."""
    return {"obs": np.zeros((1, steps + 1, 3), np.float32), "action": np.zeros((1, steps, 1), np.float32),
            "reward": np.full((1, steps), reward, np.float32), "terminated": np.zeros((1, steps), bool),
            "truncated": np.zeros((1, steps), bool), "final_obs": np.zeros((0, 3), np.float32),
            "final_index": np.zeros((0, 2), np.int32)}


class HandActor:
    """An actor driven by the test: registers with the Pendulum spec and sends chunks with chosen sequence numbers
    over a real DEALER socket, through the actors' own client (wire/session.py's ClientSession, whose `add` takes
    a chosen `seq` for this, and actors/replay_writer.py). `sock` is the socket, for sending raw frames."""

    def __init__(self, cfg, name: str):
        self.session = ClientSession(name, {"spec": PENDULUM_SPEC, "pid": os.getpid(), "device": "cpu"},
                                     resend_buffer_bytes=0, heartbeat_s=float(cfg.actor.heartbeat_s))
        self.writer = ReplayWriter(zmq.Context.instance(), endpoint(cfg, "replay_actors", bind=False), self.session,
                                   logging.getLogger(name))
        self.sock = self.writer.sock

    def request(self, messages: list, timeout_s: float = 30.0) -> dict:
        """Send the session's messages and return the meta of the service's answer (which the session takes)."""
        assert self.writer.send(messages), "the socket to the replay service is full"
        if not self.sock.poll(int(timeout_s * 1000)):
            kinds = [m.kind for m in messages]
            raise AssertionError(f"no answer from the replay service to {kinds} within {timeout_s} s")
        _, msg = protocol.recv(self.sock, kinds={Kind.CREDIT})
        self.writer.handle(msg)
        return msg.meta

    def register(self) -> dict:
        return self.request(self.session.register(time.monotonic()))

    def chunk(self, seq: int, arrays: dict) -> dict:
        return self.request(self.session.add(arrays, {"policy_version": 0, "episodes": []}, 0, seq=seq))

    def close(self) -> None:
        self.writer.close("test done")


# -- an in-process SAC learner of Pendulum's shapes -------------------------------------------------------
OBS_SPACE = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)


def make_sac(seed: int = 0, device: str = "cpu") -> SAC:
    policy = OmegaConf.structured(PolicyConfig(hidden=[16, 16], activation="relu", layer_norm=False))
    agent = SACAgent(OBS_SPACE, 1, policy, num_q=2, seed=seed).to(device)
    return SAC(agent, 1, SACConfig(batch_size=8), torch.device(device))


def batch(seed: int, reward: float | None = None, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(8, generator=g) if reward is None else torch.full((8,), reward)
    tensors = {"obs": torch.randn(8, 3, generator=g), "next_obs": torch.randn(8, 3, generator=g),
               "action": torch.rand(8, 1, generator=g) * 2 - 1, "reward": rewards,
               "terminated": torch.zeros(8, dtype=bool)}
    return {k: v.to(device) for k, v in tensors.items()}


# -- fuzzing: random frames and mutations of valid messages ----------------------------------------------
NASTY_VALUES = [None, -1, -2**63, 2**64 - 1, 2**63 - 1, "", "x" * 3000, [], {}, [1, 2], 1e308, float("nan"), True,
                b"\x00\xff", {"a": {"b": [None]}}, [[3], "float32"], "float32", "object", [-1], [2**40, 2**40],
                [[1, 2, 3]]]


def random_frames(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(rng.choice([0, 1, 2, 9, 30, 200, 2000])) for _ in range(rng.randint(1, 4))]


def _mutate_header(rng: random.Random, header: dict) -> dict:
    """Replace, drop or add one field of the header, of its meta, or of one array entry, with a nasty value."""
    header = msgpack.unpackb(msgpack.packb(header, use_bin_type=True), raw=False)  # a deep copy
    targets = [header]
    if isinstance(header.get("meta"), dict):
        targets.append(header["meta"])
        targets += [v for v in header["meta"].values() if isinstance(v, dict)]
    targets += [a for a in header.get("arrays", []) if isinstance(a, dict)]
    node = rng.choice(targets)
    op = rng.random()
    if op < 0.15 and node:
        del node[rng.choice(list(node))]
    elif op < 0.25:
        node[rng.choice(["extra", "seq", "v", "name", "batch_size"])] = rng.choice(NASTY_VALUES)
    elif node:
        node[rng.choice(list(node))] = rng.choice(NASTY_VALUES)
    return header


def mutate(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    op = rng.randrange(7)
    head = bytearray(frames[0])
    if op == 0:  # flip a few bytes of the header
        for _ in range(rng.randint(1, 4)):
            head[rng.randrange(len(head))] = rng.randrange(256)
        frames[0] = bytes(head)
    elif op == 1:  # cut the header short
        frames[0] = bytes(head[: rng.randrange(len(head))])
    elif op == 2:  # trailing bytes
        frames[0] = bytes(head) + rng.randbytes(rng.randint(1, 20))
    elif op == 3 and len(frames) > 1:  # a frame missing
        del frames[rng.randrange(1, len(frames))]
    elif op == 4:  # a frame too many
        frames.append(rng.randbytes(rng.randint(0, 64)))
    elif op == 5 and len(frames) > 1:  # an array frame of another size
        frames[rng.randrange(1, len(frames))] = rng.randbytes(rng.randint(0, 300))
    else:  # a well-formed header with one field wrong
        frames[0] = msgpack.packb(_mutate_header(rng, msgpack.unpackb(frames[0], raw=False)), use_bin_type=True)
    return frames


def fuzz_messages(rng: random.Random, valid: list[list[bytes]], count: int):
    """`count` messages: a quarter random frames, the rest mutations of the valid ones."""
    for _ in range(count):
        yield random_frames(rng) if rng.random() < 0.25 else mutate(rng, rng.choice(valid))


def frames_of(kind: str, arrays: dict | None = None, **header) -> list[bytes]:
    return [bytes(memoryview(f)) if not isinstance(f, bytes) else f
            for f in protocol.encode(kind, arrays, copy=True, **header)]


def zmtp_garbage(rng: random.Random) -> bytes:
    """Bytes for a raw TCP connection to a ZeroMQ port: noise, or a valid ZMTP 3.0 greeting and then noise."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(1, 2000))
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    return greeting + rng.randbytes(rng.randint(0, 500))

"""Bad input on every socket, with real processes on loopback: random frames and mutations of valid messages
(thousands per socket, a fixed seed), raw TCP noise on every port, and numerically poisoned data.
Nothing crashes; every rejection is counted, and logged at a bounded rate; the real traffic keeps flowing."""
from __future__ import annotations

import random
import socket
import time

import numpy as np
import zmq
from reliability_helpers import (PENDULUM_SPEC, HandActor, counters, frames_of, fuzz_messages, log_text,
                                 pendulum_chunk, replay_actor, zmtp_garbage)

from actors.weights import WeightsSubscriber
from core.net import ENDPOINT_OWNERS, endpoint
from envs import make_vector_env
from policies.sac_agent import SACAgent
from wire.protocol import Kind

MESSAGES_PER_SOCKET = 2000
OVERRIDES = ["eval.enabled=false", "replay.rate_limit.updates_per_step=0"]


def drain(sock: zmq.Socket) -> None:
    while sock.poll(0):
        sock.recv_multipart()


def rejected(system, sender: str) -> int:
    return sum(system.report(sender).get("rejected", {}).values())


def rejection_log_lines(system, name: str) -> int:
    return sum("rejected a message" in line for line in log_text(system, name).splitlines())


def valid_weights(cfg) -> dict:
    env = make_vector_env(cfg.env, num_envs=1)
    agent = SACAgent(env.single_observation_space, 1, cfg.policy, num_q=cfg.sac.num_q)
    env.close()
    return {k: v.detach().numpy() for k, v in agent.acting_weights().items()}


def test_every_socket_survives_thousands_of_bad_messages(system_factory, figures):
    rng = random.Random(1234)
    system = system_factory(overrides=OVERRIDES)
    cfg, ctx = system.cfg, zmq.Context.instance()
    system.start("replay", "replay")
    system.start("actor-0", "actor", 0)
    system.wait_until(lambda: replay_actor(system, "actor-0").get("chunks", 0) >= 2, 90, "the actor's first chunks")
    started = time.time()

    # -- the actor's weights subscription, from a rogue publisher where the learner would be -------------------
    rogue_learner = ctx.socket(zmq.PUB)
    rogue_learner.setsockopt(zmq.LINGER, 0)
    rogue_learner.bind(endpoint(cfg, "weights", bind=True))
    weights = frames_of(Kind.WEIGHTS, valid_weights(cfg), sender="rogue", policy_version=1, meta={"updates": 0})
    time.sleep(1.0)  # PUB/SUB: the actor's subscription must arrive before anything it should receive
    for message in fuzz_messages(rng, [weights], MESSAGES_PER_SOCKET):
        rogue_learner.send_multipart(message)
        time.sleep(0.0005)  # the subscriber keeps only 2 messages queued: let the actor read them
    system.wait_until(lambda: counters(system, "actor-0").get("weights_rejected", 0) > MESSAGES_PER_SOCKET / 4, 30,
                      "the actor to count the malformed weights")
    rogue_learner.close(0)
    system.start("learner", "learner")
    system.wait_until(lambda: counters(system, "learner").get("updates", 0) > 0, 90, "the learner to start")

    # -- the replay service's actor socket and learner socket -----------------------------------------------
    fuzz_actor = HandActor(cfg, "fuzz-actor")
    fuzz_actor.register()
    actor_messages = [frames_of(Kind.REGISTER, sender="fuzz-actor", meta={"spec": PENDULUM_SPEC, "pid": 1}),
                      frames_of(Kind.CHUNK, pendulum_chunk(32), sender="fuzz-actor", seq=5,
                                meta={"policy_version": 0, "episodes": [[-1.0, 200, False]]}),
                      frames_of(Kind.HEARTBEAT, sender="fuzz-actor"),
                      frames_of(Kind.BYE, sender="fuzz-actor", meta={"reason": "x"})]
    fuzz_learner = ctx.socket(zmq.DEALER)
    fuzz_learner.setsockopt(zmq.LINGER, 0)
    fuzz_learner.connect(endpoint(cfg, "replay_learner", bind=False))
    learner_messages = [frames_of(Kind.SAMPLE, sender="learner", seq=1, meta={"batch_size": 64}),
                        frames_of(Kind.HEARTBEAT, sender="learner")]
    for actor_message, learner_message in zip(fuzz_messages(rng, actor_messages, MESSAGES_PER_SOCKET),
                                              fuzz_messages(rng, learner_messages, MESSAGES_PER_SOCKET)):
        fuzz_actor.sock.send_multipart(actor_message)
        fuzz_learner.send_multipart(learner_message)
        drain(fuzz_actor.sock)
        drain(fuzz_learner)

    # -- the launcher's stats socket (the monitor runs in this process) --------------------------------------
    stats = ctx.socket(zmq.PUSH)
    stats.setsockopt(zmq.LINGER, 0)
    stats.connect(endpoint(cfg, "stats", bind=False))
    report = frames_of(Kind.STATS, sender="fuzz-role", meta={"role": "actor", "counters": {"env_steps": 1},
                                                              "scalars": {"x": 1.0}, "episodes": [[1.0, 2, True]]})
    monitor_rejected = system.monitor.rejects.total
    for message in fuzz_messages(rng, [report], MESSAGES_PER_SOCKET):
        stats.send_multipart(message)
        system.monitor.poll(0)

    # -- every role's control subscription (through the launcher's control socket) ---------------------------
    control = frames_of(Kind.CONTROL, sender="launcher", meta={"command": "status"})
    for message in fuzz_messages(rng, [control], MESSAGES_PER_SOCKET // 4):
        system.monitor.control.send_multipart(message)
        time.sleep(0.001)

    # -- the learner's weights socket from a rogue subscriber, and raw TCP noise on every port ----------------
    rogue_subscriber = ctx.socket(zmq.XSUB)
    rogue_subscriber.setsockopt(zmq.LINGER, 0)
    rogue_subscriber.connect(endpoint(cfg, "weights", bind=False))
    for _ in range(MESSAGES_PER_SOCKET // 2):
        rogue_subscriber.send_multipart([rng.randbytes(rng.randint(0, 100)) for _ in range(rng.randint(1, 3))])
        drain(rogue_subscriber)
    connections = 0
    for name in ENDPOINT_OWNERS:  # over the run's transport: ipc (the default on one host) or TCP
        address = endpoint(cfg, name, bind=False)
        for _ in range(20):
            if address.startswith("ipc://"):
                raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                raw.settimeout(2)
                raw.connect(address[len("ipc://"):])
            else:
                host, port = address[len("tcp://"):].rsplit(":", 1)
                raw = socket.create_connection((host, int(port)), timeout=2)
            with raw:
                raw.sendall(zmtp_garbage(rng))
            connections += 1
    fuzz_seconds = time.time() - started

    # -- numerical faults: a NaN reward is refused; a huge finite one makes the learner skip, never publish NaN
    hand = HandActor(cfg, "hand-0")
    hand.register()
    poisoned = pendulum_chunk(32)
    poisoned["obs"][0, 3, 1] = np.inf
    assert hand.chunk(1, poisoned)["rejected_seq"] == 1
    assert hand.chunk(2, pendulum_chunk(32, reward=3e38))["last_seq"] == 2  # finite, so stored
    system.wait_until(lambda: counters(system, "learner").get("skipped_updates", 0) > 0, 60,
                      "the learner to skip updates whose loss overflows")
    subscriber = WeightsSubscriber(ctx, endpoint(cfg, "weights", bind=False))
    newest = None
    deadline = time.time() + 30
    while newest is None and time.time() < deadline:
        newest = subscriber.poll(timeout_ms=200)
    assert newest is not None, "no weights from the learner"
    assert all(np.isfinite(v).all() for v in newest.values()), "non-finite weights reached the actors"
    subscriber.close()
    hand.close()

    # -- everything still runs, and the real traffic flows ---------------------------------------------------
    flowing = replay_actor(system, "actor-0")["chunks"]
    updates = counters(system, "learner")["updates"]
    system.wait_until(lambda: replay_actor(system, "actor-0").get("chunks", 0) >= flowing + 4
                      and counters(system, "learner").get("updates", 0) > updates + 20, 60,
                      "actor data and learner updates to keep flowing")
    for name, proc in system.procs.items():
        assert proc.poll() is None, f"{name} died"
    replay_rejected = rejected(system, "replay")
    assert replay_rejected > MESSAGES_PER_SOCKET, system.report("replay").get("rejected")
    assert system.monitor.rejects.total - monitor_rejected > MESSAGES_PER_SOCKET / 2
    for role in ("replay", "actor-0", "learner"):
        assert rejected(system, role) > 0, f"{role} counted no bad control message"
    assert counters(system, "learner").get("nonfinite_weights") == 0
    # Rate-limited logs: at most the first 10 of each reason plus one in 1000, not one line per message.
    replay_reasons = len(system.report("replay")["rejected"])
    assert rejection_log_lines(system, "replay") <= 10 * replay_reasons + replay_rejected // 1000 + 1

    codes = system.stop()
    assert all(code == 0 for code in codes.values()), codes
    figures.update({
        "fuzz messages per socket": MESSAGES_PER_SOCKET,
        "fuzz: replay rejections (both sockets)": replay_rejected,
        "fuzz: replay rejection reasons": sorted(system.report("replay")["rejected"]),
        "fuzz: replay log lines about rejections": rejection_log_lines(system, "replay"),
        "fuzz: monitor rejections": system.monitor.rejects.total - monitor_rejected,
        "fuzz: actor weights rejections": counters(system, "actor-0").get("weights_rejected"),
        "fuzz: raw connections with noise (ipc or TCP)": connections,
        "fuzz: seconds for all sockets": round(fuzz_seconds, 1),
        "learner updates skipped (overflowing loss)": counters(system, "learner").get("skipped_updates"),
    })
    fuzz_actor.sock.close(0)
    fuzz_learner.close(0)
    stats.close(0)
    rogue_subscriber.close(0)

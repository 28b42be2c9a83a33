"""A local process without the run's keys, sending only well-formed messages, against a learning run.

One pendulum_sac_mlp run under the launcher (its defaults: ipc sockets in an owner-only directory; this test
runs as the same user, so it can reach them, as any process of that user could). While it learns, this process:
  1. registers two fake actors that each send a chunk numbered 2**64 - 1;
  2. registers as actor-0 (refused: the name is held by the live actor-0) and sends a chunk numbered 2**63;
  3. sends heartbeats, chunks and a goodbye under actor-0's name, from its own connection;
  4. starts a second process that registers as actor-0 again and again.
The run must still learn (final eval >= -250, as tests/platform/test_learning.py), no role may die or restart,
and the replay service's counters must show every rejection.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path


from reliability_helpers import HandActor, pendulum_chunk
from wire.protocol import Kind
from launch.run_config import read_run_config

REPO = Path(__file__).resolve().parents[2]
ATTACK_S = 20.0  # how long the impostors keep at it


def env_steps(run_dir: Path) -> int:
    rows = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    steps = 0
    for row in rows[-5:]:
        try:
            steps = max(steps, int(json.loads(row).get("env_steps", 0)))
        except ValueError:
            pass
    return steps


def silent_send(hand: HandActor, messages: list) -> None:
    assert hand.writer.send(messages), "the socket to the replay service is full"


def no_answer(hand: HandActor, wait_s: float = 0.3) -> bool:
    """Nothing comes back (the service drops an impostor's messages unanswered)."""
    return not hand.sock.poll(int(wait_s * 1000))


SECOND_PROCESS = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from launch.run_config import read_run_config
    from reliability_helpers import HandActor
    from wire import protocol
    from wire.protocol import Kind
    cfg = read_run_config({run_dir!r})
    hand = HandActor(cfg, "actor-0")
    refused = 0
    deadline = time.time() + {seconds}
    while time.time() < deadline:
        reply = hand.register()
        refused += bool(reply.get("busy"))
        time.sleep(0.25)
    print(refused)
""")


def test_impostors_cannot_stop_learning_or_kill_a_role(tmp_path, figures):
    run_dir = tmp_path / "pendulum"
    cmd = [sys.executable, str(REPO / "launch" / "run_async.py"), "pendulum_sac_mlp", f"runner.run_dir={run_dir}",
           "runner.max_env_steps=15000", "policy.hidden=[64,64]", "eval.every_updates=4000",
           "logging.wandb=disabled", "logging.tensorboard=false", "logging.console_every_s=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 180
        while env_steps(run_dir) < 1500:  # actor-0 registered and sending
            assert run.poll() is None and time.time() < deadline, "the run did not get going"
            time.sleep(0.5)
        cfg = read_run_config(run_dir)
        assert cfg.network.transport == "ipc" and oct((Path(cfg.network.ipc_dir).stat().st_mode) & 0o777) == "0o700"

        # 1. two fake actors, one chunk each numbered 2**64 - 1: refused, counted, no "lost" chunks believed.
        for name in ("fake-1", "fake-2"):
            fake = HandActor(cfg, name)
            assert fake.register()["registered"]
            reply = fake.chunk(2**64 - 1, pendulum_chunk(32))
            assert reply["rejected_seq"] == 2**64 - 1 and reply["last_seq"] == 0
            fake.close()

        # 2-4. actor-0's name from other connections, for ATTACK_S seconds.
        second = subprocess.Popen(
            [sys.executable, "-c", SECOND_PROCESS.format(tests=str(Path(__file__).parent), run_dir=str(run_dir),
                                                         seconds=ATTACK_S)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        impostor = HandActor(cfg, "actor-0")
        assert impostor.register().get("busy"), "a second registration as the live actor-0 must be refused"
        silent_send(impostor, impostor.session.add(pendulum_chunk(32), {"episodes": []}, 0, seq=2**63))
        assert no_answer(impostor)
        sent = 1
        end = time.time() + ATTACK_S
        while time.time() < end:
            silent_send(impostor, [protocol_heartbeat()])
            silent_send(impostor, impostor.session.add(pendulum_chunk(32), {"episodes": []}, 0, seq=10**6))
            sent += 2
            time.sleep(0.1)
        silent_send(impostor, [impostor.session.bye("impostor")])
        sent += 1
        assert no_answer(impostor, 1.0)
        impostor.writer.sock.close(0)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        second_refused = int(out.split()[-1])
        assert second_refused >= ATTACK_S / 0.5, f"the second process's registrations: {second_refused} refused"

        stderr = run.communicate(timeout=420)[1]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    replay = summary["roles"]["replay"]["counters"]
    figures["impostors: final eval of the attacked run"] = summary["eval/return_mean"]
    figures["impostors: replay counters"] = {k: replay.get(k) for k in (
        "refused_seq", "name_taken", "impostor_messages", "lost_chunks", "duplicates")}
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert not summary["restarts"], summary["restarts"]
    assert summary["env_steps"] >= 15000 and summary["learner_updates"] > 10000
    assert summary["eval/return_mean"] >= -250, f"did not learn under attack: {summary}"
    assert replay["refused_seq"] >= 2  # the two chunks numbered 2**64 - 1 (the 2**63 one came from an impostor)
    assert replay["name_taken"] >= 1 + second_refused
    assert replay["impostor_messages"] >= sent
    assert replay["lost_chunks"] == 0  # nothing believed: no jump counted as lost
    assert summary["roles"]["replay"]["rejected"].get("impostor", 0) >= 1


def protocol_heartbeat():
    from wire.session import Outgoing

    return Outgoing(Kind.HEARTBEAT)

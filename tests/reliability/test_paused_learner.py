"""A learner that stops consuming (SIGSTOP) stops the actors through credits: actor and replay memory stay
flat, the actors wait, and the console says so. When it continues, so does everything else."""
from __future__ import annotations

import os
import signal
import time

from reliability_helpers import counters, rss_mib

SLACK, CHUNK, CREDITS = 256, 32, 2
PAUSE_S = 5.0


def test_a_paused_learner_holds_the_actors_with_flat_memory(system_factory, capsys, figures):
    system = system_factory(overrides=[f"replay.rate_limit.slack_steps={SLACK}", f"actor.chunk_len={CHUNK}",
                                       f"actor.credits={CREDITS}", "eval.enabled=false"])
    replay = system.start("replay", "replay")
    learner = system.start("learner", "learner")
    actor = system.start("actor-0", "actor", 0)
    system.wait_until(lambda: counters(system, "learner").get("updates", 0) > 50, 90, "the learner to update")
    pids = {"actor": actor.pid, "replay": replay.pid}
    running = {role: rss_mib(pid) for role, pid in pids.items()}

    os.kill(learner.pid, signal.SIGSTOP)
    try:
        system.wait_until(lambda: system.report("replay").get("scalars", {}).get("replay/actors_waiting") == 1, 60,
                          "the actor to wait for credit")
        capsys.readouterr()  # the console from here on
        steps_at_pause = counters(system, "replay")["env_steps"]
        peak = dict(running)
        end = time.time() + PAUSE_S
        while time.time() < end:
            system.monitor.poll(100)
            peak = {role: max(peak[role], rss_mib(pid)) for role, pid in pids.items()}
        steps_during_pause = counters(system, "replay")["env_steps"] - steps_at_pause
        console = capsys.readouterr().err
    finally:
        os.kill(learner.pid, signal.SIGCONT)

    # Bound: the actor's credits, plus what the sample requests already in flight when the learner stopped may
    # release (replay.prefetch updates at one update per env step: at most one more chunk); as in
    # tests/platform/test_system.py.
    assert steps_during_pause <= (CREDITS + 2) * CHUNK, f"{steps_during_pause} env steps stored while the learner slept"
    for role in pids:
        assert peak[role] - running[role] < 8, f"{role} grew from {running[role]:.0f} to {peak[role]:.0f} MiB"
    assert "1 actor(s) waiting for the learner" in console, console[-2000:]
    system.wait_until(lambda: counters(system, "replay").get("env_steps", 0) > steps_at_pause + 2 * CHUNK, 60,
                      "the actor to continue once the learner does")
    codes = system.stop()
    assert all(code == 0 for code in codes.values()), codes
    figures.update({
        "paused learner: seconds paused": PAUSE_S,
        "paused learner: env steps stored while paused": steps_during_pause,
        "paused learner: actor RSS running / peak paused (MiB)": f"{running['actor']:.0f} / {peak['actor']:.0f}",
        "paused learner: replay RSS running / peak paused (MiB)": f"{running['replay']:.0f} / {peak['replay']:.0f}",
    })

"""Entry point of every role process: `python -m launch.role ROLE --run-dir DIR [--index I]`.

The launcher (local, tmux, SSH or Ray) only has to run this command line; the
role reads everything else from DIR/config.yaml, and the run's pipeline (pipelines/, by `algo`) makes it.
"""
from __future__ import annotations

import argparse
import sys

ROLES = ("replay", "learner", "actor", "evaluator")
EXIT_CANNOT_RESUME = 3  # a role asked to resume found nothing intact to resume from: the launcher does not restart it


def run_role(role: str, run_dir: str, index: int = 0) -> int:
    from launch.run_config import builder, read_run_config, typed

    cfg = read_run_config(run_dir)
    pipeline, run = builder(cfg), typed(cfg)  # the run's pipeline makes the role; roles get the typed config
    if role == "replay":
        return pipeline.make_replay(run).serve()
    if role == "learner":
        return pipeline.make_learner(run).run()
    if role == "actor":
        return pipeline.make_actor(run, index).run()
    if role == "evaluator":
        return pipeline.make_evaluator(run).run()
    raise ValueError(f"unknown role '{role}'; roles are {', '.join(ROLES)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--index", type=int, default=0, help="actor index")
    args = parser.parse_args(argv)
    try:
        return run_role(args.role, args.run_dir, args.index)
    except Exception as e:
        # Only a role that loaded learner.checkpoint can raise its CheckpointError; importing it here would import
        # torch into every role (seconds at each start of a replay service, which needs no torch).
        checkpoint = sys.modules.get("learner.checkpoint")
        if checkpoint is None or not isinstance(e, checkpoint.CheckpointError):
            raise
        print(f"cannot resume: {e}", file=sys.stderr, flush=True)  # one line, no traceback: the launcher ends the run
        return EXIT_CANNOT_RESUME


def exit_promptly(code: int, flush_s: float = 2.0) -> None:
    """Leave without the interpreter's final clean-up.

    A role that returned has closed its sockets and written its checkpoint or snapshot. What is left is the
    final garbage collection over every object torch created, which takes seconds on a busy machine and
    would eat the launcher's shutdown budget. ZeroMQ gets up to `flush_s` to deliver the last messages
    (final weights, final report): terminating the context waits for them, bounded here because a socket
    still open somewhere (e.g. CurveZMQ's authenticator) would make it wait forever.
    """
    import os
    import threading

    import zmq

    sys.stdout.flush()
    sys.stderr.flush()
    flush = threading.Thread(target=zmq.Context.instance().term, daemon=True)
    flush.start()
    flush.join(flush_s)
    os._exit(code)


if __name__ == "__main__":
    exit_promptly(main())

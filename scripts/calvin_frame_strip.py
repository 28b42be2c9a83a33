"""Render the scripted expert doing one evaluation chain of the play table (scene D) as a frame strip:
the static camera (top row) and the gripper camera (bottom row) at the start and after each subtask.

    python scripts/calvin_frame_strip.py [--chain 0] [--out docs/calvin_chain.png]
"""
from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import imageio.v3 as iio
import numpy as np

from envs.calvin.chains import STEPS_PER_SUBTASK, make_chain
from envs.calvin.expert import ScriptedExpert
from envs.calvin.play_table import CalvinPlayTableEnv
from envs.calvin.tasks import is_completed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=0)
    ap.add_argument("--out", default="docs/calvin_chain.png")
    args = ap.parse_args()
    chain = make_chain(args.chain)
    env = CalvinPlayTableEnv(scene="D", cameras=False)  # frames rendered only where the strip needs them
    expert = ScriptedExpert(env)
    env.reset(seed=chain.seed, options={"start": chain.start})
    frames = [env.render_cameras()]
    done = []
    for task in chain.tasks:
        expert.start(task)
        start = env.scene_state()
        ok = False
        for _ in range(STEPS_PER_SUBTASK):
            env.step(expert.act())
            if is_completed(task, start, env.scene_state()):
                ok = True
                break
        frames.append(env.render_cameras())
        done.append((task, ok))
        print(task, "done" if ok else "FAILED", flush=True)
        if not ok:
            break
    pad = 4
    cols = []
    for static, gripper in frames:
        g = np.kron(gripper, np.ones((2, 2, 1), np.uint8))  # 84 -> 168 px, to sit under the 200 px frame
        bottom = np.full((200, 200, 3), 255, np.uint8)
        bottom[16:184, 16:184] = g
        col = np.concatenate([static, np.full((pad, 200, 3), 255, np.uint8), bottom], 0)
        cols += [col, np.full((col.shape[0], pad, 3), 255, np.uint8)]
    iio.imwrite(args.out, np.concatenate(cols[:-1], 1))
    print("wrote", args.out, "chain", args.chain, chain.tasks, done)


if __name__ == "__main__":
    main()

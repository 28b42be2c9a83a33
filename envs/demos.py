"""Demonstrations on disk in the LeRobot dataset layout (v2.1), and a loader for SFT: the one on-disk
format of every env backend's demonstrations (envs/maniskill/demos.py and envs/calvin/demos.py record into it).

Layout (one folder per data set; docs/envs.md describes every field)::

    ROOT/meta/info.json            codebase_version "v2.1", fps, robot_type, features, counts, path templates
    ROOT/meta/tasks.jsonl          {"task_index": i, "task": "put the red cube on the plate"}
    ROOT/meta/episodes.jsonl       {"episode_index": e, "tasks": [...], "length": T, "seed": s, "success": b}
    ROOT/data/chunk-000/episode_000000.parquet
    ROOT/videos/chunk-000/observation.images.<camera>/episode_000000.mp4   (video=True)

One parquet row per step: ``observation.state`` (float32 list), ``action`` (float32 list, the
policy's [-1, 1] action), ``timestamp``, ``frame_index``, ``episode_index``, ``index`` (global frame),
``task_index``, ``next.reward``, ``next.done``, ``next.success``; and, with ``video=False``, one
``observation.images.<camera>`` column per camera holding PNG bytes (LeRobot's "image" feature,
lossless). With ``video=True`` the cameras are H.264 mp4 files instead (LeRobot's "video" feature,
lossy, ~20x smaller). The observation of row t is the one the action of row t was taken in.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator

import imageio.v3 as iio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v2.1"
CHUNK_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _png(image: np.ndarray) -> bytes:
    return iio.imwrite("<bytes>", image, extension=".png")


def _unpng(data: bytes) -> np.ndarray:
    return iio.imread(io.BytesIO(data), extension=".png")


class DemoWriter:
    """Writes episodes one at a time. ``cameras``: observation keys holding uint8 [H, W, 3] images."""

    def __init__(self, root: str | Path, fps: float, state_dim: int, action_dim: int, cameras: dict[str, tuple],
                 robot_type: str = "panda", video: bool = False, env_id: str = ""):
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise FileExistsError(f"{self.root} already holds a data set")
        self.fps, self.video, self.cameras = float(fps), bool(video), dict(cameras)
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)
        self.robot_type, self.env_id = robot_type, env_id
        self.episodes: list[dict] = []
        self.tasks: dict[str, int] = {}
        self.total_frames = 0
        (self.root / "meta").mkdir(parents=True, exist_ok=True)

    def _features(self) -> dict:
        f = {"observation.state": {"dtype": "float32", "shape": [self.state_dim], "names": None},
             "action": {"dtype": "float32", "shape": [self.action_dim], "names": None}}
        for cam, shape in self.cameras.items():
            f[f"observation.images.{cam}"] = {
                "dtype": "video" if self.video else "image", "shape": list(shape),
                "names": ["height", "width", "channel"],
                **({"info": {"video.fps": self.fps, "video.codec": "h264", "video.pix_fmt": "yuv420p"}}
                   if self.video else {})}
        for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                           ("index", "int64"), ("task_index", "int64"), ("next.reward", "float32"),
                           ("next.done", "bool"), ("next.success", "bool")):
            f[key] = {"dtype": dtype, "shape": [1], "names": None}
        return f

    def add_episode(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray,
                    successes: np.ndarray, images: dict[str, np.ndarray], task: str, seed: int | None = None) -> int:
        """One episode: states [T, S], actions [T, A], rewards/dones/successes [T], images {cam: [T, H, W, 3]}."""
        T = len(actions)
        e = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        columns: dict[str, Any] = {
            "observation.state": pa.array(list(np.asarray(states, np.float32)), pa.list_(pa.float32())),
            "action": pa.array(list(np.asarray(actions, np.float32)), pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(T, dtype=np.float32) / self.fps),
            "frame_index": pa.array(np.arange(T, dtype=np.int64)),
            "episode_index": pa.array(np.full(T, e, np.int64)),
            "index": pa.array(np.arange(self.total_frames, self.total_frames + T, dtype=np.int64)),
            "task_index": pa.array(np.full(T, task_index, np.int64)),
            "next.reward": pa.array(np.asarray(rewards, np.float32)),
            "next.done": pa.array(np.asarray(dones, bool)),
            "next.success": pa.array(np.asarray(successes, bool)),
        }
        chunk = e // CHUNK_SIZE
        for cam in self.cameras:
            frames = np.asarray(images[cam], np.uint8)
            key = f"observation.images.{cam}"
            if self.video:
                path = self.root / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=e)
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_mp4(path, frames, self.fps)
            else:
                struct = pa.StructArray.from_arrays(
                    [pa.array([_png(f) for f in frames], pa.binary()), pa.array([None] * T, pa.string())],
                    names=["bytes", "path"])
                columns[key] = struct
        path = self.root / DATA_PATH.format(episode_chunk=chunk, episode_index=e)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        self.episodes.append({"episode_index": e, "tasks": [task], "length": T,
                              "seed": None if seed is None else int(seed), "success": bool(np.any(successes))})
        self.total_frames += T
        return e

    def close(self) -> None:
        n = len(self.episodes)
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type, "env_id": self.env_id,
                "total_episodes": n, "total_frames": self.total_frames, "total_tasks": len(self.tasks),
                "total_videos": n * len(self.cameras) if self.video else 0,
                "total_chunks": (n + CHUNK_SIZE - 1) // CHUNK_SIZE, "chunks_size": CHUNK_SIZE, "fps": self.fps,
                "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.video else None, "features": self._features()}
        (self.root / "meta" / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        with open(self.root / "meta" / "tasks.jsonl", "w") as f:
            for task, i in sorted(self.tasks.items(), key=lambda kv: kv[1]):
                f.write(json.dumps({"task_index": i, "task": task}) + "\n")
        with open(self.root / "meta" / "episodes.jsonl", "w") as f:
            for ep in self.episodes:
                f.write(json.dumps(ep) + "\n")

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    import imageio
    h, w = frames.shape[1:3]
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=None, pixelformat="yuv420p",
                            output_params=["-crf", "18"], macro_block_size=1 if (h % 16 or w % 16) else 16) as out:
        for frame in frames:
            out.append_data(frame)


def _read_mp4(path: Path) -> np.ndarray:
    import imageio
    with imageio.get_reader(path) as reader:
        return np.stack([np.asarray(f) for f in reader])


class DemoDataset:
    """Reads a data set written by DemoWriter (or any LeRobot v2.x set with these features).

    ``episode(e)`` -> dict of arrays for one episode (``observation.state`` [T, S], ``action`` [T, A],
    ``observation.images.<cam>`` [T, H, W, 3] uint8, ``next.reward`` ..., and ``task``: the instruction).
    ``frames()`` iterates single steps; ``len(ds)`` is the number of frames."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = json.loads((self.root / "meta" / "info.json").read_text())
        self.tasks = {d["task_index"]: d["task"] for d in map(json.loads, open(self.root / "meta" / "tasks.jsonl"))}
        self.episodes = [json.loads(line) for line in open(self.root / "meta" / "episodes.jsonl")]
        self.cameras = [k for k, v in self.info["features"].items() if v["dtype"] in ("image", "video")]
        self.fps = self.info["fps"]

    def __len__(self) -> int:
        return int(self.info["total_frames"])

    def observation_space(self, state_key: str = "state"):
        """The observation space of the env that recorded the data set, as far as it holds it: each camera (uint8
        [H, W, 3]) and the state as `state_key` (the env's name for it; the data set calls it observation.state)."""
        import gymnasium as gym

        features = self.info["features"]
        spaces = {k.removeprefix("observation.images."): gym.spaces.Box(0, 255, tuple(features[k]["shape"]), np.uint8)
                  for k in self.cameras}
        spaces[state_key] = gym.spaces.Box(-np.inf, np.inf, tuple(features["observation.state"]["shape"]), np.float32)
        return gym.spaces.Dict(spaces)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def episode(self, e: int) -> dict[str, Any]:
        chunk = e // self.info["chunks_size"]
        table = pq.read_table(self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=e))
        out: dict[str, Any] = {}
        for name in table.column_names:
            col = table.column(name)
            if name in self.cameras:
                out[name] = np.stack([_unpng(d["bytes"]) for d in col.to_pylist()])
            elif pa.types.is_list(col.type):
                out[name] = np.asarray(col.to_pylist(), np.float32)
            else:
                out[name] = col.to_numpy()
        for key in self.cameras:
            if key not in out:
                out[key] = _read_mp4(self.root / self.info["video_path"].format(
                    episode_chunk=chunk, video_key=key, episode_index=e))
        out["task"] = self.tasks[int(out["task_index"][0])]
        return out

    def frames(self) -> Iterator[dict[str, Any]]:
        for e in range(self.num_episodes):
            ep = self.episode(e)
            for t in range(len(ep["action"])):
                yield {k: (v if k == "task" else v[t]) for k, v in ep.items()}

"""The learner's own copy of the replay buffer, in its device's memory, and batches sampled from it.

With learner.batch_source=device the learner asks the replay service for rows instead of batches: each reply
holds the rows stored since the previous reply (about one transition per critic update at the presets' rate
limit, a few hundred kB of camera frames) and the permission for one update, which the rate limiter grants
exactly as it grants a batch. The copy writes each row into the same ring slots the service's buffer uses
(replay/buffer.py), so it needs no eviction logic: its live transitions are the service's, from the service's
oldest live transition (sent with every reply) to the end of the newest row received. Batches are then
gathered on the device, and a 50 MB vision batch never crosses the host, the socket or pinned memory.

With sac.stored_features the copy keeps, for each camera, the frozen backbone's feature maps of a frame
instead of the frame: the maps are computed once, when the row arrives (policies/vision_encoder.py,
frozen_feature_maps), and the batches carry them as "obs_maps" / "next_obs_maps", so that no update runs the
backbone. A frozen backbone gives the same maps whenever it runs. Image augmentation (DrQ's random shift,
learner/augment.py) needs the frames, so with a shift pad the copy stores the maps of `shifts` randomly shifted
copies of each frame instead, and each use of the frame in a batch draws one of them: the shifts of a frame
come from a fixed set of that many rather than afresh each time.

A reply from a different service process (another epoch: a restarted or restored replay service) or for a
buffer of another geometry empties the copy; the service then sends its rows again from the oldest, at most
replay.rows_max_mb per reply, and the updates in between sample from what has arrived.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from learner.augment import random_shift
from replay.buffer import ReplayBuffer, row_slots
from wire.schema import Spec, expect_array, flat_obs, nested_obs

_DTYPES = {"bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
           "int64": torch.int64, "float16": torch.float16, "float32": torch.float32, "float64": torch.float64}
_STEP_FIELDS = ("action", "reward", "terminated", "obs_index", "next_obs_index")


def resolved_batch_source(batch_source: str, device: torch.device) -> str:
    """learner.batch_source with "auto" decided: the learner's own copy on a GPU, the replay service's batches
    elsewhere."""
    if batch_source == "auto":
        return "device" if device.type == "cuda" else "service"
    return batch_source


class RowsError(ValueError):
    """A rows reply that does not describe what it carries; the copy is left as it was."""


class DeviceReplay:
    def __init__(self, device: torch.device, seed: int, encoder=None, shift_pad: int = 0, shifts: int = 1,
                 chunk_frames: int = 256):
        """``encoder``: a VisionEncoder with a frozen backbone whose cameras' frames are kept as feature maps
        (None: keep every observation as sent), the maps of ``shifts`` copies of each frame shifted by up to
        ``shift_pad`` pixels (0: the frame as it is), computed at most ``chunk_frames`` frames at a time."""
        if shifts < 1 or (shift_pad == 0 and shifts != 1):
            raise ValueError(f"DeviceReplay: shifts={shifts} with shift_pad={shift_pad}: need shifts >= 1, and 1 "
                             "when frames are not shifted")
        self.device = device
        self.encoder, self.chunk_frames, self.shift_pad, self.shifts = encoder, chunk_frames, shift_pad, shifts
        self.map_shapes: dict[str, tuple] = {} if encoder is None else dict(encoder.map_shapes)
        self.maps: dict[str, torch.Tensor] = {}  # camera -> [obs_capacity, shifts, C, h, w] float32
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed) % 2**63)
        self.epoch: str | None = None
        self.geometry: tuple | None = None  # (capacity, obs_capacity, spec) the arrays were made for
        self.obs: dict[str, torch.Tensor] = {}
        self.steps: dict[str, torch.Tensor] = {}
        self.start = self.end = 0  # live transitions [start, end), absolute indices
        self.resets = 0  # times the copy was emptied for another service process or geometry
        self.rows_received = 0

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def nbytes(self) -> int:
        arrays = [*self.obs.values(), *self.maps.values(), *self.steps.values()]
        return sum(t.numel() * t.element_size() for t in arrays)

    def apply(self, meta: dict, arrays: dict) -> None:
        """Write one reply's rows (meta["rows"] from the service, arrays as sent: numpy or tensors)."""
        try:
            epoch, start = str(meta["epoch"]), int(meta["start"])
            rows = [tuple(int(x) for x in r) for r in meta["rows"]]
            geometry = (int(meta["capacity"]), int(meta["obs_capacity"]), Spec.from_meta(meta["spec"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RowsError(f"rows reply without a valid {e}") from e
        if epoch != self.epoch or geometry != self.geometry:
            self._reset(epoch, geometry)
        capacity, obs_capacity, spec = geometry
        if rows:
            obs = flat_obs(arrays.get("obs", {}))
            self._check(arrays, obs, spec, n_steps=sum(r[2] for r in rows), n_obs=sum(r[3] for r in rows))
            if self.end and rows[0][0] != self.end and self.end > start:
                # Rows are sent in order from where the previous reply ended; anything else is a gap in the copy.
                raise RowsError(f"rows start at transition {rows[0][0]}, the copy ends at {self.end}")
            t, o = (torch.from_numpy(i).to(self.device, non_blocking=True)
                    for i in row_slots(rows, capacity, obs_capacity))
            for k, dst in self.obs.items():
                dst.index_copy_(0, o, _tensor(obs[k], self.device))
            for k, dst in self.maps.items():
                self._store_maps(k, dst, _tensor(obs[k], self.device), o)
            for k, dst in self.steps.items():
                dst.index_copy_(0, t, _tensor(arrays[k], self.device))
            if self.end <= start:  # the first rows of this epoch (or all rows were evicted since the last reply)
                self.start = rows[0][0]
            self.end = rows[-1][0] + rows[-1][2]
            self.rows_received += len(rows)
        self.start = max(self.start, start)

    def _store_maps(self, camera: str, dst: torch.Tensor, frames: torch.Tensor, slots: torch.Tensor) -> None:
        for i in range(0, len(frames), self.chunk_frames):
            part = slice(i, i + self.chunk_frames)
            for j in range(self.shifts):
                view = random_shift(frames[part], self.shift_pad, generator=self.generator) if self.shift_pad \
                    else frames[part]
                dst[:, j].index_copy_(0, slots[part], self.encoder.frozen_feature_maps({camera: view})[camera])

    def _maps_at(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each slot's stored maps, one of its shifted copies drawn per sample."""
        if self.shifts == 1:
            return {k: v[slots, 0] for k, v in self.maps.items()}
        which = torch.randint(0, self.shifts, (len(slots),), device=self.device, generator=self.generator)
        return {k: v[slots, which] for k, v in self.maps.items()}

    def sample(self, batch_size: int) -> dict | None:
        """A uniform batch of the live transitions, on the device, shaped as the replay service's batches."""
        n = len(self)
        if n == 0:
            return None
        capacity, obs_capacity, _ = self.geometry
        i = torch.randint(0, n, (batch_size,), device=self.device, generator=self.generator)
        t = (i + self.start) % capacity
        o = self.steps["obs_index"][t] % obs_capacity
        nxt = self.steps["next_obs_index"][t] % obs_capacity
        batch = {"obs": nested_obs({k: v[o] for k, v in self.obs.items()}),
                 "next_obs": nested_obs({k: v[nxt] for k, v in self.obs.items()}),
                 "action": self.steps["action"][t], "reward": self.steps["reward"][t],
                 "terminated": self.steps["terminated"][t]}
        if self.maps:
            batch["obs_maps"], batch["next_obs_maps"] = self._maps_at(o), self._maps_at(nxt)
        return batch

    def _reset(self, epoch: str, geometry: tuple) -> None:
        if self.epoch is not None:
            self.resets += 1
        self.epoch, self.start, self.end = epoch, 0, 0
        if geometry == self.geometry:
            return  # same arrays: what they hold is dead until rows of the new epoch overwrite it
        capacity, obs_capacity, spec = geometry
        self.obs, self.maps, self.steps = {}, {}, {}  # free the old arrays before the new ones are made
        missing = sorted(set(self.map_shapes) - set(spec.obs))
        if missing:
            raise RowsError(f"the buffer's observations {sorted(spec.obs)} lack the camera(s) {missing} whose feature "
                            "maps this copy keeps")
        frames = {k: v for k, v in spec.obs.items() if k not in self.map_shapes}
        frame_bytes = dataclasses.replace(spec, obs=frames).obs_bytes()
        map_bytes = sum(int(np.prod(s)) * 4 * self.shifts for s in self.map_shapes.values())
        need = (frame_bytes + map_bytes) * obs_capacity + ReplayBuffer.step_bytes(spec) * capacity
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if need > free:
                raise RowsError(f"a copy of the replay buffer needs {need / 1e9:.1f} GB on {self.device}, "
                                f"{free / 1e9:.1f} GB are free: lower replay.capacity_gb or set "
                                "learner.batch_source=service")
        self.obs = {k: torch.zeros((obs_capacity, *s), dtype=_DTYPES[d], device=self.device)
                    for k, (s, d) in frames.items()}
        self.maps = {k: torch.zeros((obs_capacity, self.shifts, *s), dtype=torch.float32, device=self.device)
                     for k, s in self.map_shapes.items()}
        a_shape, a_dtype = spec.action
        self.steps = {"action": torch.zeros((capacity, *a_shape), dtype=_DTYPES[a_dtype], device=self.device),
                      "reward": torch.zeros(capacity, dtype=torch.float32, device=self.device),
                      "terminated": torch.zeros(capacity, dtype=torch.bool, device=self.device),
                      "obs_index": torch.zeros(capacity, dtype=torch.int64, device=self.device),
                      "next_obs_index": torch.zeros(capacity, dtype=torch.int64, device=self.device)}
        self.geometry = geometry

    def _check(self, arrays: dict, obs: dict, spec: Spec, n_steps: int, n_obs: int) -> None:
        if set(obs) != set(spec.obs):
            raise RowsError(f"rows hold observations {sorted(obs)}, the buffer's spec has {sorted(spec.obs)}")
        for k, (shape, dtype) in spec.obs.items():
            _expect(f"obs '{k}'", obs[k], (n_obs, *shape), dtype)
        _expect("action", arrays.get("action"), (n_steps, *spec.action[0]), spec.action[1])
        for k, dtype in (("reward", "float32"), ("terminated", "bool"), ("obs_index", "int64"),
                         ("next_obs_index", "int64")):
            _expect(k, arrays.get(k), (n_steps,), dtype)


def _tensor(array, device: torch.device) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.to(device, non_blocking=True)
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def _expect(name: str, array, shape: tuple, dtype: str) -> None:
    expect_array(name, array, shape, dtype, error=RowsError, holder="rows reply", types=(np.ndarray, torch.Tensor))

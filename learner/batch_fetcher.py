"""Prefetches training batches from the replay service in a background thread.

The thread owns the learner's DEALER socket (ZeroMQ sockets are not thread
safe), keeps `prefetch` sample requests in flight, and turns each reply into
tensors on the learner's device while the main thread is busy updating. When
the data is there, the learner never waits for it.

With a DeviceReplay (learner.batch_source=device) the replies are rows for that copy of the buffer instead of
batches; get() writes them into it and samples the batch there, on the device.
"""
from __future__ import annotations

import queue
import threading
import time
import warnings

import numpy as np
import torch
import zmq

from core import tree
from core.net import make_socket
from learner.device_replay import DeviceReplay
from wire import protocol
from wire.protocol import Kind

REASK_AFTER_S = 5.0  # how long the learner waits for an answer before it assumes the replay service restarted


# Batches are read-only views of the received ZeroMQ frames, and nothing writes to them: torch's warning about
# wrapping a read-only array says nothing here. Filtered once for the process, not with catch_warnings around each
# array: that context manager swaps the process-wide filter list, which is not safe beside the training thread.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def to_device(batch, device: torch.device):
    """numpy (nested dict) -> torch on device; host buffers are pinned first so the copy is asynchronous."""
    def move(array):
        t = torch.from_numpy(np.ascontiguousarray(array))
        return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t
    return tree.map(move, batch)


class BatchFetcher:
    def __init__(self, ctx: zmq.Context, address: str, batch_size: int, prefetch: int, device: torch.device,
                 sender: str = "learner", curve: str = "client", copy: DeviceReplay | None = None):
        self.address, self.batch_size, self.prefetch, self.device = address, batch_size, prefetch, device
        self.ctx, self.sender, self.curve = ctx, sender, curve
        self.copy = copy  # None: the replies are batches
        # Holds at most `prefetch` batches (the fetcher stops receiving at that), with up to `prefetch` more requested.
        self.queue: queue.Queue = queue.Queue()
        self._room = threading.Event()  # set by get() when the learner has taken half of the queue
        self.env_steps = 0  # the replay service's count of stored env steps, from the newest batch
        self.rejected = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-fetcher", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> BatchFetcher:
        self._thread.start()
        return self

    def get(self, timeout: float) -> dict | None:
        """The next batch, or None if none arrived within `timeout` seconds."""
        if self.error is not None:
            raise RuntimeError("batch fetcher thread failed") from self.error
        try:
            reply = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if self.queue.qsize() <= self.prefetch // 2:
            self._room.set()
        if self.copy is None:
            return reply
        meta, rows = reply
        self.copy.apply(meta, rows)  # a RowsError here is a broken copy: the learner stops and is restarted
        return self.copy.sample(self.batch_size)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # surfaced to the main thread by get()
            self.error = e

    def _loop(self) -> None:
        sock = make_socket(self.ctx, zmq.DEALER, curve=self.curve)
        sock.connect(self.address)
        in_flight, seq = 0, 0
        last_request = 0.0
        while not self._stop.is_set():
            if self.queue.qsize() >= self.prefetch:
                # The learner is behind: sleep until it has taken half the queue. One wake-up per prefetch/2
                # batches rather than one per batch, because every wake-up of this thread is a GIL hand-off
                # that the training thread waits for.
                self._room.clear()
                if self.queue.qsize() >= self.prefetch:
                    self._room.wait(0.1)
                last_request = time.time()  # replies waited in the socket meanwhile: they did come back
                continue
            # Keep `prefetch` requests in flight, so the next batches are already on their way while the learner
            # drains the queue (at most 2 x prefetch batches exist). Re-ask if nothing came back for a while (a
            # restarted replay service forgets requests; extra ones are merely served later).
            if in_flight < self.prefetch or time.time() - last_request > REASK_AFTER_S:
                if time.time() - last_request > REASK_AFTER_S:
                    in_flight = 0
                seq += 1
                meta = {"batch_size": self.batch_size, **({"rows": True} if self.copy is not None else {})}
                protocol.send(sock, Kind.SAMPLE, sender=self.sender, seq=seq, meta=meta)
                in_flight += 1
                last_request = time.time()
                continue
            if not sock.poll(100):
                continue
            try:
                _, msg = protocol.recv(sock, kinds={Kind.ROWS} if self.copy is not None else {Kind.BATCH})
            except protocol.ProtocolError:
                self.rejected += 1
                continue
            in_flight = max(0, in_flight - 1)
            last_request = time.time()
            self.env_steps = int(msg.meta.get("env_steps", self.env_steps))
            arrays = to_device(msg.arrays, self.device)
            if self.copy is None:
                self.queue.put(arrays)
            elif isinstance(msg.meta.get("rows"), dict):
                self.queue.put((msg.meta["rows"], arrays))
            else:
                self.rejected += 1
        sock.close(0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

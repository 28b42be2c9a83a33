"""Data-parallel on-policy learning: the update of one rollout on `learner.world_size` ranks (torch.distributed).

Rank 0 is the learner process (learner/on_policy.py), the only rank that talks to the rollout store, publishes
weights, writes metrics and checkpoints. It starts ranks 1..W-1 as child processes (`RankGroup`); each builds
the same algorithm, takes rank 0's weights, then does what rank 0 broadcasts (`follow`): train on a rollout,
load a checkpoint, stop. Backend: nccl with one GPU per rank (rank r on the learner's GPU + r), gloo on the CPU.
World size 1 is the same code with no process group: every method here is then the identity.

Why the update equals the one-rank update on the whole rollout:
* every rank holds the whole rollout and draws the same minibatch permutation (the algorithm's generator, one
  seed); a global minibatch of M rows is cut into W contiguous shards (`Ranks.shard`), so whatever is computed
  over a global minibatch (advantage normalisation) is computed by every rank over the same rows;
* a rank's loss, a mean over its rows, is weighted by its share of the minibatch's rows and the gradients are
  summed over the ranks (`Ranks.all_reduce_grads`) before clipping and the optimiser step: the sum is the
  gradient of the global minibatch's mean, and every rank steps with it, so the weights stay identical;
* the per-minibatch statistics are combined the same way (`Ranks.combine`: share-weighted sums, maxima);
* the critic's values of the rollout (PPO.prepare) are computed on shards of its rows and gathered.
No DDP wrapper: a VLA's update calls policy.evaluate, not the module's forward that DDP hooks, and the gradient
sum is one call in the one gradient step (learner/ppo.py).
"""
from __future__ import annotations

import contextlib
import datetime
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from core import tree
from core.devices import prepare_learner_device
from core.lifetime import die_with_parent
from learner.checkpoint import load_checkpoint

# Longer than rank 0 can wait for a rollout or write a checkpoint: the other ranks wait in a broadcast meanwhile.
# A rank that dies is noticed by rank 0's watchdog, not by this timeout.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)
# How long the watchdog lets rank 0 raise RankFailed itself before it ends the process (a nccl collective with
# a dead peer never returns).
FAILED_RANK_GRACE_S = 10.0
EXIT_RANK_FAILED = 4  # the learner's exit code when the watchdog ended it


class RankFailed(RuntimeError):
    """A learner rank process exited while the learner ran."""

    def __init__(self, rank: int, exitcode: int | None):
        super().__init__(f"learner rank {rank} (of learner.world_size) exited with code {exitcode} during the run "
                         "(its own output above says why): the data-parallel update cannot go on without it")
        self.rank, self.exitcode = rank, exitcode


def rank_device(learner_cfg, rank: int, seed: int) -> torch.device:
    """Rank `rank`'s device: learner.device shifted by the rank on a GPU (learner.device cuda:k -> cuda:k + rank);
    on the CPU each rank gets its share of the learner's threads."""
    device = prepare_learner_device(learner_cfg, seed)
    world_size = learner_cfg.world_size
    if device.type == "cuda":
        first = device.index or 0
        if first + world_size > torch.cuda.device_count():
            raise ValueError(f"learner.world_size={world_size} from learner.device={learner_cfg.device} needs GPUs "
                             f"{first}..{first + world_size - 1}, but {torch.cuda.device_count()} are visible")
        device = torch.device("cuda", first + rank)
        torch.cuda.set_device(device)
    elif world_size > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // world_size))
    return device


@dataclass
class Ranks:
    """This process's place among the learner's ranks, and the collectives the update needs."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    def shard(self, rows: torch.Tensor, *aligned: torch.Tensor) -> tuple:
        """(this rank's contiguous piece of a global minibatch's row indices, the same piece of each `aligned`
        tensor, the piece's share of the minibatch's rows). A rank whose piece is empty (a last minibatch with
        fewer rows than ranks) gets the first row at share 0: it runs the same passes and reaches the same
        collectives as the others, and adds nothing."""
        if self.world_size == 1:
            return rows, *aligned, 1.0
        pieces = [x.tensor_split(self.world_size)[self.rank] for x in (rows, *aligned)]
        if len(pieces[0]) == 0:
            return rows[:1], *(x[:1] for x in aligned), 0.0
        return *pieces, len(pieces[0]) / len(rows)

    def all_reduce_grads(self, parameters) -> None:
        """Sum the gradients over the ranks, in one flat buffer (one collective instead of one per tensor)."""
        if self.world_size == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for g, summed in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(summed.view_as(g))

    def combine(self, history: dict, shares: list[float], maxima: tuple[str, ...] = ()) -> dict:
        """Per-minibatch statistics of this rank's shards -> those of the global minibatches: each a share-weighted
        sum over the ranks (the statistics are means over rows), those named in `maxima` the maximum."""
        if self.world_size == 1 or not history:
            return history
        names = list(history)
        stacked = torch.stack([torch.stack(history[k]).float() for k in names])  # [statistics, minibatches]
        is_max = torch.tensor([k in maxima for k in names], device=stacked.device)[:, None]
        weighted = torch.where(is_max, torch.zeros_like(stacked), stacked * torch.tensor(shares, device=stacked.device))
        dist.all_reduce(weighted)
        largest = torch.where(is_max, stacked, torch.full_like(stacked, -torch.inf))
        dist.all_reduce(largest, op=dist.ReduceOp.MAX)
        combined = torch.where(is_max, largest, weighted)
        return {k: list(combined[i]) for i, k in enumerate(names)}

    def map_rows(self, fn: Callable, rows) -> torch.Tensor:
        """fn(rows) -> [n, ...], each rank computing it on a contiguous shard of the n rows, gathered on every rank."""
        if self.world_size == 1:
            return fn(rows)
        n = len(tree.leaves(rows)[0])
        base, extra = divmod(n, self.world_size)
        counts = [base + (r < extra) for r in range(self.world_size)]
        start = sum(counts[:self.rank])
        mine = fn(tree.map(lambda a: a[start:start + counts[self.rank]], rows))
        padded = mine.new_zeros((counts[0], *mine.shape[1:]))  # all_gather wants equal sizes; counts[0] is the largest
        padded[:len(mine)] = mine
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded)
        return torch.cat([g[:c] for g, c in zip(gathered, counts)])

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers to every rank."""
        if self.world_size == 1:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def broadcast(self, command: str = "", payload: dict | None = None, arrays: dict | None = None):
        """Rank 0 sends (command, payload: small picklable values, arrays: a tree of tensors); every rank returns
        them, the tensors on its device. The tensors travel as tensors, not pickled: a rollout's images are large."""
        message = [(command, payload or {}, {k: (tuple(a.shape), a.dtype) for k, a in tree.flatten(arrays).items()}
                    if arrays is not None else None)]
        dist.broadcast_object_list(message, src=0, device=self.device if self.device.type == "cuda" else None)
        command, payload, layout = message[0]
        if layout is None:
            return command, payload, None
        # contiguous: a broadcast sends the tensor's memory as it lies, the receivers read it in row-major order
        flat = {k: a.contiguous() for k, a in tree.flatten(arrays).items()} if self.rank == 0 else {
            k: torch.empty(shape, dtype=dtype, device=self.device) for k, (shape, dtype) in layout.items()}
        for t in flat.values():
            if t.numel():
                dist.broadcast(t, src=0)
        return command, payload, tree.unflatten(flat)


SINGLE = Ranks()  # world size 1: no process group


def join_group(rank: int, world_size: int, port: int, device: torch.device) -> Ranks:
    """Join the learner's process group (rank 0's TCP store on this host)."""
    store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT)
    return Ranks(rank, world_size, device)


def follow(rank: int, port: int, learner_cfg, make_algorithm: Callable, obs_space, action_space, seed: int) -> None:
    """A rank > 0: build the algorithm as rank 0 does, take its weights, then train on what it broadcasts."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole terminal group: rank 0 says when to stop
    device = rank_device(learner_cfg, rank, seed)
    algorithm = make_algorithm(obs_space, action_space, device, seed)
    algorithm.ranks = ranks = join_group(rank, learner_cfg.world_size, port, device)
    ranks.broadcast_module(algorithm.model)
    while True:
        command, payload, arrays = ranks.broadcast()
        if command == "train":
            algorithm.train(arrays, payload["progress"])
        elif command == "load":  # rank 0 resumed from this checkpoint
            state = load_checkpoint(payload["path"])
            algorithm.load_state_dict(state["algorithm"])
            torch.set_rng_state(state["torch_rng"])
        elif command == "stop":
            break
        else:
            raise ValueError(f"learner rank {rank} got an unknown command {command!r} from rank 0")
    dist.destroy_process_group()


class RankGroup:
    """Rank 0's side: it starts ranks 1..W-1, watches them, and sends them its commands.

    The ranks are spawned processes (a fresh interpreter: CUDA cannot be forked) that die with the learner
    (PR_SET_PDEATHSIG). A rank that exits while the learner runs fails the learner: the next command or update
    raises RankFailed (`guard`); should rank 0 not get there within FAILED_RANK_GRACE_S (stuck in a collective
    with the dead rank, or waiting for a rollout), the watchdog ends it with EXIT_RANK_FAILED.
    """

    def __init__(self, learner_cfg, make_algorithm: Callable, obs_space, action_space, seed: int, log):
        self.world_size, self.log = learner_cfg.world_size, log
        self.device = rank_device(learner_cfg, 0, seed)
        self.ranks, self.processes, self.stopping, self.reported = SINGLE, [], False, False
        if self.world_size == 1:
            return
        self.store = dist.TCPStore("127.0.0.1", 0, self.world_size, is_master=True, timeout=COLLECTIVE_TIMEOUT,
                                   wait_for_workers=False)
        spawn = torch.multiprocessing.get_context("spawn")
        for rank in range(1, self.world_size):
            process = spawn.Process(target=follow, name=f"learner-rank-{rank}", daemon=True,
                                    args=(rank, self.store.port, learner_cfg, make_algorithm, obs_space, action_space,
                                          seed))
            process.start()
            self.processes.append(process)
        threading.Thread(target=self._watch, daemon=True, name="learner-ranks-watch").start()

    def connect(self, algorithm) -> None:
        """Rank 0 joins the group (waiting for every rank to have built its algorithm) and sends its weights."""
        if self.world_size == 1:
            return
        with self.guard():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, store=self.store, rank=0, world_size=self.world_size,
                                    timeout=COLLECTIVE_TIMEOUT)
            algorithm.ranks = self.ranks = Ranks(0, self.world_size, self.device)
            self.ranks.broadcast_module(algorithm.model)
        self.log.info(f"learner on {self.world_size} ranks ({dist.get_backend()}), "
                      f"rank pids {[p.pid for p in self.processes]}")

    def send(self, command: str, payload: dict | None = None, arrays: dict | None = None) -> None:
        """A command to ranks 1..W-1: "train" (payload progress, arrays the rollout), "load" (path), "stop"."""
        if self.world_size > 1:
            self.stopping = command == "stop"  # from here on the ranks' exits are expected
            with self.guard():
                self.ranks.broadcast(command, payload, arrays)

    @contextlib.contextmanager
    def guard(self):
        """Around rank 0's collectives: a rank that died before or during them raises RankFailed."""
        self._raise_if_dead(None)
        try:
            yield
        except Exception as error:
            # A collective with a dead peer fails in the backend's own words: name the rank instead, once its
            # process has been reaped.
            for _ in range(50):
                if self.dead() is not None:
                    break
                time.sleep(0.1)
            self._raise_if_dead(error)
            raise

    def _raise_if_dead(self, cause: BaseException | None) -> None:
        found = self.dead()
        if found is not None and not self.stopping:
            self.reported = True
            raise RankFailed(*found) from cause

    def dead(self) -> tuple[int, int | None] | None:
        for rank, process in enumerate(self.processes, start=1):
            if process.exitcode is not None:
                return rank, process.exitcode
        return None

    def _watch(self) -> None:
        multiprocessing.connection.wait([p.sentinel for p in self.processes])
        found = None
        while found is None:  # the exit code is there once the process is reaped (here or by the main thread)
            found = self.dead()
            time.sleep(0.05)
        if self.stopping:
            return
        rank, code = found
        self.log.error(f"learner rank {rank} exited with code {code}: the learner stops")
        time.sleep(FAILED_RANK_GRACE_S)
        if not self.reported:  # rank 0 did not reach a guard: stuck in a collective, or waiting for a rollout
            os._exit(EXIT_RANK_FAILED)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ranks 1..W-1 leave; the process group is closed."""
        if self.world_size == 1:
            return
        self.send("stop")
        for process in self.processes:
            process.join(timeout_s)
            if process.exitcode is None:
                process.kill()
        dist.destroy_process_group()

"""Data-parallel training on several processes: PyTorch's DistributedDataParallel, launched by torchrun.

``torchrun --nproc-per-node N -m longmul train …`` (or ``longmul train --nproc N …``, which runs that
torchrun command on this machine) trains one model on N processes, its *ranks*. This module holds what
:mod:`longmul.train` needs to be one of them. In a plain process there is one rank and every collective
below does nothing, so one process trains exactly as it does without this module.

How the ranks share the work, and why N ranks train the model one process trains:

* ``--batch-size`` is the *global* batch. Every rank draws the same global batch from the same seeded
  generators (the problems and ICoT's removal smoothing, restored from the one checkpoint on a resume)
  and trains on its own rows of it (:meth:`Ranks.rows`): the ranks' rows are disjoint, and together
  they are the batch one process trains on.
* DDP averages the ranks' gradients. The token loss is a mean over the global batch's target tokens,
  and an ICoT batch's rows hold different numbers of them, so a rank divides its sum by the global
  count (every rank knows it: every rank built the global batch) and scales it by the world size;
  the average of the ranks' gradients is then the gradient of the global mean. The per-digit and aux
  losses are means over rows, equal shares on every rank: DDP's average is their global mean as is.
* Logged values are the global batch's (summed or averaged over the ranks). Rank 0 evaluates (the ICoT
  gate, validation), logs and checkpoints; the others wait for what it decides (:meth:`Ranks.share`).
* Dropout draws differ by rank: rank 0 seeds torch as one process does, rank r > 0 from the run's seed
  and r. A checkpoint holds every rank's generator, so a run resumed on as many ranks continues exactly.
* The ranks' gradients are added in another order than one process adds its rows, so N ranks match one
  process to float rounding, not bit for bit.

Faults. When a rank dies, torchrun stops the others. A rank waiting on a dead peer gets an error from
the collective at once (its connection closes); one waiting on a hung peer gets it after
:data:`TIMEOUT`. :func:`process_group` turns that error into :class:`RankLost`: one line that says to
rerun with ``--resume``, which continues from the last checkpoint.

Every rank reads the run's folder (its checkpoint on a resume), so ranks on several machines need a
shared file system.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .model import pick_device

# How long a rank waits for the others in one collective before giving up on them. The longest
# legitimate wait is for rank 0's evaluation (validation, the ICoT gate) and checkpoints; raise it
# with LONGMUL_DDP_TIMEOUT_S (seconds) for very large validation sets on slow machines.
TIMEOUT = timedelta(seconds=float(os.environ.get("LONGMUL_DDP_TIMEOUT_S", "1800")))


class RankLost(ConnectionError):
    """Another rank stopped (killed, crashed) or hangs, so this one cannot go on."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of a run, and the collectives the trainer uses (each one
    does nothing in a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # its index on this machine: a GPU rank uses cuda:local_rank
    backend: str | None = None  # "gloo" (CPU) or "nccl" (GPU); None for a single process

    @property
    def main(self) -> bool:
        """Rank 0: evaluates, logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------ what each rank does
    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size``: equal, disjoint shares in rank order."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size {batch_size} (--batch-size, the global batch) does not split evenly among "
                f"{self.world_size} ranks; use a multiple of {self.world_size}"
            )
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on, given the one the run asks for: each GPU rank takes the GPU
        of its local rank."""
        if not self.distributed:
            return device
        if device.type == "mps":
            raise ValueError("--device mps: data-parallel training runs on CPUs (gloo) or CUDA GPUs (nccl)")
        if (device.type == "cuda") != (self.backend == "nccl"):
            raise ValueError(
                f"--device {device}: this torchrun session joined its ranks with {self.backend} for "
                f"{'GPUs' if self.backend == 'nccl' else 'CPUs'}; a run that moves between CPU and GPU "
                "continues in a new torchrun session with --resume"
            )
        if device.type != "cuda":
            return device
        if device.index is not None:
            raise ValueError(f"--device {device} names one GPU; under torchrun use cuda or auto (each rank takes its own)")
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(f"rank {self.rank} wants GPU {self.local_rank}; this machine has {torch.cuda.device_count()}")
        return torch.device("cuda", self.local_rank)

    def dropout_seed(self, seed: int, step: int = 0) -> int:
        """The torch seed of this rank's dropout draws: the run's seed on rank 0 (as in one process), a
        stream of its own on every other rank (``step``: where a resumed run gives a rank its first seed)."""
        if self.main:
            return seed
        return int(np.random.SeedSequence([seed, self.rank, step]).generate_state(1)[0])

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``module`` under DistributedDataParallel (its gradients averaged over the ranks in backward)."""
        if not self.distributed:
            return module
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    # ------------------------------------------------------------------ collectives
    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait until every rank gets here (the others wait for rank 0's files)."""
        if self.distributed:
            dist.barrier(device_ids=[self.local_rank] if self.backend == "nccl" else None)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the ranks (a new tensor)."""
        if not self.distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the ranks (a new tensor)."""
        return self.sum(tensor) / self.world_size if self.distributed else tensor

    def mean_tensors(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each tensor's mean over the ranks, in one collective."""
        if not self.distributed:
            return tensors
        flat = self.mean(torch.cat([t.detach().reshape(-1) for t in tensors]))
        return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)]

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's values of ``tensor``, written into it on every rank."""
        if self.distributed:
            dist.broadcast(tensor, src=0)
        return tensor

    def share(self, value: float | None) -> float:
        """Rank 0's ``value`` on every rank (the others pass None and wait for it)."""
        if not self.distributed:
            return value
        box = torch.tensor([value if self.main else 0.0], dtype=torch.float64, device=self._comm_device())
        return float(self.broadcast_(box))

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank: how the ranks agree to stop or to checkpoint after the
        same step."""
        if not self.distributed:
            return flag
        vote = torch.tensor([int(flag)], dtype=torch.int32, device=self._comm_device())
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        return bool(vote)

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape and type on each), in rank order, on the CPU."""
        if not self.distributed:
            return [tensor]
        mine = tensor.to(self._comm_device())
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine)
        return [part.cpu() for part in parts]

    def gather_objects(self, value) -> list:
        """Every rank's ``value`` (a small JSON-like object), in rank order."""
        if not self.distributed:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


SINGLE = Ranks()


@contextmanager
def process_group(device: str) -> Iterator[Ranks]:
    """This process's :class:`Ranks` for the duration: in a rank that torchrun started, the process
    group its environment describes, joined with gloo when ``device`` (a ``--device`` value) is the CPU
    and nccl when it is a CUDA GPU; a single rank otherwise (or under torchrun with one process). A
    collective that fails because another rank is gone becomes :class:`RankLost`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield SINGLE
        return
    if dist.is_initialized():  # a group the caller joined: use it, leave it to the caller
        yield Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())
        return
    kind = pick_device(device).type
    if kind == "mps":
        raise ValueError("--device mps: data-parallel training runs on CPUs (gloo) or CUDA GPUs (nccl)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if kind == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT)
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    try:
        yield ranks
    except RuntimeError as err:
        if not _peer_failure(err):
            raise
        raise RankLost(
            f"rank {ranks.rank} of {ranks.world_size} lost the other ranks ({_reason(err)}): one of them "
            "stopped or hangs (torchrun's report names it); rerun the same command with --resume to "
            "continue from the last checkpoint"
        ) from None
    finally:
        dist.destroy_process_group()


def _peer_failure(err: RuntimeError) -> bool:
    """Whether a collective failed because of another rank (a closed connection, a timeout)."""
    return isinstance(err, dist.DistError) or "gloo" in str(err).lower() or "nccl" in str(err).lower()


def _reason(err: RuntimeError) -> str:
    """The backend's own words, without its source location: 'Read error …: Connection reset by peer'."""
    text = " ".join(str(err).split())
    text = text.split("] ", 1)[-1] if text.startswith("[") else text
    return text.split(". ")[0]


def relaunch(nproc: int, argv: list[str]) -> int | None:
    """``longmul train --nproc N``: in a plain process, run the same command line under torchrun on
    ``nproc`` processes of this machine and return its exit status; in a rank that torchrun started for
    ``nproc`` processes (or with ``nproc`` 1), None: train here."""
    started = os.environ.get("LOCAL_WORLD_SIZE")
    if started is not None:
        if int(started) != nproc:
            raise ValueError(f"--nproc {nproc}: torchrun started {started} processes on this machine; give the count once")
        return None
    if nproc == 1:
        return None
    # The ranks get the command line without --nproc: torchrun's own parser would take it for its
    # --nproc-per-node (an ambiguous abbreviation), and they are the processes it asks for.
    rest = [a for i, a in enumerate(argv) if a != "--nproc" and not a.startswith("--nproc=") and argv[i - 1 : i] != ["--nproc"]]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    process = subprocess.Popen([*command, "-m", "longmul", *rest])
    # Ctrl-C reaches torchrun and the ranks as well (one terminal process group): they stop with a
    # checkpoint, and this process waits for them. A SIGTERM sent to this process alone is passed on.
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

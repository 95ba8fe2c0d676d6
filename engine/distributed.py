"""Ranks: who this process is among several, and which shards it writes.

Launchers start the same command several times and say which copy is which:
``torchrun`` through ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (and the rendezvous
variables :func:`torch.distributed.init_process_group` reads), SLURM array jobs
or separate machines through ``--shard i/n``. Both combine: ``--shard i/n`` on
a ``torchrun`` of K processes is rank ``i·K + RANK`` of ``n·K``.

Shard assignment is static: store shard ``k`` belongs to rank ``k mod world``
(round robin, so ranks get equal work and the last, partial shard costs one
rank at most one shard more). No rank ever writes another's shard, so ranks
need no locks.

This module imports nothing heavy; torch only inside the functions that need it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from engine.errors import ConfigError

log = logging.getLogger(__name__)

#: how long a rank waits at a barrier for the others (generation of a big store)
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run.

    Attributes:
        rank: global rank, ``0 <= rank < world``.
        world: how many processes share the work.
        local_rank: rank on this machine (picks the GPU), ``LOCAL_RANK``.
        group_rank, group_size: rank and size of the ``torchrun`` group this
            process belongs to (``0``/``1`` without torchrun); only those can
            talk through torch.distributed.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group_rank: int = 0
    group_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ConfigError(f"rank {self.rank} is not in [0, {self.world})")

    @property
    def shared(self) -> bool:
        """Several processes write one output."""
        return self.world > 1

    @property
    def in_group(self) -> bool:
        """Launched by torchrun with other processes: barriers and reductions work."""
        return self.group_size > 1

    @property
    def leader(self) -> bool:
        """Rank 0 of its torchrun group (or the only process): writes what is written once."""
        return self.group_rank == 0


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n``.

    Raises:
        ConfigError: not of that form.
    """
    parts = text.split("/")
    try:
        i, n = (int(p) for p in parts) if len(parts) == 2 else (None, None)  # type: ignore[misc]
    except ValueError:
        i = n = None
    if i is None or n is None or n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return i, n


def discover(shard: str | None = None, env: Mapping[str, str] | None = None) -> Ranks:
    """This process's :class:`Ranks`, from ``--shard i/n`` and torchrun's environment.

    Raises:
        ConfigError: a malformed ``--shard`` or environment.
    """
    env = os.environ if env is None else env
    try:
        group_size = int(env.get("WORLD_SIZE", "1"))
        group_rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if group_size < 1 or not 0 <= group_rank < group_size:
        raise ConfigError(f"RANK={group_rank} is not in [0, WORLD_SIZE={group_size})")
    i, n = parse_shard(shard) if shard is not None else (0, 1)
    return Ranks(rank=i * group_size + group_rank, world=n * group_size, local_rank=local_rank,
                 group_rank=group_rank, group_size=group_size)


def assigned_shards(n_shards: int, ranks: Ranks) -> list[int]:
    """Store shards rank ``ranks.rank`` writes: ``k`` with ``k mod world == rank``, in order."""
    return list(range(ranks.rank, n_shards, ranks.world))


def owner(shard: int, world: int) -> int:
    """The rank that writes store shard ``shard``."""
    return shard % world


def pin_local_gpu(ranks: Ranks, env: dict[str, str] | None = None) -> None:
    """Make ``LOCAL_RANK``'s GPU the only one this process sees.

    Sets ``CUDA_VISIBLE_DEVICES`` (taking the ``local_rank``-th entry of any
    list already there) so every CUDA library (Numba, PyTorch, CuPy, nvCOMP)
    uses it as device 0; a rank beyond the GPUs sees none (``--device auto``
    then runs it on the CPU). Must run before any of them starts CUDA; does
    nothing for a single process on one machine.
    """
    env = os.environ if env is None else env  # type: ignore[assignment]
    if ranks.group_size <= 1 and ranks.local_rank == 0:
        return
    visible = env.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in visible.split(",") if d.strip()] if visible else None
    if devices is None:
        env["CUDA_VISIBLE_DEVICES"] = str(ranks.local_rank)  # a GPU that does not exist: none visible
    else:  # fewer listed than local ranks: this rank gets none (ranks never share a GPU by accident)
        env["CUDA_VISIBLE_DEVICES"] = devices[ranks.local_rank] if ranks.local_rank < len(devices) else ""


def init_group(ranks: Ranks, backend: str = "gloo") -> bool:
    """Join the torchrun group (``env://`` rendezvous) when there is one.

    Returns:
        Whether a process group was started here (the caller ends it with
        :func:`end_group`).
    """
    if not ranks.in_group:
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
    log.info("rank %d of %d (torchrun group rank %d of %d, %s)", ranks.rank, ranks.world,
             ranks.group_rank, ranks.group_size, backend)
    return True


def end_group() -> None:
    """Leave the process group started by :func:`init_group`."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Wait for every process of the torchrun group (no-op without one)."""
    if ranks.in_group:
        import torch.distributed as dist

        dist.barrier()


def gather_floats(ranks: Ranks, values: list[float]) -> list[list[float]]:
    """Every group rank's ``values`` (same length on all), in rank order; just
    ``[values]`` without a group."""
    if not ranks.in_group:
        return [list(values)]
    import torch
    import torch.distributed as dist

    mine = torch.tensor(values, dtype=torch.float64)
    every = [torch.zeros_like(mine) for _ in range(ranks.group_size)]
    dist.all_gather(every, mine)
    return [t.tolist() for t in every]

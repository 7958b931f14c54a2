"""torch.distributed set-up from torchrun's environment, and the few collectives the trainer needs.

One command scales from one CPU process to many nodes: under ``torchrun`` the variables RANK, WORLD_SIZE and
LOCAL_RANK are set and a process group is opened (gloo on CPU, nccl on CUDA); without them everything below is a
no-op that returns the single-process answer, so the training loop has no ``if distributed`` branches.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank among ``world_size`` processes and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → this process's CUDA device when there is one, else CPU; anything else as given."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    return resolved


def init_distributed(device: str = "auto", timeout: timedelta | None = None) -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this process's device.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; under torchrun ``"cuda"`` means
            ``cuda:LOCAL_RANK``.
        timeout: how long a collective waits for the slowest process (None: torch's default, minutes).

    Returns:
        This process's place; ``world_size == 1`` when not launched by torchrun.
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", timeout=timeout)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


_held = False  # a command making several runs in one process keeps the group open between them (held_group)


@contextlib.contextmanager
def held_group(device: str = "auto") -> Iterator[DistInfo]:
    """Open the process group once for several runs made one after another in this process: each run's
    :func:`cleanup` then leaves it open. Under torchrun a second group opened after the first was destroyed
    cannot connect (gloo's connectFullMesh was refused: the rendezvous store still holds the first group's keys).
    """
    global _held
    place = init_distributed(device)
    _held, finished = True, False
    try:
        yield place
        finished = True
    finally:
        _held = False
        cleanup(wait=finished)


def cleanup(wait: bool = True) -> None:
    """Leave the process group, if one was opened (inside :func:`held_group`, only wait for the others).

    Each process first frees what still holds gloo work (a DDP wrapper in a reference cycle keeps its reducer's
    pending work alive) and, with ``wait``, waits for the others: a group torn down under that work, or while another
    process is still in a collective, aborts with "terminate called without an active exception" (seen once in a
    torchrun test under load). A process leaving after an error passes ``wait=False``: the others may never come.
    """
    if dist.is_initialized():
        gc.collect()
        if wait:
            dist.barrier()
        if not _held:
            dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes (a new tensor; the input is left as it is)."""
    total = tensor.clone()
    if dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (a list of one when not distributed)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def global_mean_scale(local_counts: torch.Tensor) -> torch.Tensor:
    """Factors that turn per-process means into one exact global mean under DDP's gradient averaging.

    A loss that is a mean over a variable number of targets (masked tokens, answered questions) differs per
    process; DDP averages gradients over processes, which would weight a process with 3 masked tokens like one
    with 30. Multiplying process ``r``'s mean by ``n_r * world_size / N`` (``N`` = the sum of all ``n_r``) makes
    the averaged gradient that of the mean over all ``N`` targets of the global batch — the gradient one process
    would get with the whole batch.

    Args:
        local_counts: ``(K,)`` target counts of K losses on this process.

    Returns:
        ``(K,)`` float factors; all 1 without a process group; 0 where no process has a target.
    """
    counts = local_counts.detach().float()
    if not dist.is_initialized():
        return torch.ones_like(counts)
    total = all_reduce_sum(counts)
    return torch.where(
        total > 0, counts * dist.get_world_size() / total.clamp(min=1), torch.zeros_like(counts)
    )


def reduce_sums(sums: dict[str, tuple[Any, Any]], device: torch.device) -> dict[str, tuple[float, float]]:
    """Add ``name → (numerator, count)`` pairs over all processes; values may be floats or 0-d tensors.

    Processes may hold different names (a head that saw no targets on one shard); the union is reduced, missing
    entries counting as ``(0, 0)``. The result holds Python floats.
    """
    names = sorted(set().union(*all_gather_object(sorted(sums)))) if dist.is_initialized() else sorted(sums)
    if not names:
        return {}
    values = [
        torch.as_tensor(v, dtype=torch.float64, device=device) for n in names for v in sums.get(n, (0, 0))
    ]
    total = all_reduce_sum(torch.stack(values).reshape(-1, 2)).tolist()
    return {name: (num, count) for name, (num, count) in zip(names, total, strict=True)}


__all__ = [
    "DistInfo",
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "cleanup",
    "global_mean_scale",
    "init_distributed",
    "is_main",
    "rank",
    "reduce_sums",
    "resolve_device",
    "world_size",
]

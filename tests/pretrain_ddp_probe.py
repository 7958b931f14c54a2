"""Run under torchrun: one pre-training backward pass on this process's share of a global batch.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/pretrain_ddp_probe.py WORLD OUT

Rank r takes items ``GLOBAL_BATCH[r::world_size]`` (the trainer's strided sharding); rank 0 writes the
DDP-averaged gradients and each rank's target counts to OUT. Dropout is off, so one process with the whole batch
must get the same gradients (tests/test_pretrain_distributed.py).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).parent))

from pretrain_fixture import pretrain_setup  # noqa: E402

from lxmert.modeling import LxmertForPreTraining  # noqa: E402
from training.engine import distributed  # noqa: E402
from training.tasks.pretraining import pretrain_collate  # noqa: E402

GLOBAL_BATCH = list(range(3, 19))


def gradients(world: Path, rank: int, world_size: int) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Gradients after one backward pass on ``GLOBAL_BATCH[rank::world_size]``, and that share's target counts."""
    data, task, cfg = pretrain_setup(world)
    cfg = dataclasses.replace(cfg, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = LxmertForPreTraining(cfg).train()
    batch = pretrain_collate([data[i] for i in GLOBAL_BATCH[rank::world_size]])
    counts = [int((batch["lm_labels"] != -100).sum()), int((batch["ans"] != -100).sum())]
    if world_size > 1:
        model = DistributedDataParallel(model, find_unused_parameters=True)
    losses, _ = task.compute(model, batch)
    sum(losses.values()).backward()
    named = model.module.named_parameters() if world_size > 1 else model.named_parameters()
    return {name: p.grad.clone() for name, p in named if p.grad is not None}, counts


def main() -> None:
    world, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    info = distributed.init_distributed("cpu")
    grads, counts = gradients(world, info.rank, info.world_size)
    all_counts = distributed.all_gather_object(counts)
    if info.is_main:
        torch.save({"grads": grads, "counts": all_counts}, out)
    distributed.cleanup()


if __name__ == "__main__":
    main()

"""What the shared trainer needs to know about a task: how to batch it, its losses and metrics, what to save.

A task turns a batch into a dict of named losses (summed with equal weights by the trainer, detectron2-style) and
a dict of metric sums ``name → (numerator, count)``. Sums, not ratios, so that the trainer can add them over steps
and processes before dividing: an accuracy over a sharded validation set is then exact, whatever the world size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

# name → (numerator, count); a metric's value is numerator / count.
MetricSums = dict[str, tuple[float, float]]
Losses = dict[str, Tensor]
Stats = dict[str, tuple[Tensor, Tensor]]


def add_sums(total: MetricSums, name: str, numerator: float, count: float) -> None:
    """Accumulate one ``(numerator, count)`` pair into ``total`` in place."""
    num, cnt = total.get(name, (0.0, 0.0))
    total[name] = (num + numerator, cnt + count)


class Task(ABC):
    """One training objective (pre-training, VQA, GQA, NLVR2) as the trainer sees it.

    Class attributes:
        name: the registry name (``training/tasks/__init__.py``).
        main_metric: the validation metric that picks the best checkpoint, a key of ``evaluate``'s result after
            division (a stat name, ``"loss"`` or ``"<loss name>_loss"``).
        higher_is_better: the direction of ``main_metric``.

    Datasets given to the trainer may define ``set_epoch(epoch)``: the trainer calls it before every epoch (as
    it does on its sampler), so per-item randomness (masking, negatives) can be a function of
    ``(seed, epoch, index)`` — identical for any number of processes or workers and after a resume.
    """

    name: ClassVar[str]
    main_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def collate(self, items: list[Any]) -> dict[str, Any]:
        """Items of the dataset → one batch (a dict; its tensors are moved to the device by the trainer)."""
        return default_collate(items)

    @abstractmethod
    def compute(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Losses, Stats]:
        """Run the model on a batch.

        Args:
            model: the model — wrapped in DistributedDataParallel / ``torch.compile`` while training, bare while
                evaluating; ``model.training`` says which.
            batch: a collated batch on the training device.

        Returns:
            ``losses``: name → scalar tensor with gradient; the trainer backpropagates their sum.
            ``stats``: name → ``(numerator, count)`` scalar tensors, e.g. ``(correct, total)`` of an accuracy.
        """

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> MetricSums:
        """Metric sums over this process's shard of a validation set (the trainer adds shards and divides).

        The default runs ``compute`` on every batch: each stat is summed, each loss counted as a per-batch mean
        (``"<name>_loss"`` and their total ``"loss"``). Override for metrics that need all predictions at once.
        """
        sums: MetricSums = {}
        for batch in batches:
            losses, stats = self.compute(model, batch)
            add_sums(sums, "loss", float(sum(losses.values())), 1.0)
            for name, value in losses.items():
                add_sums(sums, f"{name}_loss", float(value), 1.0)
            for name, (numerator, count) in stats.items():
                add_sums(sums, name, float(numerator), float(count))
        return sums

    def save_pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.save_pretrained`` (e.g. ``tokenizer=``, ``answers=``); none by default."""
        return {}

    def save_extras(self, directory: Path) -> None:
        """Write task files beside a saved model (called after ``save_pretrained`` on rank 0); none by default."""
        return None


def metrics_from_sums(sums: MetricSums) -> dict[str, float]:
    """Divide every ``(numerator, count)``; names with no count are left out."""
    return {name: num / count for name, (num, count) in sorted(sums.items()) if count > 0}


def scalar(value: Tensor | float) -> Tensor:
    """A 0-d float tensor (for stats built from Python numbers)."""
    return torch.as_tensor(value, dtype=torch.float32)


__all__ = ["Losses", "MetricSums", "Stats", "Task", "add_sums", "metrics_from_sums", "scalar"]

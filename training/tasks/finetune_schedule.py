"""How fast to fine-tune a model of a given size, and whether a run ended while it was still learning.

The paper's fine-tuning rates (5e-5 VQA and NLVR2, 1e-5 GQA) are for its base model, 768 wide. A much narrower model
learns far too slowly at them: the tiny preset (64 wide) that ``scripts/build_default.sh`` fine-tunes at 1e-3
reached 0.836 on an external 13-answer VQA set at 5e-5 against 0.993 at 1e-3 (issue 24). So when no ``--lr`` is
given, the rate is chosen by the model's width: the paper's rate at 768 and wider, 1e-3 at 64 and narrower, and in
between on a straight line in log(width) against log(rate). Only the two ends were measured; the line between them
is an interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

BASE_WIDTH = 768  # the paper's base model: its rates apply here
NARROW_WIDTH = 64  # the tiny preset
NARROW_LR = 1e-3  # scripts/build_default.sh's rate for the tiny preset
# A last epoch that still adds more than this to the validation score (absolute) ends a run that was still learning.
# Two points: on a few hundred validation questions one point is within the epoch-to-epoch noise (a 540-question
# set rose 0.018 in the last epoch of a run as good as the best of a learning-rate sweep, docs/byo_dataset.md).
STILL_LEARNING_GAIN = 0.02
# A model this close to the question-only prior (or below it) has learned nothing from the images.
PRIOR_MARGIN = 0.01


def finetune_lr(paper_lr: float, hidden_size: int) -> float:
    """The peak learning rate to fine-tune a ``hidden_size``-wide model at (see the module docstring).

    Args:
        paper_lr: the task's rate for the paper's base model.
        hidden_size: the model's width (``LxmertConfig.hidden_size``).
    """
    if hidden_size < 1 or paper_lr <= 0:
        raise ValueError(f"need hidden_size >= 1 and paper_lr > 0, got {hidden_size} and {paper_lr}")
    if hidden_size >= BASE_WIDTH:
        return paper_lr
    if hidden_size <= NARROW_WIDTH:
        return NARROW_LR
    along = math.log(BASE_WIDTH / hidden_size) / math.log(BASE_WIDTH / NARROW_WIDTH)  # 0 at base, 1 at narrow
    return math.exp(math.log(paper_lr) + along * (math.log(NARROW_LR) - math.log(paper_lr)))


def last_epoch_gain(records: Sequence[dict[str, Any]], metric: str) -> float | None:
    """How much ``metric`` rose over the last epoch of validation records (None: under an epoch of them).

    Args:
        records: the run's ``metrics.jsonl`` records, in order; only ``split == "valid"`` ones are read.
        metric: the validation metric (the task's ``main_metric``).
    """
    valid = [r for r in records if r.get("split") == "valid" and metric in r]
    if not valid:
        return None
    last = valid[-1]
    earlier = [r for r in valid if r["epoch"] <= last["epoch"] - 1 + 1e-9]
    return last[metric] - earlier[-1][metric] if earlier else None


def still_learning_warning(gain: float | None, metric: str, lr: float, flags: str) -> str | None:
    """The warning for a run whose last epoch gained more than ``STILL_LEARNING_GAIN``; None otherwise.

    Args:
        flags: how this command sets epochs and the learning rate (e.g. ``"--epochs / --lr"``).
    """
    if gain is None or gain <= STILL_LEARNING_GAIN:
        return None
    return (
        f"validation {metric} was still rising when training stopped (+{gain:.3f} in the last epoch, at peak lr "
        f"{lr:.2g}): the model is probably undertrained; train longer or faster ({flags})"
    )


def no_better_than_prior_warning(score: float, prior: float, flags: str) -> str | None:
    """The warning for a best validation ``score`` within ``PRIOR_MARGIN`` of the question-only ``prior``'s.

    A run that learns too slowly can end flat near the prior (the paper's 5e-5 for the 64-wide model did, below it),
    where the last-epoch gain says nothing; this catches it.
    """
    if score - prior > PRIOR_MARGIN:
        return None
    return (
        f"the best validation accuracy {score:.3f} is no better than the question-only prior's {prior:.3f}: the "
        f"images do not help with these questions, or the model is undertrained ({flags})"
    )


__all__ = [
    "BASE_WIDTH",
    "NARROW_LR",
    "NARROW_WIDTH",
    "PRIOR_MARGIN",
    "STILL_LEARNING_GAIN",
    "finetune_lr",
    "last_epoch_gain",
    "no_better_than_prior_warning",
    "still_learning_warning",
]

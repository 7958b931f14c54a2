"""An input before and after edits: the answer distribution, the attention and the relevancy, side by side.

The Intervene page's one call (:func:`counterfactual`). Both sides explain the same answer, the unedited input's
best one, so a change of relevancy is a change of the evidence for one answer. Region scores of the edited input
are set beside those of the region they came from (:attr:`analysis.edits.EditedInput.origin`); an added region has
no counterpart, and its differences are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .attention import AttentionMaps, collect_attention
from .edits import Edit, apply_edits
from .forward import answer_logits, run
from .inputs import Example
from .relevancy import gradient_relevancy


@dataclass
class Counterfactual:
    """What the edits changed.

    Attributes:
        edits: the edits, as records (:meth:`Edit.to_dict`).
        answers: indices of the answers compared: the top-k before, then any of the top-k after not among them.
        answer_names: their names (None without an answer table).
        before: (A,) probability of each compared answer before the edits.
        after: (A,) after.
        target: the explained answer (the best one before).
        origin: per region after the edits, its index before (-1 for an added region).
        maps_before: every attention map before.
        maps_after: every attention map after (under the head edits).
        attention_change: (T, R after) head-mean language → vision attention of the last cross layer, after minus
            before (NaN for added regions); empty (T, 0) for a model without cross layers.
        token_relevancy: (2, T) gradient relevancy of the tokens, before and after.
        region_relevancy_before: (R before,) gradient relevancy of the regions.
        region_relevancy_after: (R after,).
        region_relevancy_change: (R after,) after minus the region's own score before (NaN for added regions).
    """

    edits: list[dict]
    answers: list[int]
    answer_names: list[str] | None
    before: np.ndarray
    after: np.ndarray
    target: int
    origin: list[int]
    maps_before: AttentionMaps
    maps_after: AttentionMaps
    attention_change: np.ndarray
    token_relevancy: np.ndarray
    region_relevancy_before: np.ndarray
    region_relevancy_after: np.ndarray
    region_relevancy_change: np.ndarray


def _aligned_change(after: np.ndarray, before: np.ndarray, origin: Sequence[int]) -> np.ndarray:
    """``after`` minus ``before`` at each after-region's origin along the last axis; NaN where origin is -1."""
    index = np.asarray(origin, dtype=np.int64)
    if index.size == 0:
        return after.astype(np.float64)
    change = after - before[..., np.maximum(index, 0)]
    change[..., index < 0] = np.nan
    return change


def _last_cross_l2v(maps: AttentionMaps) -> np.ndarray:
    if maps.num_layers("cross_l2v") == 0:
        return np.zeros((len(maps.tokens), 0))
    return maps.select("cross_l2v", maps.num_layers("cross_l2v") - 1).astype(np.float64)


def counterfactual(
    model: nn.Module,
    example: Example,
    edits: Sequence[Edit],
    k: int = 5,
    answer_names: Sequence[str] | None = None,
) -> Counterfactual:
    """Run ``example`` as it is and after ``edits``; compare answers, attention and gradient relevancy.

    Raises:
        IndexError, ValueError: an edit does not fit the example (the message names the edit).
    """
    edited = apply_edits(example, edits)
    mask = edited.head_mask(model.config, example.input_ids.device)
    with torch.no_grad():
        before = answer_logits(run(model, example))[0].float().softmax(-1)
        after = answer_logits(run(model, edited.example, head_mask=mask))[0].float().softmax(-1)
    top = min(k, before.numel())
    answers = before.topk(top).indices.tolist()
    answers += [i for i in after.topk(top).indices.tolist() if i not in answers]
    target = answers[0]
    maps_before = collect_attention(model, example)
    maps_after = collect_attention(model, edited.example, head_mask=mask)
    relevancy_before = gradient_relevancy(model, example, target)
    relevancy_after = gradient_relevancy(model, edited.example, target, head_mask=mask)
    origin = [-1 if o is None else o for o in edited.origin]
    return Counterfactual(
        edits=[edit.to_dict() for edit in edits],
        answers=answers,
        answer_names=None if answer_names is None else [answer_names[i] for i in answers],
        before=before[answers].cpu().numpy().astype(np.float64),
        after=after[answers].cpu().numpy().astype(np.float64),
        target=target,
        origin=origin,
        maps_before=maps_before,
        maps_after=maps_after,
        attention_change=_aligned_change(_last_cross_l2v(maps_after), _last_cross_l2v(maps_before), origin),
        token_relevancy=np.stack([relevancy_before.tokens, relevancy_after.tokens]).astype(np.float64),
        region_relevancy_before=relevancy_before.regions.astype(np.float64),
        region_relevancy_after=relevancy_after.regions.astype(np.float64),
        region_relevancy_change=_aligned_change(
            relevancy_after.regions.astype(np.float64), relevancy_before.regions.astype(np.float64), origin
        ),
    )


__all__ = ["Counterfactual", "counterfactual"]

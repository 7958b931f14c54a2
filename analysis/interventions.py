"""Interventions: silence heads, edit regions, re-run the predictions; and a gradient head-importance score.

Nothing here changes a model for good. Head masks are forward arguments; pruning zeroes weights inside a context
manager that restores them, so an app can keep one cached model. Region edits return a new :class:`Example`.

Masking a head (``head_mask``) silences one direction of one family; pruning removes the head's weights from its
module. LXMERT's cross-attention module serves both directions, so pruning one of its heads silences that head in
both; :func:`pruned_heads` refuses a request naming only one direction of a shared module, where ``head_mask`` is
the tool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lxmert.config import LxmertConfig
from lxmert.modeling import ATTENTION_FAMILIES
from lxmert.tokenization import LxmertTokenizer

from .attention import cross_attention_modules, encoder_of
from .forward import AnswerScore, answer_logits, run, top_answers
from .inputs import Example
from .masked import MaskedRegionPrediction, MaskedWordPrediction, predict_masked_regions, predict_masked_words
from .relevancy import answer_gradients

Head = tuple[str, int, int]  # (family, layer, head)


def _check_heads(config: LxmertConfig, heads: Iterable[Head]) -> list[Head]:
    layers = config.family_layers
    checked = []
    for family, layer, head in heads:
        if family not in layers:
            raise KeyError(f"unknown attention family {family!r}; choose from {ATTENTION_FAMILIES}")
        if not 0 <= layer < layers[family]:
            raise IndexError(f"{family} has {layers[family]} layers, got layer {layer}")
        if not 0 <= head < config.num_attention_heads:
            raise IndexError(f"the model has {config.num_attention_heads} heads, got head {head}")
        checked.append((family, layer, head))
    return checked


def head_mask(
    config: LxmertConfig, heads: Iterable[Head], device: torch.device | str | None = None
) -> dict[str, Tensor]:
    """A ``head_mask`` for the model (on ``device``): ones everywhere, zeros at the listed (family, layer, head)."""
    mask = {
        family: torch.ones(n, config.num_attention_heads, device=device)
        for family, n in config.family_layers.items()
    }
    for family, layer, head in _check_heads(config, heads):
        mask[family][layer, head] = 0.0
    return mask


def attention_sublayer(model: nn.Module, family: str, layer: int) -> nn.Module:
    """The sub-layer (attention + output projection) computing ``family`` in ``layer``."""
    encoder = encoder_of(model)
    if family == "lang_self":
        return encoder.layer[layer].attention
    if family == "vis_self":
        return encoder.r_layers[layer].attention
    if family in ("cross_l2v", "cross_v2l"):
        return cross_attention_modules(model, layer)[family]
    if family == "x_lang_self":
        return encoder.x_layers[layer].lang_self_att
    if family == "x_vis_self":
        return encoder.x_layers[layer].visn_self_att
    raise KeyError(f"unknown attention family {family!r}; choose from {ATTENTION_FAMILIES}")


@contextmanager
def pruned_heads(model: nn.Module, heads: Iterable[Head]) -> Iterator[nn.Module]:
    """Remove heads from the model for the block: their slice of the output projection is zeroed, then restored.

    A pruned head's context vector no longer reaches the residual stream, which is what a head mask of 0 does;
    its attention probabilities are still computed and returned.

    Raises:
        ValueError: if a shared cross-attention head is named for one direction only.
    """
    config = model.config
    heads = _check_heads(config, heads)
    if config.share_cross_attention:
        cross = {(f, layer, h) for f, layer, h in heads if f in ("cross_l2v", "cross_v2l")}
        for f, layer, h in cross:
            other = "cross_v2l" if f == "cross_l2v" else "cross_l2v"
            if (other, layer, h) not in cross:
                raise ValueError(
                    f"cross-attention is shared: pruning ({f}, {layer}, {h}) would prune ({other}, {layer}, {h}) "
                    "too; name both directions, or use head_mask to silence one"
                )
    d = config.head_dim
    weights = {
        id(w): w for w in (attention_sublayer(model, f, layer).output.dense.weight for f, layer, _ in heads)
    }
    saved = {key: w.detach().clone() for key, w in weights.items()}
    try:
        with torch.no_grad():
            for family, layer, head in heads:
                attention_sublayer(model, family, layer).output.dense.weight[:, head * d : (head + 1) * d] = (
                    0.0
                )
        yield model
    finally:
        with torch.no_grad():
            for key, w in weights.items():
                w.copy_(saved[key])


# ----------------------------------------------------------------------------------------------------------------
# Region edits
# ----------------------------------------------------------------------------------------------------------------


def _normalized(example: Example, box: Sequence[float] | Tensor) -> tuple[Tensor, Tensor]:
    """A pixel box (or a normalised one when the example has no image size) → (pixel box, normalised box)."""
    box = torch.as_tensor(box, dtype=example.boxes.dtype, device=example.boxes.device)
    if box.shape != (4,):
        raise ValueError(f"a box is (x1, y1, x2, y2), got shape {tuple(box.shape)}")
    if not (box[2] >= box[0] and box[3] >= box[1]):
        raise ValueError(f"box {box.tolist()} has x2 < x1 or y2 < y1")
    if example.image_size is None:
        return box, box.clamp(0.0, 1.0)
    height, width = example.image_size
    return box, (box / box.new_tensor([width, height, width, height])).clamp(0.0, 1.0)


def delete_regions(example: Example, regions: Sequence[int]) -> Example:
    """The example without ``regions``; the remaining regions keep their order."""
    drop = set(regions)
    bad = [r for r in drop if not 0 <= r < example.num_regions]
    if bad:
        raise IndexError(f"regions {bad} out of range for {example.num_regions} regions")
    return example.select_regions([r for r in range(example.num_regions) if r not in drop])


def move_region(example: Example, region: int, box: Sequence[float] | Tensor) -> Example:
    """The example with ``region`` redrawn at ``box`` (pixels; normalised if the example has no image size).

    The region keeps its feature: only where the model believes it is changes.
    """
    if not 0 <= region < example.num_regions:
        raise IndexError(f"region {region} out of range for {example.num_regions} regions")
    pixel, normalized = _normalized(example, box)
    boxes, pos = example.boxes.clone(), example.visual_pos.clone()
    boxes[region], pos[region] = pixel, normalized
    return dataclasses.replace(example, boxes=boxes, visual_pos=pos)


def add_region(
    example: Example,
    feature: Tensor,
    box: Sequence[float] | Tensor,
    object_id: int | None = None,
    attr_id: int | None = None,
) -> Example:
    """The example with one more region (last), e.g. a copy of another region's feature at a new place."""
    if feature.shape != (example.visual_feats.shape[1],):
        raise ValueError(f"feature must be ({example.visual_feats.shape[1]},), got {tuple(feature.shape)}")
    pixel, normalized = _normalized(example, box)

    def extend(values: Tensor | None, value: int | None, name: str) -> Tensor | None:
        if values is None:
            return None
        if value is None:
            raise ValueError(f"the example has {name}; give the new region's {name[:-1]} too")
        return torch.cat([values, values.new_tensor([value])])

    if example.region_labels:
        raise ValueError("the example carries probing labels; a new region would have none")
    return dataclasses.replace(
        example,
        visual_feats=torch.cat([example.visual_feats, feature[None].to(example.visual_feats)]),
        visual_pos=torch.cat([example.visual_pos, normalized[None]]),
        boxes=torch.cat([example.boxes, pixel[None]]),
        object_ids=extend(example.object_ids, object_id, "object_ids"),
        attr_ids=extend(example.attr_ids, attr_id, "attr_ids"),
    )


def swap_features(example: Example, a: int, b: int) -> Example:
    """The example with the features of regions ``a`` and ``b`` exchanged and their boxes in place.

    Detector labels follow the features, since they describe what the feature encodes.
    """
    for r in (a, b):
        if not 0 <= r < example.num_regions:
            raise IndexError(f"region {r} out of range for {example.num_regions} regions")
    order = list(range(example.num_regions))
    order[a], order[b] = b, a
    swapped = example.select_regions(order)
    return dataclasses.replace(swapped, visual_pos=example.visual_pos, boxes=example.boxes)


# ----------------------------------------------------------------------------------------------------------------
# Re-running predictions
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class InterventionResult:
    """What the model predicts for an (edited) example under a head mask."""

    answers: list[AnswerScore]
    masked_words: list[MaskedWordPrediction]
    masked_regions: list[MaskedRegionPrediction]


def rerun(
    model: nn.Module,
    example: Example,
    tokenizer: LxmertTokenizer | None = None,
    head_mask: dict[str, Tensor] | None = None,
    word_positions: Sequence[int] = (),
    regions: Sequence[int] = (),
    top_k: int = 5,
    answer_names: Sequence[str] | None = None,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
) -> InterventionResult:
    """Answers, masked-word and masked-object predictions of ``example`` under ``head_mask``.

    Head masks reach the masked predictions too: they run through the same model call. Masked predictions need a
    pre-training model; with ``word_positions`` and ``regions`` empty none are made.
    """
    with torch.no_grad():
        logits = answer_logits(run(model, example, head_mask=head_mask))[0]
    words, objects = [], []
    if word_positions:
        if tokenizer is None:
            raise ValueError("masked-word predictions need the tokenizer")
        words = predict_masked_words(model, example, word_positions, tokenizer, top_k, head_mask=head_mask)
    if regions:
        objects = predict_masked_regions(
            model,
            example,
            regions,
            top_k,
            object_names=object_names,
            attr_names=attr_names,
            head_mask=head_mask,
        )
    return InterventionResult(top_answers(logits, top_k, answer_names), words, objects)


def head_importance(
    model: nn.Module, examples: Example | Sequence[Example], targets: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Gradient head importance (Michel, Levy & Neubig, 2019): |∂ answer logit / ∂ head mask| at mask = 1.

    Each head's mask multiplies its output, so the derivative is the first-order change of the answer's logit when
    the head is removed. Averaged over ``examples``; ``targets`` default to each example's top answer.

    Returns:
        family → (L, H) importance.
    """
    examples = [examples] if isinstance(examples, Example) else list(examples)
    if targets is not None and len(targets) != len(examples):
        raise ValueError(f"{len(targets)} targets for {len(examples)} examples")
    config = model.config
    total = {f: np.zeros((n, config.num_attention_heads)) for f, n in config.family_layers.items()}
    for k, example in enumerate(examples):
        device = example.input_ids.device
        mask = {f: m.requires_grad_(True) for f, m in head_mask(config, (), device).items()}
        target = None if targets is None else targets[k]
        for family, grad in answer_gradients(model, example, target, head_mask=mask).head_gradients.items():
            total[family] += grad.abs().double().numpy()
    return {family: value / len(examples) for family, value in total.items()}


__all__ = [
    "Head",
    "InterventionResult",
    "add_region",
    "attention_sublayer",
    "delete_regions",
    "head_importance",
    "head_mask",
    "move_region",
    "pruned_heads",
    "rerun",
    "swap_features",
]

"""Masked-word and masked-object predictions of the pre-training heads, and a cross-modal ablation gauge.

Masking follows pre-training: a word becomes [MASK]; a region's feature becomes zeros with its box kept (the
authors' object mask, ``random_feat`` in ``lxmert_pretrain.py``). Ablating a modality for the cross-modal gauge
(after Frank, Bugliarello & Elliott, EMNLP 2021) uses the same masks — every non-special token [MASK]ed, or the
ablated regions' features zeroed — so the model sees inputs of the kind it was trained on. Which ablation value that
paper used for regions was not checked here; ``ablation="drop"`` deletes the regions instead.

Transformers' LXMERT computes the object head only inside its loss; here every head's output is read directly from
the forward pass (``obj_logits``, ``attr_logits``, ``feat_prediction``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lxmert.tokenization import LxmertTokenizer

from .forward import run
from .inputs import Example

VISION_CONDITIONS = ("image", "aligned_removed", "no_vision")
TEXT_CONDITIONS = ("text", "no_text")
ABLATIONS = ("mask", "drop")


@dataclass
class Candidate:
    """One entry of a top-k list."""

    index: int
    name: str | None
    probability: float


@dataclass
class MaskedWordPrediction:
    """Top-k fillers of one masked position.

    Attributes:
        position: the token position that was masked.
        original: the token that was there.
        fillers: the k most probable tokens, best first.
        original_probability: the probability the model gives the original token.
    """

    position: int
    original: str
    fillers: list[Candidate]
    original_probability: float


@dataclass
class MaskedRegionPrediction:
    """Predictions for one masked region.

    Attributes:
        region: the region index.
        objects: top-k object labels, best first.
        attributes: top-k attribute labels, best first.
        nearest_regions: (region index, L2 distance) of the example's regions whose original features lie closest
            to the regressed feature, nearest first.
        original_object: the detector's label of the region, if known.
    """

    region: int
    objects: list[Candidate]
    attributes: list[Candidate]
    nearest_regions: list[tuple[int, float]]
    original_object: int | None


def _require_heads(output, *names: str) -> None:
    missing = [name for name in names if getattr(output, name, None) is None]
    if missing:
        raise ValueError(
            f"the model returns no {missing}: masked predictions need LxmertForPreTraining with those heads"
        )


def _top_k(probs: Tensor, k: int, names: Sequence[str] | None) -> list[Candidate]:
    best = probs.topk(min(k, probs.numel()))
    return [
        Candidate(i, None if names is None else names[i], float(p))
        for p, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


def _check_positions(example: Example, positions: Sequence[int]) -> list[int]:
    positions = list(positions)
    bad = [p for p in positions if not 0 <= p < example.num_tokens]
    if bad:
        raise IndexError(f"token positions {bad} out of range for {example.num_tokens} tokens")
    return positions


def _check_regions(example: Example, regions: Sequence[int]) -> list[int]:
    regions = list(regions)
    bad = [r for r in regions if not 0 <= r < example.num_regions]
    if bad:
        raise IndexError(f"regions {bad} out of range for {example.num_regions} regions")
    return regions


def mask_words(example: Example, positions: Sequence[int], mask_token_id: int) -> Example:
    """The example with the tokens at ``positions`` replaced by [MASK]."""
    positions = _check_positions(example, positions)
    input_ids = example.input_ids.clone()
    input_ids[positions] = mask_token_id
    tokens = ["[MASK]" if i in positions else t for i, t in enumerate(example.tokens)]
    return dataclasses.replace(example, tokens=tokens, input_ids=input_ids)


def mask_text(example: Example, mask_token_id: int) -> Example:
    """Every token but [CLS] and [SEP] replaced by [MASK]: the text ablated."""
    return mask_words(example, (~example.special_mask).nonzero().flatten().tolist(), mask_token_id)


def ablate_regions(example: Example, regions: Sequence[int], ablation: str = "mask") -> Example:
    """The example with ``regions`` masked (features zeroed, boxes kept) or dropped."""
    regions = _check_regions(example, regions)
    if ablation == "drop":
        keep = [r for r in range(example.num_regions) if r not in set(regions)]
        return example.select_regions(keep)
    if ablation != "mask":
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    feats = example.visual_feats.clone()
    feats[regions] = 0.0
    return dataclasses.replace(example, visual_feats=feats)


def aligned_regions(
    example: Example, word: str, object_names: Sequence[str], attr_names: Sequence[str] | None = None
) -> list[int]:
    """Regions whose detected object (or attribute) name is ``word``: the phrase-aligned regions of a word.

    WordPiece continuation marks (``##``) and case are ignored.
    """
    if example.object_ids is None:
        raise ValueError("the example carries no detector labels (object_ids) to align words with")
    word = word.removeprefix("##").lower()
    hits = [r for r, i in enumerate(example.object_ids.tolist()) if object_names[i].lower() == word]
    if attr_names is not None and example.attr_ids is not None:
        hits += [r for r, i in enumerate(example.attr_ids.tolist()) if attr_names[i].lower() == word]
    return sorted(set(hits))


def vision_condition(
    example: Example, condition: str, aligned: Sequence[int] = (), ablation: str = "mask"
) -> Example:
    """The example's vision for a masked-word condition: ``image``, ``aligned_removed`` or ``no_vision``."""
    if condition == "image":
        return example
    if condition == "aligned_removed":
        return ablate_regions(example, aligned, ablation)
    if condition == "no_vision":
        return ablate_regions(example, range(example.num_regions), ablation)
    raise ValueError(f"vision condition must be one of {VISION_CONDITIONS}, got {condition!r}")


def _word_predictions(
    probs: Tensor, example: Example, positions: Sequence[int], tokenizer: LxmertTokenizer, top_k: int
) -> list[MaskedWordPrediction]:
    """Top-k fillers from (W, V) probabilities, row w for ``positions[w]``."""
    predictions = []
    for row, p in zip(probs, positions, strict=True):
        fillers = _top_k(row, top_k, None)
        names = tokenizer.convert_ids_to_tokens([c.index for c in fillers])
        for candidate, name in zip(fillers, names, strict=True):
            candidate.name = name
        original = float(row[int(example.input_ids[p])])
        predictions.append(MaskedWordPrediction(p, example.tokens[p], fillers, original))
    return predictions


def predict_masked_words(
    model: nn.Module,
    example: Example,
    positions: Sequence[int],
    tokenizer: LxmertTokenizer,
    top_k: int = 5,
    vision: str = "image",
    aligned: Sequence[int] = (),
    ablation: str = "mask",
    head_mask: dict[str, Tensor] | None = None,
) -> list[MaskedWordPrediction]:
    """Mask the words at ``positions`` (all at once) and read the masked-LM head's top-k fillers.

    Args:
        model: an ``LxmertForPreTraining`` with its masked-LM head.
        example: the input.
        positions: token positions to mask.
        tokenizer: the checkpoint's tokenizer (mask id and id → token).
        top_k: fillers per position.
        vision: ``image`` (all regions), ``aligned_removed`` (the ``aligned`` regions ablated) or ``no_vision``.
        aligned: the regions aligned with the masked words (see :func:`aligned_regions`).
        ablation: ``mask`` (zero features) or ``drop`` (delete regions).
        head_mask: heads to silence, family → (layers, H).
    """
    positions = _check_positions(example, positions)
    masked = vision_condition(
        mask_words(example, positions, tokenizer.mask_token_id), vision, aligned, ablation
    )
    with torch.no_grad():
        output = run(model, masked, head_mask=head_mask)
    _require_heads(output, "prediction_logits")
    probs = output.prediction_logits[0, positions].float().softmax(-1)  # (W, V)
    return _word_predictions(probs, example, positions, tokenizer, top_k)


def _each_word_probs(
    model: nn.Module,
    example: Example,
    mask_token_id: int,
    vision: str = "image",
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    ablation: str = "mask",
    head_mask: dict[str, Tensor] | None = None,
) -> tuple[list[int], Tensor]:
    """Every non-special word masked on its own, in one batch: (positions, (W, V) probabilities).

    Under ``aligned_removed`` each word's own aligned regions (by ``object_names``/``attr_names``) are ablated.
    """
    positions = (~example.special_mask).nonzero().flatten().tolist()
    if not positions:
        raise ValueError("the example has no words to mask")
    if vision == "aligned_removed" and object_names is None:
        raise ValueError("the aligned_removed condition needs object_names to align words with regions")
    rows = []
    for p in positions:
        aligned = (
            aligned_regions(example, example.tokens[p], object_names, attr_names) if object_names else []
        )
        rows.append(vision_condition(mask_words(example, [p], mask_token_id), vision, aligned, ablation))
    with torch.no_grad():
        # Dropped regions change the region count per row, so such rows run one at a time.
        if len({row.num_regions for row in rows}) == 1:
            outputs = [run(model, rows, head_mask=head_mask)]
        else:
            outputs = [run(model, row, head_mask=head_mask) for row in rows]
    _require_heads(outputs[0], "prediction_logits")
    logits = torch.cat([o.prediction_logits for o in outputs])  # (W, T, V)
    return positions, logits[torch.arange(len(positions), device=logits.device), positions].float().softmax(
        -1
    )


def predict_each_word(
    model: nn.Module,
    example: Example,
    tokenizer: LxmertTokenizer,
    top_k: int = 5,
    vision: str = "image",
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    ablation: str = "mask",
    head_mask: dict[str, Tensor] | None = None,
) -> list[MaskedWordPrediction]:
    """Top-k fillers of every word when it alone is masked (one batched pass), under a vision condition."""
    positions, probs = _each_word_probs(
        model, example, tokenizer.mask_token_id, vision, object_names, attr_names, ablation, head_mask
    )
    return _word_predictions(probs, example, positions, tokenizer, top_k)


def _masked_region_outputs(
    model: nn.Module,
    rows: Sequence[Example],
    head_mask: dict[str, Tensor] | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Object, attribute probabilities and regressed features, (B, R, ·), of a batch of masked examples."""
    with torch.no_grad():
        output = run(model, rows, head_mask=head_mask)
    _require_heads(output, "obj_logits", "attr_logits", "feat_prediction")
    return (
        output.obj_logits.float().softmax(-1),
        output.attr_logits.float().softmax(-1),
        output.feat_prediction,
    )


def _region_prediction(
    example: Example,
    region: int,
    obj_probs: Tensor,
    attr_probs: Tensor,
    feature: Tensor,
    top_k: int,
    object_names: Sequence[str] | None,
    attr_names: Sequence[str] | None,
) -> MaskedRegionPrediction:
    distances = torch.cdist(feature[None].float(), example.visual_feats.float())[0]  # (R,)
    order = distances.argsort()[:top_k].tolist()
    return MaskedRegionPrediction(
        region=region,
        objects=_top_k(obj_probs, top_k, object_names),
        attributes=_top_k(attr_probs, top_k, attr_names),
        nearest_regions=[(i, float(distances[i])) for i in order],
        original_object=None if example.object_ids is None else int(example.object_ids[region]),
    )


def _text_condition(example: Example, text: str, mask_token_id: int | None) -> Example:
    if text == "text":
        return example
    if text != "no_text":
        raise ValueError(f"text condition must be one of {TEXT_CONDITIONS}, got {text!r}")
    if mask_token_id is None:
        raise ValueError("text='no_text' needs mask_token_id")
    return mask_text(example, mask_token_id)


def predict_masked_regions(
    model: nn.Module,
    example: Example,
    regions: Sequence[int],
    top_k: int = 5,
    text: str = "text",
    mask_token_id: int | None = None,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    head_mask: dict[str, Tensor] | None = None,
) -> list[MaskedRegionPrediction]:
    """Mask ``regions`` (all at once, features zeroed) and read the object, attribute and feature heads.

    Args:
        model: an ``LxmertForPreTraining`` with its masked-object heads.
        example: the input.
        regions: region indices to mask.
        top_k: labels per head, and nearest regions to the regressed feature.
        text: ``text`` (the question as is) or ``no_text`` (every word [MASK]ed; needs ``mask_token_id``).
        mask_token_id: the [MASK] id, for ``no_text``.
        object_names: the object vocabulary, to name labels.
        attr_names: the attribute vocabulary.
        head_mask: heads to silence, family → (layers, H).
    """
    regions = _check_regions(example, regions)
    masked = _text_condition(ablate_regions(example, regions, "mask"), text, mask_token_id)
    obj, attr, feat = _masked_region_outputs(model, [masked], head_mask)
    return [
        _region_prediction(example, r, obj[0, r], attr[0, r], feat[0, r], top_k, object_names, attr_names)
        for r in regions
    ]


def predict_each_region(
    model: nn.Module,
    example: Example,
    top_k: int = 5,
    text: str = "text",
    mask_token_id: int | None = None,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    head_mask: dict[str, Tensor] | None = None,
) -> list[MaskedRegionPrediction]:
    """Predictions for every region when it alone is masked (one batched pass), with or without the text."""
    base = _text_condition(example, text, mask_token_id)
    rows = [ablate_regions(base, [r], "mask") for r in range(example.num_regions)]
    obj, attr, feat = _masked_region_outputs(model, rows, head_mask)
    return [
        _region_prediction(example, r, obj[r, r], attr[r, r], feat[r, r], top_k, object_names, attr_names)
        for r in range(example.num_regions)
    ]


@dataclass
class AblationGauge:
    """How much one example's masked predictions lean on the other modality.

    Every non-special word is masked on its own and predicted under each vision condition; every region is
    masked on its own and its object predicted with and without the text. Accuracy is top-1 agreement with the
    original token / the detector's label; ``*_probability`` is the mean probability given to it.

    Attributes:
        word_accuracy: vision condition → accuracy (``aligned_removed`` only with object names).
        word_probability: vision condition → mean probability of the original word.
        object_accuracy: text condition → accuracy.
        object_probability: text condition → mean probability of the detector's label.
        num_words: masked words per condition.
        num_regions: masked regions per condition.
    """

    word_accuracy: dict[str, float]
    word_probability: dict[str, float]
    object_accuracy: dict[str, float]
    object_probability: dict[str, float]
    num_words: int
    num_regions: int

    @property
    def word_drop_without_vision(self) -> float:
        return self.word_accuracy["image"] - self.word_accuracy["no_vision"]

    @property
    def word_drop_without_aligned(self) -> float | None:
        if "aligned_removed" not in self.word_accuracy:
            return None
        return self.word_accuracy["image"] - self.word_accuracy["aligned_removed"]

    @property
    def object_drop_without_text(self) -> float:
        return self.object_accuracy["text"] - self.object_accuracy["no_text"]


def _each_region_outputs(
    model: nn.Module, example: Example, text: str, mask_token_id: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Every region masked on its own, in one batch: (R, ·) object and attribute probabilities and features of
    the masked region of each row."""
    base = _text_condition(example, text, mask_token_id)
    R = example.num_regions
    obj, attr, feat = _masked_region_outputs(
        model, [ablate_regions(base, [r], "mask") for r in range(R)], None
    )
    diagonal = torch.arange(R, device=obj.device)  # row r's prediction for region r
    return obj[diagonal, diagonal], attr[diagonal, diagonal], feat[diagonal, diagonal]


def _gauge(
    example: Example, word_probs: dict[str, tuple[list[int], Tensor]], object_probs: dict[str, Tensor]
) -> AblationGauge:
    """The gauge from each condition's (positions, (W, V)) word and (R, objects) object probabilities."""
    word_accuracy, word_probability = {}, {}
    for condition, (positions, probs) in word_probs.items():
        targets = example.input_ids[positions]
        word_accuracy[condition] = float((probs.argmax(-1) == targets).float().mean())
        word_probability[condition] = float(
            probs[torch.arange(len(positions), device=probs.device), targets].mean()
        )
    object_accuracy, object_probability = {}, {}
    for condition, probs in object_probs.items():
        object_accuracy[condition] = float((probs.argmax(-1) == example.object_ids).float().mean())
        object_probability[condition] = float(
            probs[torch.arange(len(probs), device=probs.device), example.object_ids].mean()
        )
    num_words = len(next(iter(word_probs.values()))[0])
    return AblationGauge(
        word_accuracy, word_probability, object_accuracy, object_probability, num_words, example.num_regions
    )


def _gauge_conditions(object_names: Sequence[str] | None) -> list[str]:
    return ["image", "no_vision"] + (["aligned_removed"] if object_names is not None else [])


def ablation_gauge(
    model: nn.Module,
    example: Example,
    tokenizer: LxmertTokenizer,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    ablation: str = "mask",
) -> AblationGauge:
    """The cross-modal ablation gauge of one example (Frank et al., EMNLP 2021, per example).

    Args:
        model: an ``LxmertForPreTraining`` with masked-LM and object heads.
        example: the input; it needs detector labels (``object_ids``) for the object half.
        tokenizer: the checkpoint's tokenizer.
        object_names: the object vocabulary; with it, words are aligned to regions of the same name and the
            ``aligned_removed`` condition is measured.
        attr_names: the attribute vocabulary, for aligning attribute words too.
        ablation: how vision is removed: ``mask`` (features zeroed) or ``drop``.
    """
    if example.object_ids is None:
        raise ValueError("the ablation gauge needs the detector's object labels (example.object_ids)")
    mask_id = tokenizer.mask_token_id
    word_probs = {
        condition: _each_word_probs(model, example, mask_id, condition, object_names, attr_names, ablation)
        for condition in _gauge_conditions(object_names)
    }
    object_probs = {c: _each_region_outputs(model, example, c, mask_id)[0] for c in TEXT_CONDITIONS}
    return _gauge(example, word_probs, object_probs)


@dataclass
class MaskedOverview:
    """Every word and every region masked alone, and the gauge, sharing the passes they have in common."""

    words: list[MaskedWordPrediction]
    regions: list[MaskedRegionPrediction]
    gauge: AblationGauge | None  # None when the example has no detector labels


def masked_overview(
    model: nn.Module,
    example: Example,
    tokenizer: LxmertTokenizer,
    top_k: int = 5,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    ablation: str = "mask",
) -> MaskedOverview:
    """:func:`predict_each_word`, :func:`predict_each_region` and :func:`ablation_gauge` in one go.

    The words masked with the image and the regions masked with the text are one pass each, shared by the
    predictions and the gauge.
    """
    mask_id = tokenizer.mask_token_id
    positions, probs = _each_word_probs(model, example, mask_id, "image", object_names, attr_names, ablation)
    words = _word_predictions(probs, example, positions, tokenizer, top_k)
    obj, attr, feat = _each_region_outputs(model, example, "text", mask_id)
    regions = [
        _region_prediction(example, r, obj[r], attr[r], feat[r], top_k, object_names, attr_names)
        for r in range(example.num_regions)
    ]
    if example.object_ids is None:
        return MaskedOverview(words, regions, None)
    word_probs = {"image": (positions, probs)}
    for condition in _gauge_conditions(object_names)[1:]:
        word_probs[condition] = _each_word_probs(
            model, example, mask_id, condition, object_names, attr_names, ablation
        )
    object_probs = {"text": obj, "no_text": _each_region_outputs(model, example, "no_text", mask_id)[0]}
    return MaskedOverview(words, regions, _gauge(example, word_probs, object_probs))


__all__ = [
    "ABLATIONS",
    "AblationGauge",
    "Candidate",
    "MaskedOverview",
    "MaskedRegionPrediction",
    "MaskedWordPrediction",
    "TEXT_CONDITIONS",
    "VISION_CONDITIONS",
    "ablate_regions",
    "ablation_gauge",
    "aligned_regions",
    "mask_text",
    "mask_words",
    "masked_overview",
    "predict_each_region",
    "predict_each_word",
    "predict_masked_regions",
    "predict_masked_words",
    "vision_condition",
]

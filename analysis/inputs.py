"""One example as the analysis tools see it: a question's tokens and an image's regions, unbatched and unpadded.

Every tool in ``analysis`` takes an :class:`Example`. Padding is stripped when one is built, so every token and every
region it holds is real; the attention maps, relevancy scores and attributions computed from it then need no masks.
Edits (dropping tokens, deleting or moving regions) return a new ``Example`` and never touch the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lxmert.detection.regions import Regions
from lxmert.tokenization import LxmertTokenizer

SPECIAL_TOKENS = ("[CLS]", "[SEP]")


@dataclass
class Example:
    """A tokenised question and the regions of one image, for a batch of one.

    Attributes:
        tokens: the T WordPieces, [CLS] first and [SEP] last.
        input_ids: (T,) long token ids.
        token_type_ids: (T,) long segment ids (all 0 for LXMERT).
        visual_feats: (R, F) float RoI features.
        visual_pos: (R, 4) float boxes normalised to [0, 1] (x1, y1, x2, y2): the model's ``visual_pos``.
        boxes: (R, 4) float boxes in image pixels, for drawing; equal to ``visual_pos`` when no image size is known.
        image_size: (height, width) in pixels, or None.
        object_ids: (R,) long detector object label per region, or None.
        attr_ids: (R,) long detector attribute label per region, or None.
        region_labels: further per-region integer labels by name (e.g. ``shape``, ``colour``, ``size`` of a
            synthetic scene), for probing.
    """

    tokens: list[str]
    input_ids: Tensor
    token_type_ids: Tensor
    visual_feats: Tensor
    visual_pos: Tensor
    boxes: Tensor
    image_size: tuple[int, int] | None = None
    object_ids: Tensor | None = None
    attr_ids: Tensor | None = None
    region_labels: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        T, R = len(self.tokens), self.visual_feats.shape[0]
        if self.input_ids.shape != (T,) or self.token_type_ids.shape != (T,):
            raise ValueError(
                f"input_ids {tuple(self.input_ids.shape)} and token_type_ids {tuple(self.token_type_ids.shape)} "
                f"must both be ({T},), one entry per token"
            )
        if self.visual_feats.dim() != 2:
            raise ValueError(f"visual_feats must be (R, F), got {tuple(self.visual_feats.shape)}")
        for name in ("visual_pos", "boxes"):
            if getattr(self, name).shape != (R, 4):
                raise ValueError(f"{name} must be ({R}, 4), got {tuple(getattr(self, name).shape)}")
        per_region = {"object_ids": self.object_ids, "attr_ids": self.attr_ids, **self.region_labels}
        for name, value in per_region.items():
            if value is not None and value.shape != (R,):
                raise ValueError(f"{name} must be ({R},), got {tuple(value.shape)}")

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def num_regions(self) -> int:
        return self.visual_feats.shape[0]

    @property
    def special_mask(self) -> Tensor:
        """(T,) bool: True at [CLS] and [SEP], the tokens every perturbation keeps and every display may hide."""
        return torch.tensor(
            [token in SPECIAL_TOKENS for token in self.tokens], dtype=torch.bool, device=self.input_ids.device
        )

    def to(self, device: str | torch.device) -> Example:
        """The example with every tensor on ``device`` (itself when they are all there already)."""
        tensors = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        labels = {name: value.to(device) for name, value in self.region_labels.items()}
        return dataclasses.replace(self, **tensors, region_labels=labels)

    def feature_hash(self) -> str:
        """SHA-256 of the region features and normalised boxes, to tell exported analyses of images apart."""
        digest = hashlib.sha256()
        for tensor in (self.visual_feats, self.visual_pos):
            digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
        return digest.hexdigest()

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments of an LXMERT forward pass for this example as a batch of one."""
        return batch_inputs([self])

    def select_tokens(self, indices: Sequence[int] | Tensor) -> Example:
        """The example with only the given tokens, in the given order (positions are renumbered)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return dataclasses.replace(
            self,
            tokens=[self.tokens[i] for i in index.tolist()],
            input_ids=self.input_ids[index],
            token_type_ids=self.token_type_ids[index],
        )

    def select_regions(self, indices: Sequence[int] | Tensor) -> Example:
        """The example with only the given regions, in the given order; every per-region field follows."""
        index = torch.as_tensor(indices, dtype=torch.long)

        def pick(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[index]

        return dataclasses.replace(
            self,
            visual_feats=self.visual_feats[index],
            visual_pos=self.visual_pos[index],
            boxes=self.boxes[index],
            object_ids=pick(self.object_ids),
            attr_ids=pick(self.attr_ids),
            region_labels={name: value[index] for name, value in self.region_labels.items()},
        )


def batch_inputs(examples: Sequence[Example]) -> dict[str, Tensor]:
    """Stack examples of equal token and region counts into the keyword arguments of a forward pass.

    Raises:
        ValueError: if the examples differ in token or region count (nothing is padded here).
    """
    if not examples:
        raise ValueError("batch_inputs needs at least one example")
    shapes = {(e.num_tokens, e.num_regions) for e in examples}
    if len(shapes) > 1:
        raise ValueError(f"examples differ in (tokens, regions): {sorted(shapes)}; batch equal sizes only")
    T, R = shapes.pop()
    B, device = len(examples), examples[0].input_ids.device
    return {
        "input_ids": torch.stack([e.input_ids for e in examples]),  # (B, T)
        "visual_feats": torch.stack([e.visual_feats for e in examples]),  # (B, R, F)
        "visual_pos": torch.stack([e.visual_pos for e in examples]),  # (B, R, 4)
        "attention_mask": torch.ones(B, T, dtype=torch.long, device=device),
        "visual_attention_mask": torch.ones(B, R, dtype=torch.long, device=device),
        "token_type_ids": torch.stack([e.token_type_ids for e in examples]),
    }


def example_from_tensors(
    input_ids: Tensor,
    visual_feats: Tensor,
    visual_pos: Tensor,
    tokens: Sequence[str],
    attention_mask: Tensor | None = None,
    visual_attention_mask: Tensor | None = None,
    token_type_ids: Tensor | None = None,
    boxes: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    object_ids: Tensor | None = None,
    attr_ids: Tensor | None = None,
    region_labels: dict[str, Tensor] | None = None,
) -> Example:
    """An example from model-input tensors of one item (a leading batch axis of 1 is accepted), padding stripped.

    Args:
        input_ids: (T,) or (1, T) token ids.
        visual_feats: (R, F) or (1, R, F) region features.
        visual_pos: (R, 4) or (1, R, 4) normalised boxes.
        tokens: the T token strings (``tokenizer.convert_ids_to_tokens(input_ids)``).
        attention_mask: 1 = token, 0 = padding; padded positions are dropped.
        visual_attention_mask: 1 = region, 0 = padding; padded regions are dropped.
        token_type_ids: segment ids; zeros when None.
        boxes: pixel boxes for drawing; ``visual_pos`` when None.
        image_size: (height, width) of the image.
        object_ids: detector object label per region.
        attr_ids: detector attribute label per region.
        region_labels: further per-region labels by name.
    """

    def unbatch(x: Tensor | None, dims: int) -> Tensor | None:
        if x is None or x.dim() == dims:
            return x
        if x.dim() == dims + 1 and x.shape[0] == 1:
            return x[0]
        raise ValueError(f"expected a {dims}-d tensor or a batch of one, got shape {tuple(x.shape)}")

    input_ids = unbatch(input_ids, 1)
    if len(tokens) != input_ids.shape[0]:
        raise ValueError(f"{len(tokens)} tokens given for {input_ids.shape[0]} ids")
    example = Example(
        tokens=list(tokens),
        input_ids=input_ids.long(),
        token_type_ids=torch.zeros_like(input_ids) if token_type_ids is None else unbatch(token_type_ids, 1),
        visual_feats=unbatch(visual_feats, 2).float(),
        visual_pos=unbatch(visual_pos, 2).float(),
        boxes=(unbatch(visual_pos, 2) if boxes is None else unbatch(boxes, 2)).float(),
        image_size=image_size,
        object_ids=unbatch(object_ids, 1),
        attr_ids=unbatch(attr_ids, 1),
        region_labels={name: unbatch(value, 1) for name, value in (region_labels or {}).items()},
    )
    if attention_mask is not None:
        example = example.select_tokens(unbatch(attention_mask, 1).nonzero().flatten())
    if visual_attention_mask is not None:
        example = example.select_regions(unbatch(visual_attention_mask, 1).nonzero().flatten())
    return example


def example_from_regions(
    tokenizer: LxmertTokenizer,
    question: str,
    regions: Regions,
    max_length: int | None = None,
    region_labels: dict[str, Tensor] | None = None,
) -> Example:
    """An example from a question and the detector's regions of one image.

    Args:
        tokenizer: the checkpoint's tokenizer.
        question: the question or sentence.
        regions: the detector's output for the image (all its rows are used, fill rows included, as the
            model saw them in training).
        max_length: token cap, [CLS] and [SEP] included; the tokenizer's default (20) when None.
        region_labels: further per-region labels by name.
    """
    ids = torch.tensor(tokenizer.encode(question, max_length), dtype=torch.long)
    return Example(
        tokens=tokenizer.convert_ids_to_tokens(ids),
        input_ids=ids,
        token_type_ids=torch.zeros_like(ids),
        visual_feats=regions.features.float(),
        visual_pos=regions.normalized_boxes.float(),
        boxes=regions.boxes.float(),
        image_size=(regions.image_height, regions.image_width),
        object_ids=regions.object_ids.long(),
        attr_ids=regions.attr_ids.long(),
        region_labels=dict(region_labels or {}),
    )


__all__ = ["Example", "SPECIAL_TOKENS", "batch_inputs", "example_from_regions", "example_from_tensors"]

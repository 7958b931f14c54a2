"""Fine-tuning data: task JSON items joined with their image features, and batching with padded regions.

The authors' ``*_data.py`` load a whole TSV per split and assert 36 boxes an image; here features come from one or
more memory-mapped :class:`~lxmert.data.store.FeatureStore` directories (real VQA images sit in a train2014 and a
val2014 store) and an image may have fewer regions: a batch pads them and passes ``visual_attention_mask``.

Ablations for the paper's single-modality baselines (Table 2, "Language only") are applied here, per item:

- ``vision`` (question only): every image becomes one all-zero region with an all-zero box. Every datum then gets
  the same visual input, so no image information — not even the number of regions — reaches the model.
- ``language`` (image only): every sentence becomes empty, so the model reads ``[CLS] [SEP]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lxmert.answers import AnswerTable
from lxmert.data.store import FeatureStores

ABLATIONS = ("none", "vision", "language")


def split_names(splits: str) -> list[str]:
    """``"train,nominival"`` → ``["train", "nominival"]`` (the authors' ``--train`` syntax)."""
    names = [s.strip() for s in splits.split(",") if s.strip()]
    if not names:
        raise ValueError(f"no split named in {splits!r}")
    return names


def load_splits(
    directory: str | os.PathLike, splits: str, loader: Callable[[Path], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The items of ``directory/<split>.json`` for every split in ``splits``, concatenated in order."""
    items: list[dict[str, Any]] = []
    for name in split_names(splits):
        path = Path(directory) / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no split file {path}")
        items.extend(loader(path))
    return items


def _ablated_visuals(image: dict[str, Any], ablate: str) -> tuple[np.ndarray, np.ndarray]:
    """``features`` (R, D) float32 and ``boxes`` (R, 4) in [0, 1] of a feature-store row, blanked for ``vision``."""
    features = image["features"]
    if ablate == "vision":
        return np.zeros((1, features.shape[1]), np.float32), np.zeros((1, 4), np.float32)
    return features, image["normalized_boxes"]


def _check_ablation(ablate: str) -> None:
    if ablate not in ABLATIONS:
        raise ValueError(f"ablate must be one of {ABLATIONS}, got {ablate!r}")


class QADataset(Dataset):
    """VQA / GQA / own image QA: one item per question.

    Args:
        data: task items with ``img_id``, ``sent`` and (except on test splits) ``label`` {answer: score}.
        features: where the images' features are.
        answers: the answer table; a label's answers outside it get no target (as the authors do).
        breakdowns: datum → names of the metric breakdowns it counts in (e.g. ``["yes/no"]``).
        ablate: ``none``, ``vision`` or ``language`` (see the module docstring).
    """

    def __init__(
        self,
        data: list[dict[str, Any]],
        features: FeatureStores,
        answers: AnswerTable,
        breakdowns: Callable[[dict[str, Any]], list[str]],
        ablate: str = "none",
    ):
        _check_ablation(ablate)
        features.check([d["img_id"] for d in data], "QA data")
        self.data, self.features, self.answers = data, features, answers
        self.breakdowns, self.ablate = breakdowns, ablate

    def __len__(self) -> int:
        return len(self.data)

    def target(self, datum: dict[str, Any]) -> Tensor:
        """The soft-score vector ``(N,)`` of a datum: ``label[answer]`` at each answer's index."""
        target = torch.zeros(len(self.answers))
        for answer, score in (datum.get("label") or {}).items():
            label = self.answers.ans2label.get(answer)
            if label is not None:
                target[label] = score
        return target

    def __getitem__(self, index: int) -> dict[str, Any]:
        datum = self.data[index]
        features, boxes = _ablated_visuals(self.features.get(datum["img_id"]), self.ablate)
        return {
            "index": index,
            "sent": "" if self.ablate == "language" else datum["sent"],
            "features": torch.from_numpy(features),  # (R, D)
            "boxes": torch.from_numpy(boxes),  # (R, 4)
            "target": self.target(datum),  # (N,)
            "breakdowns": self.breakdowns(datum),
        }


class NLVR2Dataset(Dataset):
    """NLVR2: one item per (statement, image pair).

    Args:
        data: items with ``identifier``, ``img0``, ``img1``, ``sent`` and ``label`` (0/1; absent on a hidden test).
        features: where the images' features are.
        ablate: ``none``, ``vision`` or ``language``.
    """

    def __init__(self, data: list[dict[str, Any]], features: FeatureStores, ablate: str = "none"):
        _check_ablation(ablate)
        features.check([d[key] for d in data for key in ("img0", "img1")], "NLVR2 data")
        self.data, self.features, self.ablate = data, features, ablate

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        datum = self.data[index]
        pair = [_ablated_visuals(self.features.get(datum[key]), self.ablate) for key in ("img0", "img1")]
        return {
            "index": index,
            "identifier": datum["identifier"],
            "sent": "" if self.ablate == "language" else datum["sent"],
            "features": [torch.from_numpy(f) for f, _ in pair],  # 2 × (R_i, D)
            "boxes": [torch.from_numpy(b) for _, b in pair],  # 2 × (R_i, 4)
            "label": int(datum.get("label", -1)),  # -1: unlabelled test datum
        }


def pad_regions(features: Sequence[Tensor], boxes: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack images with different region counts.

    Returns:
        ``visual_feats`` (B, R, D), ``visual_pos`` (B, R, 4) and ``visual_attention_mask`` (B, R) with
        1 for a region and 0 for padding, R the most regions of any image.
    """
    width = max(f.shape[0] for f in features)
    feats = torch.zeros(len(features), width, features[0].shape[1])
    pos = torch.zeros(len(features), width, 4)
    mask = torch.zeros(len(features), width, dtype=torch.long)
    for row, (f, b) in enumerate(zip(features, boxes, strict=True)):
        feats[row, : f.shape[0]] = f
        pos[row, : b.shape[0]] = b
        mask[row, : f.shape[0]] = 1
    return feats, pos, mask


__all__ = [
    "ABLATIONS",
    "NLVR2Dataset",
    "QADataset",
    "load_splits",
    "pad_regions",
    "split_names",
]

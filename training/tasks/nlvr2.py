"""NLVR2 (paper appendix B): is one statement true of a pair of images? Accuracy and consistency.

The statement is encoded with each image, the two cross-modality [CLS] vectors are concatenated and classified
(``LxmertForNLVR2``). Appendix B writes the classifier as a sigmoid with binary cross-entropy; the authors' code
(and our model) uses two logits with cross-entropy, which is the same model: softmax over two logits is the
sigmoid of their difference. The encoder starts from the pre-trained checkpoint; NLVR2 has no pre-trained head
(the authors' ``--loadLXMERT``).

Consistency groups a (set, sentence) across its image pairs, which a sharded validation may split between
processes, so validation gathers every prediction's correctness before counting groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lxmert.checkpoints import load_pretrained, read_config
from lxmert.data.metrics import nlvr2_group, nlvr2_scores
from lxmert.data.task_files import load_nlvr2, write_nlvr2_predictions
from lxmert.modeling import LxmertForNLVR2
from training.engine import distributed

from .base import Losses, MetricSums, Stats, add_sums, scalar
from .default_layout import NLVR2_FEATURES, NLVR2_WORLD
from .finetune_base import FINETUNE_TRAIN_DEFAULTS, FinetuneTask
from .finetune_data import NLVR2Dataset, pad_regions
from .qa import model_inputs


class NLVR2Task(FinetuneTask):
    name = "nlvr2"
    data_defaults = {
        "data": f"{NLVR2_WORLD}/nlvr2",
        "features": NLVR2_FEATURES,
        "train": "train",
        "valid": "valid",
    }
    train_defaults = {**FINETUNE_TRAIN_DEFAULTS, "lr": 5e-5}
    id_key = "identifier"
    prediction_file = "{split}_predict.csv"

    @staticmethod
    def read_split(path: Path) -> list[dict[str, Any]]:
        return load_nlvr2(path)

    def dataset(self, items: list[dict[str, Any]]) -> NLVR2Dataset:
        return NLVR2Dataset(items, self.features, self.config.ablate)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        B = len(items)
        text = self.tokenizer([i["sent"] for i in items], max_length=self.config.max_seq_length)
        # Pad the 2B images together, then fold the pair dimension back in.
        feats, pos, mask = pad_regions(
            [f for i in items for f in i["features"]], [b for i in items for b in i["boxes"]]
        )  # (2B, R, D), (2B, R, 4), (2B, R)
        return {
            **text,  # (B, T)
            "visual_feats": feats.view(B, 2, *feats.shape[1:]),  # (B, 2, R, D)
            "visual_pos": pos.view(B, 2, *pos.shape[1:]),  # (B, 2, R, 4)
            "visual_attention_mask": mask.view(B, 2, -1),  # (B, 2, R)
            "label": torch.tensor([i["label"] for i in items]),  # (B,) 1 = true, -1 = unlabelled
            "index": torch.tensor([i["index"] for i in items]),
            "identifier": [i["identifier"] for i in items],
        }

    def compute(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Losses, Stats]:
        out = model(**model_inputs(batch), labels=batch["label"])
        correct = (out.logits.argmax(-1) == batch["label"]).sum()
        return {"nlvr2": out.loss}, {"accuracy": (correct, scalar(len(batch["label"])))}

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> MetricSums:
        sums: MetricSums = {}
        outcomes: dict[str, bool] = {}  # identifier → predicted right
        for batch in batches:
            out = model(**model_inputs(batch), labels=batch["label"])
            right = (out.logits.argmax(-1) == batch["label"]).tolist()
            outcomes.update(zip(batch["identifier"], right, strict=True))
            add_sums(sums, "loss", float(out.loss), 1.0)
            add_sums(sums, "nlvr2_loss", float(out.loss), 1.0)
            add_sums(sums, "accuracy", float(sum(right)), float(len(right)))
        # Every process gathers all outcomes; only rank 0 counts the groups, so the trainer's sum is exact.
        everything = {k: v for part in distributed.all_gather_object(outcomes) for k, v in part.items()}
        consistent: dict[str, bool] = {}
        for identifier, right in everything.items():
            group = nlvr2_group(identifier)
            consistent[group] = consistent.get(group, True) and right
        if distributed.is_main():
            add_sums(sums, "consistency", float(sum(consistent.values())), float(len(consistent)))
        return sums

    def predict(self, model: nn.Module, batch: dict[str, Any]) -> list[tuple[int, bool]]:
        logits = model(**model_inputs(batch)).logits  # (B, 2)
        return [
            (int(i), bool(p))
            for i, p in zip(batch["index"].tolist(), logits.argmax(-1).tolist(), strict=True)
        ]

    def build_model(self, init: str, from_scratch: bool) -> LxmertForNLVR2:
        if from_scratch:
            return LxmertForNLVR2(read_config(init)).train()
        return load_pretrained(LxmertForNLVR2, init, backbone_only=True).train()

    @staticmethod
    def write_predictions(path: Path, predictions: Mapping[str, bool]) -> None:
        write_nlvr2_predictions(path, predictions)

    @staticmethod
    def score(predictions: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, float]:
        return nlvr2_scores(predictions, items)


__all__ = ["NLVR2Task"]

"""GQA (paper §4, appendix A): exact-match accuracy over the 1842-answer table, binary / open and per structure.

Data: the authors' ``data/gqa/{train,valid,testdev}.json`` and ``trainval_label2ans.json`` (or the synthetic
world's). As the official guidelines and the paper say, the paper fine-tunes on train + valid and validates on
testdev, at lr 1e-5 (``--train train,valid --valid testdev --lr 1e-5``). The defaults read the synthetic world of the
README's layout (:mod:`training.tasks.default_layout`) and, as ``scripts/build_default.sh`` and the question-only
baselines do, train on train and validate on valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lxmert.data.metrics import gqa_is_open, gqa_scores, gqa_structural_type
from lxmert.data.task_files import load_gqa, write_gqa_predictions

from .default_layout import FEATURES, WORLD
from .finetune_base import FINETUNE_TRAIN_DEFAULTS
from .qa import QATask


class GQATask(QATask):
    name = "gqa"
    data_defaults = {
        "data": f"{WORLD}/gqa",
        "features": FEATURES,
        "train": "train",
        "valid": "valid",
    }
    train_defaults = {**FINETUNE_TRAIN_DEFAULTS, "lr": 1e-5}
    id_key = "question_id"
    prediction_file = "{split}_predict.json"

    @staticmethod
    def read_split(path: Path) -> list[dict[str, Any]]:
        return load_gqa(path)

    def breakdowns(self, datum: dict[str, Any]) -> list[str]:
        names = ["open" if gqa_is_open(datum) else "binary"]
        structural = gqa_structural_type(datum)
        return names + [f"structural/{structural}"] if structural else names

    @staticmethod
    def write_predictions(path: Path, predictions: Mapping[Any, str]) -> None:
        write_gqa_predictions(path, predictions)

    @staticmethod
    def score(predictions: Mapping[Any, str], items: list[dict[str, Any]]) -> dict[str, float]:
        return gqa_scores(predictions, items)


__all__ = ["GQATask"]

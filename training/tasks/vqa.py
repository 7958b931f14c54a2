"""VQA v2.0 (paper §4, appendix A): soft-score accuracy over the 3129-answer table, per answer type.

Data: the authors' ``data/vqa/{train,nominival,minival,test}.json`` and ``trainval_label2ans.json`` (or the synthetic
world's files of the same names). The paper fine-tunes on train + nominival and validates on minival, at lr 5e-5.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lxmert.data.metrics import vqa_answer_type, vqa_scores
from lxmert.data.task_files import load_vqa, write_vqa_predictions

from .default_layout import FEATURES, WORLD
from .finetune_base import FINETUNE_TRAIN_DEFAULTS
from .qa import QATask


class VQATask(QATask):
    name = "vqa"
    data_defaults = {
        "data": f"{WORLD}/vqa",
        "features": FEATURES,
        "train": "train,nominival",
        "valid": "minival",
    }
    train_defaults = {**FINETUNE_TRAIN_DEFAULTS, "lr": 5e-5}
    id_key = "question_id"
    prediction_file = "{split}_predict.json"

    @staticmethod
    def read_split(path: Path) -> list[dict[str, Any]]:
        return load_vqa(path)

    def breakdowns(self, datum: dict[str, Any]) -> list[str]:
        return [vqa_answer_type(datum)]

    @staticmethod
    def write_predictions(path: Path, predictions: Mapping[Any, str]) -> None:
        write_vqa_predictions(path, predictions)

    @staticmethod
    def score(predictions: Mapping[Any, str], items: list[dict[str, Any]]) -> dict[str, float]:
        return vqa_scores(predictions, items)


__all__ = ["VQATask"]

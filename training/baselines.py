"""Baselines every fine-tuning result is read against (the paper's Table 2 "Language only" row and below).

Two kinds, on the same splits and scored by the same evaluators as the models:

1. **Trained single-modality baselines**: the LXMERT model fine-tuned with one modality removed, via
   ``python -m training.finetune <task> --ablate vision`` (question only: every image becomes one blank region, so no
   image information reaches the model) or ``--ablate language`` (image only: every sentence is empty, the model reads
   ``[CLS] [SEP]``). Same initialisation, recipe and splits as the full model.
2. **Answer priors** (this module, no model): the answer with the most training credit for each question type,
   predicted for every evaluation question of that type (the most-frequent-answer-per-question-type baseline of the
   VQA papers). Question types: VQA's ``question_type`` (the question's first words); GQA's detailed type where
   the data records it, else the question's first two words; NLVR2 has none, so the prior is the majority label.
   A type unseen in training falls back to the overall best answer. "Credit" is the sum of soft scores, so for GQA
   and NLVR2 it is the count of the answer.

    python -m training.baselines --task vqa --split test
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxmert.fileio import atomic_write_text
from training.config_cli import add_dataclass_arguments, dataclass_from_args
from training.finetune import FINETUNE_TASKS
from training.metrics import nlvr2_label
from training.tasks import get_task
from training.tasks.finetune_base import FinetuneTask
from training.tasks.finetune_data import load_splits


@dataclass
class BaselineConfig:
    task: str = field(metadata={"help": "the task", "choices": FINETUNE_TASKS})
    data: str = field(default="", metadata={"help": "task data folder (default: the task's)"})
    train: str = field(
        default="", metadata={"help": "splits the prior is counted on (default: the task's train)"}
    )
    split: str = field(default="", metadata={"help": "split(s) to predict (default: the task's valid split)"})
    out: str = field(
        default="", metadata={"help": "prediction file (default: runs/finetune/<task>-prior/predictions/...)"}
    )


def question_type(task: str, datum: dict[str, Any]) -> str:
    """The group a question's prior is taken over (see the module docstring)."""
    if task == "vqa":
        return datum["question_type"]
    if task == "gqa":
        types = datum.get("types") or {}
        return types.get("detailed") or " ".join(datum["sent"].lower().split()[:2])
    return "all"


def answer_credit(task: str, datum: dict[str, Any]) -> dict[Any, float]:
    """What a training datum votes for: its soft label (VQA, GQA) or its truth value (NLVR2)."""
    if task == "nlvr2":
        return {nlvr2_label(datum["label"]): 1.0}
    return dict(datum.get("label") or {})


def fit_prior(
    items: list[dict[str, Any]],
    key: Callable[[dict[str, Any]], str],
    credit: Callable[[dict[str, Any]], dict],
) -> tuple[dict[str, Any], Any]:
    """The best answer per question type and overall, by summed credit (ties: the first seen)."""
    per_type: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for datum in items:
        for answer, score in credit(datum).items():
            per_type[key(datum)][answer] += score
            overall[answer] += score
    if not overall:
        raise ValueError("the training items carry no labels to count")
    return {k: c.most_common(1)[0][0] for k, c in per_type.items()}, overall.most_common(1)[0][0]


def run_prior(cfg: BaselineConfig) -> dict[str, Any]:
    """Count the prior on ``cfg.train``, predict ``cfg.split``, write and score the predictions."""
    task_class: type[FinetuneTask] = get_task(cfg.task)
    defaults = task_class.data_defaults
    data = cfg.data or defaults["data"]
    train_splits, split = cfg.train or defaults["train"], cfg.split or defaults["valid"]
    train_items = load_splits(data, train_splits, task_class.read_split)
    items = load_splits(data, split, task_class.read_split)

    prior, fallback = fit_prior(
        train_items, lambda d: question_type(cfg.task, d), lambda d: answer_credit(cfg.task, d)
    )
    predictions = {d[task_class.id_key]: prior.get(question_type(cfg.task, d), fallback) for d in items}
    out = (
        Path(cfg.out)
        if cfg.out
        else Path("runs/finetune", f"{cfg.task}-prior", "predictions")
        / task_class.prediction_file.format(split=split.replace(",", "+"))
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    task_class.write_predictions(out, predictions)
    metrics = task_class.score(predictions, items) if task_class.is_labelled(items) else None
    result = {
        "task": cfg.task,
        "baseline": "answer prior per question type",
        "train": train_splits,
        "split": split,
        "question_types": len(prior),
        "items": len(items),
        "predictions": str(out),
        "metrics": metrics,
    }
    if metrics is not None:
        atomic_write_text(out.with_name(out.stem + "_metrics.json"), json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_arguments(parser, BaselineConfig, "answer prior")
    print(json.dumps(run_prior(dataclass_from_args(BaselineConfig, parser.parse_args(argv))), indent=1))


if __name__ == "__main__":
    main()

"""Task JSON files of the LXMERT ecosystem and the prediction files the official evaluators take.

Data files are lists of dicts, exactly as the authors ship them (``data/{vqa,gqa,nlvr2,lxmert}/*.json``); the readers
check the keys each task's loader needs and name the file and item when one is missing. Keys beyond the required
ones are kept: the synthetic world adds GQA's ``types`` (structural / semantic / detailed) and ``program``.

==========  ==================================================================================================
task        required keys of one item
==========  ==================================================================================================
vqa         question_id (int), img_id, sent, answer_type, question_type; label {answer: soft score} (absent
            in the real VQA test split)
gqa         question_id (str), img_id, sent; label {answer: 1.0} (absent in the real submit split)
nlvr2       identifier ("split-set-pair-sentence"), img0, img1, sent, uid, label (0/1)
pretrain    img_id, sentf {source: [sentence, ...]}, labelf {qa source: [{answer: score}, ...]} aligned with
            sentf[qa source]
==========  ==================================================================================================

Predictions: VQA ``[{"question_id": int, "answer": str}]``, GQA ``[{"questionId": str, "prediction": str}]`` (both
written as the authors' ``dump_result``: ``json.dump(..., indent=4, sort_keys=True)``) and NLVR2 CSV lines
``identifier,True|False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lxmert.fileio import atomic_write_text, read_json

# The fine-tuning tasks, in the order commands list them: the one list of their names (the training registry's
# fine-tuning tasks and a dataset.json's ``task`` are these), each with its file format in REQUIRED_KEYS.
FINETUNE_TASKS: tuple[str, ...] = ("vqa", "gqa", "nlvr2")
REQUIRED_KEYS = {
    "vqa": {"question_id": int, "img_id": str, "sent": str, "answer_type": str, "question_type": str},
    "gqa": {"question_id": str, "img_id": str, "sent": str},
    "nlvr2": {"identifier": str, "img0": str, "img1": str, "sent": str, "uid": str, "label": int},
    "pretrain": {"img_id": str, "sentf": dict, "labelf": dict},
}


def write_json(
    path: str | os.PathLike, payload: Any, indent: int | None = None, sort_keys: bool = False
) -> None:
    """Write JSON atomically (temporary file, then rename), creating the parent directory."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        path, json.dumps(payload, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    )


def _check_label(label: Any, where: str) -> None:
    if not isinstance(label, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
        for k, v in label.items()
    ):
        raise ValueError(f"{where}: 'label' must map answers to scores, got {label!r:.80}")


def _check_pretrain(item: dict[str, Any], where: str) -> None:
    for source, sents in item["sentf"].items():
        if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
            raise ValueError(f"{where}: sentf[{source!r}] must be a list of sentences")
    for source, labels in item["labelf"].items():
        if source not in item["sentf"] or len(labels) != len(item["sentf"][source]):
            raise ValueError(f"{where}: labelf[{source!r}] is not aligned with sentf[{source!r}]")
        for k, label in enumerate(labels):
            _check_label(label, f"{where} labelf[{source!r}][{k}]")


def load_task(path: str | os.PathLike, task: str) -> list[dict[str, Any]]:
    """Read and check a task file.

    Args:
        path: the JSON file (a list of items).
        task: "vqa", "gqa", "nlvr2" or "pretrain".

    Returns:
        The items, unchanged.

    Raises:
        ValueError: the file is not a list, or an item misses a key or has a value of the wrong type.
    """
    if task not in REQUIRED_KEYS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(REQUIRED_KEYS)}")
    items = read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{path}: a {task} file holds a JSON list, got {type(items).__name__}")
    for index, item in enumerate(items):
        where = f"{path} item {index}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
        for key, kind in REQUIRED_KEYS[task].items():
            if key not in item:
                raise ValueError(
                    f"{where}: missing key {key!r} (a {task} item needs {sorted(REQUIRED_KEYS[task])})"
                )
            if not isinstance(item[key], kind) or isinstance(item[key], bool):
                raise ValueError(f"{where}: {key!r} should be {kind.__name__}, got {item[key]!r:.60}")
        if task in ("vqa", "gqa") and "label" in item:
            _check_label(item["label"], where)
        if task == "nlvr2" and item["label"] not in (0, 1):
            raise ValueError(f"{where}: NLVR2 label must be 0 or 1, got {item['label']!r}")
        if task == "pretrain":
            _check_pretrain(item, where)
    return items


def load_vqa(path: str | os.PathLike) -> list[dict[str, Any]]:
    return load_task(path, "vqa")


def load_gqa(path: str | os.PathLike) -> list[dict[str, Any]]:
    return load_task(path, "gqa")


def load_nlvr2(path: str | os.PathLike) -> list[dict[str, Any]]:
    return load_task(path, "nlvr2")


def load_pretrain(path: str | os.PathLike) -> list[dict[str, Any]]:
    return load_task(path, "pretrain")


def write_vqa_predictions(path: str | os.PathLike, answers: Mapping[int, str]) -> None:
    """``{question_id: answer}`` -> the VQA server's result file ``[{"question_id", "answer"}]``."""
    write_json(
        path, [{"question_id": int(q), "answer": a} for q, a in answers.items()], indent=4, sort_keys=True
    )


def write_gqa_predictions(path: str | os.PathLike, answers: Mapping[str, str]) -> None:
    """``{question_id: answer}`` -> GQA's ``[{"questionId", "prediction"}]`` (testdev_predict / submit_predict)."""
    write_json(
        path, [{"questionId": str(q), "prediction": a} for q, a in answers.items()], indent=4, sort_keys=True
    )


def write_nlvr2_predictions(path: str | os.PathLike, predictions: Mapping[str, bool | int]) -> None:
    """``{identifier: truth}`` -> lines ``identifier,True|False``, as lil-lab/nlvr's evaluator reads them."""
    lines = [
        f"{identifier},{'True' if bool(truth) else 'False'}\n" for identifier, truth in predictions.items()
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(lines))


def read_nlvr2_predictions(path: str | os.PathLike) -> dict[str, bool]:
    """Inverse of ``write_nlvr2_predictions``."""
    predictions = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        identifier, sep, value = line.rpartition(",")
        if not sep or value not in ("True", "False"):
            raise ValueError(f"{path} line {number}: expected 'identifier,True|False', got {line!r}")
        predictions[identifier] = value == "True"
    return predictions

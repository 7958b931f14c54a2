"""Baselines every fine-tuning result is read against (the paper's Table 2 "Language only" row and below).

Two kinds, on the same splits and scored by the same evaluators as the models:

1. **Trained single-modality baselines**: the LXMERT model fine-tuned with one modality removed, via
   ``python -m training.finetune <task> --ablate vision`` (question only: every image becomes one blank region, so no
   image information reaches the model) or ``--ablate language`` (image only: every sentence is empty, the model reads
   ``[CLS] [SEP]``). Same initialisation, recipe and splits as the full model.
2. **Answer priors** (this module, no model, no image), two of them (``--key``):

   - ``question`` (the default): the most frequent training answer (a question's best-scored one) to the very same
     question, compared after normalising (lower case, punctuation dropped, single spaces); a question never asked
     in training gets its type's prior, below. This is the question-only level of a dataset whose questions repeat
     (a fixed set of templates, few answers): there it is what a model that ignores the image can reach.
   - ``type``: the most frequent training answer of each question type, predicted for every evaluation question of
     that type (the most-frequent-answer-per-question-type baseline of the VQA papers; per type on a synthetic
     world, with each type's share: ``python -m training.world.template_priors``). Question types: VQA's
     ``question_type`` (the question's first words; for your own data, its first two); GQA's detailed type where
     the data records it, else the question's first two words; NLVR2's statement family where the world records
     it, else none (the majority label). A type unseen in training falls back to the overall most frequent answer.
     Far below the question-only level where two opening words say little ("is there ...": yes or no about
     anything).

   Neither is trained: the trained question-only baseline above learns from the whole question and is the one to
   beat; these priors are its floor, computed in a second. Below both, chance (``chance_predictions``): the most
   frequent training answer for every question (the paper tables' chance row).

    python -m training.baselines --task vqa --split test
    python -m training.baselines --task vqa --split test --key type
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxmert.config_cli import parse_config
from lxmert.data.metrics import nlvr2_label
from training.tasks import FINETUNE_TASKS, get_task
from training.tasks.finetune_base import FinetuneTask
from training.tasks.finetune_data import load_splits

PRIOR_KEYS = ("question", "type")
OVERALL = "(all)"  # the group of every item: the fallback answer, and the table row of all of them


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
    key: str = field(
        default="question",
        metadata={
            "help": "'question': the most frequent answer to the same (normalised) question, else its type's; "
            "'type': the question type's only",
            "choices": PRIOR_KEYS,
        },
    )

    def __post_init__(self) -> None:
        if self.key not in PRIOR_KEYS:
            raise ValueError(f"key must be one of {PRIOR_KEYS}, got {self.key!r}")


def best_answer(label: dict[str, float]) -> str | None:
    """The highest-scored answer of a soft label (None for an empty label)."""
    return max(label, key=label.get) if label else None


def question_type(task: str, datum: dict[str, Any]) -> str:
    """The group a question's prior is taken over (see the module docstring)."""
    if task == "vqa":
        return datum.get("question_type", OVERALL)
    if task == "gqa":
        return (datum.get("types") or {}).get("detailed") or " ".join(datum["sent"].lower().split()[:2])
    return datum.get("family", OVERALL)


def gold_answer(task: str, datum: dict[str, Any]) -> Any:
    """What a training datum counts for: its best-scored answer (VQA, GQA) or its truth value as the authors' JSON
    writes it, 0 or 1 (NLVR2)."""
    return int(nlvr2_label(datum["label"])) if task == "nlvr2" else best_answer(datum["label"])


def normalise_question(sentence: str) -> str:
    """A question as the question prior compares it: lower case, words only, single spaces."""
    return " ".join(re.findall(r"\w+", sentence.lower()))


def labelled(task: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items a prior is counted on: those with an answer (every NLVR2 item has its truth value)."""
    return [d for d in items if task == "nlvr2" or d.get("label")]


def answer_shares(
    data: Sequence[dict[str, Any]], template: Callable[[dict], str], answer: Callable[[dict], Any]
) -> dict[str, tuple[int, Any, float]]:
    """Per template (and OVERALL): (number of items, most frequent answer, its share)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for datum in data:
        value = answer(datum)
        counts[template(datum)][value] += 1
        counts[OVERALL][value] += 1
    shares = {}
    for key, counter in sorted(counts.items()):
        top, n = counter.most_common(1)[0]
        shares[key] = (sum(counter.values()), top, n / sum(counter.values()))
    return shares


def fit_majority(
    data: Sequence[dict[str, Any]], template: Callable[[dict], str], answer: Callable[[dict], Any]
) -> dict[str, Any]:
    """Most frequent answer per template, with OVERALL as the fallback for templates unseen in training."""
    return {key: top for key, (_, top, _) in answer_shares(data, template, answer).items()}


def predict_majority(model: dict[str, Any], datum: dict[str, Any], template: Callable[[dict], str]) -> Any:
    return model.get(template(datum), model[OVERALL])


def type_shares(task: str, train_items: Sequence[dict[str, Any]]) -> dict[str, tuple[int, Any, float]]:
    """Per question type (and OVERALL) of the labelled ``train_items``: (items, most frequent answer, its share)."""
    return answer_shares(
        labelled(task, train_items), lambda d: question_type(task, d), lambda d: gold_answer(task, d)
    )


def prior_predictions(
    task: str, train_items: list[dict[str, Any]], items: list[dict[str, Any]], key: str = "question"
) -> dict[Any, Any]:
    """``{datum id: answer}`` of the answer prior (``key``: see the module docstring) counted on ``train_items``."""
    if key not in PRIOR_KEYS:
        raise ValueError(f"key must be one of {PRIOR_KEYS}, got {key!r}")
    id_key = get_task(task).id_key

    def template(datum: dict[str, Any]) -> str:
        return question_type(task, datum)

    def question(datum: dict[str, Any]) -> str:
        return normalise_question(datum["sent"])

    def answer(datum: dict[str, Any]) -> Any:
        return gold_answer(task, datum)

    counted = labelled(task, train_items)
    by_type = fit_majority(counted, template, answer)
    by_question = fit_majority(counted, question, answer) if key == "question" else {}
    by_question.pop(OVERALL, None)  # a question never asked falls back to its type, not to the overall answer
    return {
        d[id_key]: by_question[question(d)]
        if question(d) in by_question
        else predict_majority(by_type, d, template)
        for d in items
    }


def chance_predictions(
    task: str, train_items: list[dict[str, Any]], items: list[dict[str, Any]]
) -> dict[Any, Any]:
    """``{datum id: answer}`` of chance: the most frequent answer of the labelled ``train_items``, for every item."""
    top = Counter(gold_answer(task, d) for d in labelled(task, train_items)).most_common(1)[0][0]
    id_key = get_task(task).id_key
    return {d[id_key]: top for d in items}


def run_prior(cfg: BaselineConfig) -> dict[str, Any]:
    """Count the prior on ``cfg.train``, predict ``cfg.split``, write and score the predictions."""
    task_class: type[FinetuneTask] = get_task(cfg.task)
    defaults = task_class.data_defaults
    data = cfg.data or defaults["data"]
    train_splits, split = cfg.train or defaults["train"], cfg.split or defaults["valid"]
    train_items = load_splits(data, train_splits, task_class.read_split)
    items = load_splits(data, split, task_class.read_split)

    predictions = prior_predictions(cfg.task, train_items, items, cfg.key)
    record = {
        "task": cfg.task,
        "baseline": "answer prior per question, else per question type"
        if cfg.key == "question"
        else "answer prior per question type",
        "train": train_splits,
        "split": split,
    }
    directory = Path("runs/finetune", f"{cfg.task}-prior" + ("-type" if cfg.key == "type" else ""))
    return task_class.publish_predictions(predictions, items, cfg.out, directory, split, record)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        BaselineConfig, argv, prog="python -m training.baselines", doc=__doc__, title="answer prior"
    )
    print(json.dumps(run_prior(config), indent=1))

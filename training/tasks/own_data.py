"""Bring your own data: a folder of images and a table of questions → features → a fine-tuned QA model.

    python -m training.byo --images my_images/ --questions my_questions.csv --out runs/byo/mine

The detector and the pre-trained checkpoint default to the shipped ``assets/default/detector`` and
``assets/default/pretrained`` (``--detector`` / ``--init`` for others). Three steps; rerunning the same command
resumes (extraction skips images already in the store, fine-tuning continues from ``<out>/model/last.pt``;
``--no-resume`` trains the model again from the start and keeps the data and features):

1. **Convert** the questions into the authors' VQA format under ``<out>/data``: ``train.json``, ``valid.json``,
   ``test.json`` (whichever have questions) and the answer table ``trainval_label2ans.json`` /
   ``trainval_ans2label.json``. Answers are normalised as VQA's preprocessing does; a question with several
   annotator answers gets VQA soft scores (0.3 / 0.6 / 0.9 / 1 for 1 / 2 / 3 / 4+ matching annotators), one with a
   single answer gets that answer at 1.0. The answer table holds every train/valid answer given as the best answer
   of at least ``min_answer_count`` questions (the real VQA table uses 9).
2. **Extract** region features for every image of the folder into ``<out>/features``, as
   ``python -m training.extract`` does (an image's id is its relative path without the suffix). A finished store
   there that holds every image of the questions is used as it is, and ``--features`` names one to use instead
   (another run's, to try another learning rate in a new ``--out`` without extracting again).
3. **Fine-tune** as ``python -m training.finetune vqa`` does (the paper's recipe, at a learning rate chosen by the
   model's width unless ``--lr`` is given; ``--from-scratch`` is the control without pre-training) into
   ``<out>/model``, validating on the valid split; then predict the test split, if any, as
   ``python -m training.evaluate`` does, into ``<out>/model/predictions/test_predict.json``. The run ends by
   printing the validation accuracy beside the question-only prior's (the most frequent training answer to the same
   question, :mod:`training.tasks.answer_priors`); it warns when the best score is no better than the prior's or
   the last epoch still raised it steeply.

The question table is a CSV with a header, or a JSON list of objects, with these fields:

=============  =============================================================================================
image          the image's path relative to ``--images`` (e.g. ``kitchen/001.jpg``)
question       the question
answer         the answer; several annotators' answers separated by ``|`` (CSV) or as a list (JSON); empty
               for a question to predict but not train on (it goes to the test split)
split          optional: ``train``, ``valid`` or ``test``; if absent, images are split at random
               (``valid_fraction`` of them, whole images, so no image is in both)
question_id    optional integer; file order (1, 2, ...) if absent
=============  =============================================================================================
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lxmert.answers import AnswerTable
from lxmert.config_cli import parse_config
from lxmert.data.metrics import vqa_answer_type
from lxmert.data.store import FeatureStore
from lxmert.data.task_files import write_json
from lxmert.fileio import read_json, read_text
from training.data.vqa_softscore import (
    answer_vocabulary,
    multiple_choice_answer,
    preprocess_answer,
    soft_label,
)
from training.detection.extraction import ExtractConfig, extract
from training.engine.distributed import resolve_device
from training.engine.trainer import TrainConfig
from training.tasks import get_task
from training.tasks.answer_priors import prior_predictions
from training.tasks.default_layout import DETECTOR, PRETRAINED
from training.tasks.evaluation import EvaluateConfig, evaluate
from training.tasks.finetune_schedule import no_better_than_prior_warning
from training.tasks.finetuning import AUTO_LR, LR_HELP, FinetuneConfig, finetune

SPLITS = ("train", "valid", "test")
ANSWER_SEPARATOR = "|"


@dataclass
class ByoConfig:
    images: str = field(metadata={"help": "folder of the images the questions refer to"})
    questions: str = field(
        metadata={"help": "CSV (with a header) or JSON list of image/question/answer rows"}
    )
    out: str = field(default="runs/byo", metadata={"help": "output folder: data/, features/, model/"})
    valid_fraction: float = field(
        default=0.2, metadata={"help": "share of images held out for validation when rows have no split"}
    )
    min_answer_count: int = field(
        default=1, metadata={"help": "questions an answer must be best for to enter the answer table"}
    )
    seed: int = field(default=9595, metadata={"help": "seed of the random image split and of fine-tuning"})
    detector: str = field(
        default=DETECTOR, metadata={"help": "detector directory for training.extract (the shipped one)"}
    )
    features: str = field(
        default="",
        metadata={
            "help": "a finished feature store holding every image of the questions, used instead of extracting "
            "(e.g. another run's <out>/features); empty: <out>/features, extracted where incomplete"
        },
    )
    init: str = field(
        default=PRETRAINED, metadata={"help": "pre-trained checkpoint to start from (the shipped one)"}
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "the control: --init's architecture and vocabulary at random initialisation"},
    )
    vocab: str = field(
        default="", metadata={"help": "WordPiece vocab.txt when the checkpoint has none (an authors' .pth)"}
    )
    epochs: int = field(default=4, metadata={"help": "fine-tuning epochs (paper: 4)"})
    batch_size: int = field(default=32, metadata={"help": "fine-tuning batch size (paper: 32)"})
    lr: float = field(default=AUTO_LR, metadata={"help": LR_HELP})
    resume: bool = field(
        default=True,
        metadata={
            "help": "continue <out>/model from its last.pt; --no-resume trains it again from the start "
            "(data and features are kept)"
        },
    )
    device: str = field(
        default="auto", metadata={"help": "auto, cpu, cuda or cuda:N (extraction and training)"}
    )
    threads: int = field(default=0, metadata={"help": "CPU threads (0: PyTorch's default)"})

    def __post_init__(self) -> None:
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.min_answer_count < 1:
            raise ValueError(f"min_answer_count must be >= 1, got {self.min_answer_count}")
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0 (0: chosen by the model's width), got {self.lr}")


# -- reading the question table -------------------------------------------------------------------------------


def _answers_of(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [a.strip() for a in value.split(ANSWER_SEPARATOR) if a.strip()]
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return [a.strip() for a in value if a.strip()]
    raise ValueError(f"{where}: 'answer' must be a string or a list of strings, got {value!r}")


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{image, question, answers: [str], split: str | None, question_id: int}`` of a CSV or JSON table.

    Raises:
        ValueError: naming the row and field that is missing or malformed.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raw = read_json(path)
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise ValueError(f"{path}: expected a JSON list of objects")
    elif path.suffix.lower() == ".csv":
        raw = list(csv.DictReader(io.StringIO(read_text(path), newline="")))
    else:
        raise ValueError(f"{path}: questions must be a .csv or .json file")
    rows, seen_ids = [], set()
    for number, record in enumerate(raw, start=1):
        where = f"{path} row {number}"
        for key in ("image", "question"):
            if not str(record.get(key) or "").strip():
                raise ValueError(f"{where}: missing {key!r}")
        split = str(record.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise ValueError(f"{where}: split must be one of {SPLITS}, got {split!r}")
        raw_id = record.get("question_id")
        try:
            question_id = int(raw_id) if str(raw_id or "").strip() else number
        except ValueError:
            raise ValueError(f"{where}: question_id must be an integer, got {raw_id!r}") from None
        if question_id in seen_ids:
            raise ValueError(f"{where}: question_id {question_id} appears twice")
        seen_ids.add(question_id)
        answers = _answers_of(record.get("answer"), where)
        if not answers and split in ("train", "valid"):
            raise ValueError(f"{where}: a {split} question needs an answer")
        rows.append(
            {
                "image": str(record["image"]).strip(),
                "question": str(record["question"]).strip(),
                "answers": answers,
                "split": split,
                "question_id": question_id,
            }
        )
    if not rows:
        raise ValueError(f"{path} holds no questions")
    return rows


# -- conversion -----------------------------------------------------------------------------------------------


def image_id(image: str) -> str:
    """The feature-store id of an image path relative to the image folder: the path without its suffix."""
    return Path(image).with_suffix("").as_posix()


def assign_splits(rows: list[dict[str, Any]], valid_fraction: float, seed: int) -> None:
    """Fill in missing splits in place: unanswered rows → test; whole images at random → valid, the rest train."""
    images = sorted({r["image"] for r in rows if r["split"] is None and r["answers"]})
    order = np.random.default_rng(seed).permutation(len(images))
    held_out = min(math.ceil(valid_fraction * len(images)), len(images) - 1) if images else 0
    valid = {images[i] for i in order[:held_out]}
    for row in rows:
        if row["split"] is None:
            row["split"] = "test" if not row["answers"] else ("valid" if row["image"] in valid else "train")


def question_type(question: str) -> str:
    """VQA's question type is the question's opening words; here its first two, lower-cased."""
    return " ".join(question.lower().rstrip("?").split()[:2])


def convert(rows: list[dict[str, Any]], min_answer_count: int) -> tuple[dict[str, list[dict]], AnswerTable]:
    """VQA-format items per split and the answer table (see the module docstring)."""
    labelled = [r for r in rows if r["answers"] and r["split"] in ("train", "valid")]
    best = {r["question_id"]: multiple_choice_answer(r["answers"]) for r in rows if r["answers"]}
    table = AnswerTable(
        answer_vocabulary(((r["question_id"], best[r["question_id"]]) for r in labelled), min_answer_count)
    )
    if not len(table):
        raise ValueError(
            f"no answer is the best answer of {min_answer_count} training questions: lower min_answer_count"
        )
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for row in rows:
        item = {
            "question_id": row["question_id"],
            "img_id": image_id(row["image"]),
            "sent": row["question"],
            "question_type": question_type(row["question"]),
        }
        if row["answers"]:
            if len(row["answers"]) == 1:  # one answer is ground truth, not one annotator of ten
                answer = preprocess_answer(row["answers"][0])
                label = {answer: 1.0} if answer in table.ans2label else {}
            else:
                label = soft_label(row["answers"], table.ans2label)
            item["label"] = label
            item["answer_type"] = vqa_answer_type({"label": {best[row["question_id"]]: 1.0}})
        else:
            item["answer_type"] = "other"  # unknown without an answer; VQA's test files carry it too
        splits[row["split"]].append(item)
    return splits, table


def write_data(out: Path, splits: dict[str, list[dict]], table: AnswerTable) -> None:
    """The VQA-format folder ``training.finetune vqa --data`` reads."""
    for name, items in splits.items():
        if items:
            write_json(out / f"{name}.json", items)
    table.save(out / "trainval_label2ans.json")
    table.save_ans2label(out / "trainval_ans2label.json")


# -- the pipeline ---------------------------------------------------------------------------------------------


def _complete_store(path: Path, img_ids: set[str]) -> FeatureStore | None:
    """The finished store at ``path`` if it holds every one of ``img_ids``; None if there is none or it lacks some."""
    try:
        store = FeatureStore(path)
    except (FileNotFoundError, ValueError):  # no store yet, or an interrupted one: extraction resumes it
        return None
    return store if img_ids <= set(store.ids) else None


def region_features(cfg: ByoConfig, rows: list[dict[str, Any]]) -> str:
    """The feature store of the questions' images: ``--features``, a complete ``<out>/features``, or extracted.

    Raises:
        ValueError: ``--features`` lacks images of the questions, or an image could not be extracted.
    """
    img_ids = {image_id(r["image"]) for r in rows}
    if cfg.features:
        if _complete_store(Path(cfg.features), img_ids) is None:
            have = set(FeatureStore(cfg.features).ids)  # names the store's own problem, if that is the reason
            missing = sorted(img_ids - have)
            raise ValueError(
                f"--features {cfg.features} lacks {len(missing)} images of the questions (e.g. {missing[:3]}): "
                f"leave --features out to extract them into {Path(cfg.out) / 'features'}"
            )
        print(f"features: using {cfg.features}, which holds all {len(img_ids)} images of the questions")
        return cfg.features
    path = Path(cfg.out) / "features"
    if _complete_store(path, img_ids) is not None:
        print(f"features: {path} already holds all {len(img_ids)} images of the questions")
        return str(path)
    summary = extract(
        ExtractConfig(
            images=cfg.images,
            out=str(path),
            detector=cfg.detector,
            device=str(resolve_device(cfg.device)),
            num_threads=cfg.threads or torch.get_num_threads(),
        )
    )
    if not summary.finalized:
        raise RuntimeError(
            f"feature extraction stopped with {summary.remaining} images left: rerun to resume"
        )
    failed = sorted(img_ids & set(summary.skipped))
    if failed:
        reasons = "; ".join(summary.skipped[img_id] for img_id in failed[:3])
        raise ValueError(
            f"{len(failed)} image{'s' if len(failed) > 1 else ''} of the questions could not be extracted "
            f"({reasons}): replace or drop {'them' if len(failed) > 1 else 'it'} and rerun"
        )
    print(f"features: {summary.written} images extracted, {summary.already_present} already there")
    return str(path)


def run(cfg: ByoConfig) -> dict[str, Any]:
    """Convert, extract, fine-tune and predict (see the module docstring); returns what was written and scored.

    Returns:
        ``data``, ``features``, ``model`` (paths), ``lr``, ``valid`` (the last validation metrics, empty without a
        valid split), ``best`` (the best validation accuracy), ``prior`` (the question-only prior's metrics on the
        valid split) and, with a test split, ``predictions``.
    """
    out = Path(cfg.out)
    rows = read_questions(cfg.questions)
    missing = sorted({r["image"] for r in rows if not (Path(cfg.images) / r["image"]).is_file()})
    if missing:
        raise FileNotFoundError(f"{len(missing)} images are not in {cfg.images} (e.g. {missing[:3]})")
    assign_splits(rows, cfg.valid_fraction, cfg.seed)
    splits, table = convert(rows, cfg.min_answer_count)
    if not splits["train"]:
        raise ValueError("no training questions: give some rows an answer (and split train, or none)")
    write_data(out / "data", splits, table)
    print(f"data: {', '.join(f'{len(v)} {k}' for k, v in splits.items())} questions, {len(table)} answers")
    features = region_features(cfg, rows)

    task_class = get_task("vqa")
    data = task_class.default_config(
        data=str(out / "data"),
        features=features,
        train="train",
        valid="valid" if splits["valid"] else "",
    )
    train = TrainConfig(
        **{
            **task_class.train_defaults,
            "output": str(out / "model"),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "device": cfg.device,
            "threads": cfg.threads,
            "resume": cfg.resume,
        }
    )
    restart = (
        f"rerun with --no-resume to train {out / 'model'} again from the start (data and features are kept), "
        f"or give another --out with --features {features} to keep this run"
    )
    summary = finetune(
        "vqa",
        FinetuneConfig(init=cfg.init, from_scratch=cfg.from_scratch, vocab=cfg.vocab),
        data,
        train,
        restart_advice=restart,
    )
    model = out / "model" / ("best" if splits["valid"] else "final")
    result = {
        "data": str(out / "data"),
        "features": features,
        "model": str(model),
        "lr": summary["lr"],
        "valid": summary["valid"],
        "best": summary["best"],
        "prior": {},
    }
    if splits["valid"]:
        prior = prior_predictions("vqa", splits["train"], splits["valid"])
        result["prior"] = task_class.score(prior, splits["valid"])
        warning = no_better_than_prior_warning(result["best"], result["prior"]["accuracy"], "--epochs / --lr")
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    if splits["test"]:
        predicted = evaluate(
            EvaluateConfig(checkpoint=str(model), split="test", device=cfg.device, threads=cfg.threads)
        )
        result["predictions"] = predicted["predictions"]
    return result


def _scores(metrics: dict[str, float]) -> str:
    kinds = [f"{kind} {metrics[kind]:.3f}" for kind in ("yes/no", "number", "other") if kind in metrics]
    return f"{metrics['accuracy']:.3f}" + (f" ({', '.join(kinds)})" if kinds else "")


def format_result(result: dict[str, Any]) -> str:
    """What a run of :func:`run` reached, for a person: validation accuracy beside the prior, then the files."""
    lines = []
    if result["valid"]:
        lines.append(
            f"valid accuracy {_scores(result['valid'])} after the last epoch, best {result['best']:.3f} "
            f"(lr {result['lr']:.2g})"
        )
        lines.append(
            f"question-only prior (most frequent training answer to the same question) {_scores(result['prior'])}"
        )
    else:
        lines.append("no valid split: nothing was scored")
    lines.append(f"model: {result['model']}")
    if "predictions" in result:
        lines.append(f"test predictions: {result['predictions']}")
    lines.append(f"data: {result['data']}; features: {result['features']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        ByoConfig, argv, prog="python -m training.byo", doc=__doc__, title="bring your own data"
    )
    print(format_result(run(config)))

"""A dataset directory built from the authors' real obj36 rows of two COCO photos, for dataset-mode tests.

``tests/data/obj36/*.tsv.gz`` are the authors' rows for two of the photos in ``tests/data/coco/`` (unchanged lines of
``../shared/data/coco-obj36-sample/train2014_obj36.tsv``); they are converted into a feature store with the command
users run (``training.data.convert``), and the photos are copied unchanged. The questions are written by hand for
these photos in the VQA format (labels are soft scores); one of them credits every answer of the toy models, so
that whatever a random model answers, its score is a number the test can check.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from training.data.convert import ConvertConfig, convert

DATA = Path(__file__).resolve().parent / "data"
PHOTOS = ("COCO_train2014_000000573195", "COCO_train2014_000000132417")
# Every answer of tests/app_toy_assets.py ANSWERS, each with its own soft score.
ALL_TOY_ANSWERS = {"red": 0.3, "green": 0.6, "blue": 0.9, "yes": 1.0, "no": 0.3, "2": 0.6, "3": 0.9}
QUESTIONS = [
    {"img_id": PHOTOS[0], "sent": "What animal is in the car window?", "label": {"cat": 1.0, "kitten": 0.3}},
    {"img_id": PHOTOS[0], "sent": "Is the car rusty?", "label": {"yes": 1.0}},
    {
        "img_id": PHOTOS[0],
        "sent": "Which toy answer? (a test item crediting every one)",
        "label": ALL_TOY_ANSWERS,
    },
    {"img_id": PHOTOS[1], "sent": "What is flying over the field?", "label": {"birds": 1.0, "bird": 0.6}},
    {"img_id": PHOTOS[1], "sent": "Is it sunny?", "label": {"no": 0.9, "yes": 0.3}},
]


def vqa_items(questions: list[dict]) -> list[dict]:
    """The questions as a VQA task file holds them (question ids, answer and question types)."""
    return [
        {
            "question_id": 1000 + k,
            "answer_type": "yes/no" if set(q["label"]) <= {"yes", "no"} else "other",
            "question_type": " ".join(q["sent"].lower().split()[:2]),
            **q,
        }
        for k, q in enumerate(questions)
    ]


def build_dataset(root: Path, questions: list[dict] | None = None, **manifest) -> Path:
    """Write ``root/{images,features,questions.json,dataset.json}`` and return ``root``.

    Args:
        questions: VQA-format items (default: :data:`QUESTIONS` as a VQA file); [] writes no question file.
        manifest: fields of ``dataset.json`` that replace the defaults.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir()
    tsv = root.parent / f"{root.name}-obj36.tsv"
    tsv.write_bytes(b"".join(gzip.decompress((DATA / "obj36" / f"{p}.tsv.gz").read_bytes()) for p in PHOTOS))
    convert(ConvertConfig(tsv=[str(tsv)], out=str(root / "features")), progress=False)
    for photo in PHOTOS:
        shutil.copy(DATA / "coco" / f"{photo}.jpg", root / "images")
    values = {
        "format": "lxmert-dataset",
        "version": 1,
        "name": "COCO sample",
        "images": "images",
        "features": "features",
    }
    items = vqa_items(QUESTIONS) if questions is None else questions
    if items:
        (root / "questions.json").write_text(json.dumps(items))
        values |= {"questions": "questions.json", "task": "vqa"}
    values |= manifest
    (root / "dataset.json").write_text(json.dumps(values))
    return root


__all__ = ["PHOTOS", "QUESTIONS", "build_dataset", "vqa_items"]

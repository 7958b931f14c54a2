"""Question-answer data for the data-set tools: task JSON questions, images, and the detector that reads them.

The questions are the authors' task JSON (a list of ``{img_id, sent, label: {answer: score}}``, as VQA and GQA
files and the synthetic world's are). Regions come from running the checkpoint's detector on the images, so this
module needs nothing but ``lxmert``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxmert.answers import AnswerTable
from lxmert.detection.regions import Regions
from lxmert.fileio import read_json
from lxmert.tokenization import LxmertTokenizer

from .inputs import Example, example_from_regions

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DETECTOR_BATCH = 8  # images per detector call


@dataclass
class QAItem:
    """One question on one image, with its soft answer labels by answer index."""

    example: Example
    label: dict[int, float]
    img_id: str
    question_id: Any = None


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """The task JSON's items, each checked for ``img_id`` and ``sent``."""
    items = read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{path} must hold a JSON list of questions, got {type(items).__name__}")
    for k, item in enumerate(items):
        missing = [key for key in ("img_id", "sent") if key not in item]
        if missing:
            raise ValueError(f"{path}: item {k} lacks {missing}")
    return items


def sample(items: Sequence[Any], num_samples: int, seed: int) -> list[Any]:
    """Chefer et al.'s sample: the items shuffled with ``random.seed(seed)``, the first ``num_samples`` taken."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in order[:num_samples]]


def image_path(images: str | Path, img_id: str) -> Path:
    """``<images>/<img_id>`` with the first image extension that exists."""
    for ext in IMAGE_EXTENSIONS:
        path = Path(images) / f"{img_id}{ext}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no image for {img_id!r} in {images} (tried {', '.join(IMAGE_EXTENSIONS)})")


def load_qa_items(
    questions: str | Path,
    tokenizer: LxmertTokenizer,
    answers: AnswerTable,
    detector: Callable[[list[Path]], list[Regions]],
    images: str | Path,
    num_samples: int,
    seed: int,
) -> list[QAItem]:
    """Sample questions, detect the regions of their images (each image once), and build the examples.

    Args:
        questions: the task JSON file.
        tokenizer: the checkpoint's tokenizer.
        answers: the checkpoint's answer table; labels outside it score 0 and are left out.
        detector: images → regions (``lxmert.detection.Detector``).
        images: the image directory.
        num_samples: how many questions to sample.
        seed: the sampling seed.
    """
    chosen = sample(read_questions(questions), num_samples, seed)
    img_ids = sorted({item["img_id"] for item in chosen})
    regions: dict[str, Regions] = {}
    for start in range(0, len(img_ids), DETECTOR_BATCH):
        batch = img_ids[start : start + DETECTOR_BATCH]
        regions.update(zip(batch, detector([image_path(images, i) for i in batch]), strict=True))
    result = []
    for item in chosen:
        label = {}
        for answer, score in (item.get("label") or {}).items():
            index = answers.label(answer)
            if index is not None:
                label[index] = float(score)
        example = example_from_regions(tokenizer, item["sent"], regions[item["img_id"]])
        result.append(QAItem(example, label, item["img_id"], item.get("question_id")))
    return result


__all__ = ["QAItem", "image_path", "load_qa_items", "read_questions", "sample"]

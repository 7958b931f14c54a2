"""A dataset as the app's dataset mode reads it: photos, the regions stored for them, and optionally their questions.

A dataset is a directory holding ``dataset.json``::

    {
      "format": "lxmert-dataset", "version": 1,
      "name": "COCO train2014 sample",            # optional: the directory's name
      "images": "images",                         # photos named <img_id>.jpg (or .jpeg, .png)
      "features": "features",                     # a feature store (lxmert.data.store) holding the same ids
      "questions": "questions.json",              # optional: a task file (lxmert.data.task_files)
      "task": "vqa",                              # with questions: vqa, gqa or nlvr2
      "objects_vocab": "objects_vocab.txt",       # optional: names of the stored object ids
      "attributes_vocab": "attributes_vocab.txt"  # optional: names of the stored attribute ids
    }

The store comes from the authors' obj36 TSV (``python -m training.data.convert``) or from ``python -m
training.extract``. Its object and attribute ids name Visual Genome's 1600 objects and 400 attributes
(``assets/vg/``) unless the manifest names other vocabularies (a store extracted with another detector: that
detector's ``objects_vocab.txt`` and ``attributes_vocab.txt``).

Every path is relative to the dataset's directory and must stay inside it once symlinks are resolved, the files of
the feature store included: a manifest is untrusted input and cannot point a reader at other files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxmert.data.task_files import FINETUNE_TASKS, load_task
from lxmert.detection.files import ATTRIBUTES_FILE, OBJECTS_FILE, VG_VOCAB_DIR, read_vocab
from lxmert.errors import UnreadableFileError
from lxmert.manifests import manifest_path, read_manifest

DATASET_FILE = "dataset.json"
FORMAT_NAME = "lxmert-dataset"
FORMAT_VERSION = 1
TASKS = FINETUNE_TASKS  # what a manifest's "task" may name
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_PATH_FIELDS = ("images", "features", "questions", "objects_vocab", "attributes_vocab")
_FIELDS = {"task", *_PATH_FIELDS}


class DatasetError(UnreadableFileError):
    """A ``dataset.json`` that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Dataset:
    """An images folder, its feature store and optionally a question file, with every path resolved.

    Attributes:
        root: the dataset's directory, resolved.
        name: how the app names it.
        images: the folder of photos.
        features: the feature store's directory.
        questions: the task file, or None.
        task: the question file's task (``vqa``, ``gqa``, ``nlvr2``), or None without questions.
        objects_vocab: the object names file.
        attributes_vocab: the attribute names file.
    """

    root: Path
    name: str
    images: Path
    features: Path
    questions: Path | None = None
    task: str | None = None
    objects_vocab: Path = VG_VOCAB_DIR / OBJECTS_FILE
    attributes_vocab: Path = VG_VOCAB_DIR / ATTRIBUTES_FILE


def _check_store_files(store: Path, root: Path, manifest: Path) -> None:
    """Every entry of the store directory must stay inside the dataset once resolved (the store opens its files
    by name, so one symlinked file would read from elsewhere)."""
    if not store.is_dir():
        raise DatasetError(manifest, f"features {store} is not a directory")
    with os.scandir(store) as entries:
        for entry in entries:
            target = Path(entry.path).resolve()
            if not target.is_relative_to(root):
                raise DatasetError(manifest, f"features: {entry.name} leads outside {root} (to {target})")


def read_dataset(directory: str | Path) -> Dataset:
    """The dataset described by ``directory/dataset.json``.

    Raises:
        DatasetError: the manifest is missing or not a JSON object, is of another format or version, has an
            unknown field or a field of the wrong type, names a task without questions (or questions without a
            task), or a path that is absent or leads outside the directory; the message names the field.
    """
    root = Path(directory).resolve()
    manifest = root / DATASET_FILE
    values, name = read_manifest(manifest, FORMAT_NAME, FORMAT_VERSION, _FIELDS, DatasetError)
    for required in ("images", "features"):
        if required not in values:
            raise DatasetError(manifest, f"lacks the field {required!r}")
    if ("questions" in values) != ("task" in values):
        raise DatasetError(manifest, "questions and task go together: give both or neither")
    task = values.get("task")
    if task is not None and task not in TASKS:
        raise DatasetError(manifest, f"task must be one of {TASKS}, got {task!r}")
    paths = {
        field_: manifest_path(manifest, values[field_], field_, DatasetError)
        for field_ in _PATH_FIELDS
        if field_ in values
    }
    for field_, path in paths.items():
        if not path.exists():
            raise DatasetError(manifest, f"{field_} {values[field_]!r} does not exist")
    if not paths["images"].is_dir():
        raise DatasetError(manifest, f"images {values['images']!r} is not a directory")
    _check_store_files(paths["features"], root, manifest)
    return Dataset(root=root, name=name, task=task, **paths)


def image_file(dataset: Dataset, img_id: str) -> Path:
    """The photo of ``img_id``: ``<images>/<img_id>`` with the first of ``IMAGE_SUFFIXES`` that exists, resolved
    and inside the dataset.

    Raises:
        FileNotFoundError: no such photo inside the dataset (the message names the id and the folder).
    """
    for suffix in IMAGE_SUFFIXES:
        candidate = (dataset.images / f"{img_id}{suffix}").resolve()
        if candidate.is_relative_to(dataset.root) and candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no photo for image {img_id!r} in {dataset.images} (tried {', '.join(IMAGE_SUFFIXES)}, inside the dataset)"
    )


def load_questions(dataset: Dataset) -> list[dict[str, Any]]:
    """The dataset's questions, checked as its task's file (:func:`lxmert.data.task_files.load_task`); [] when it
    has none."""
    if dataset.questions is None or dataset.task is None:
        return []
    return load_task(dataset.questions, dataset.task)


def image_ids_of(item: dict[str, Any], task: str) -> tuple[str, ...]:
    """The images a question is about: VQA and GQA ``img_id``; NLVR2 its pair ``img0``, ``img1``."""
    return (item["img0"], item["img1"]) if task == "nlvr2" else (item["img_id"],)


def questions_by_image(items: Sequence[dict[str, Any]], task: str) -> dict[str, list[dict[str, Any]]]:
    """Image id → the questions about it, in file order (an NLVR2 statement is listed under both its images)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        for img_id in dict.fromkeys(image_ids_of(item, task)):
            grouped.setdefault(img_id, []).append(item)
    return grouped


def vocabularies(dataset: Dataset) -> tuple[list[str], list[str]]:
    """The names of the stored object ids and attribute ids (Visual Genome's unless the manifest names others)."""
    return read_vocab(dataset.objects_vocab), read_vocab(dataset.attributes_vocab)


__all__ = [
    "DATASET_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_SUFFIXES",
    "TASKS",
    "Dataset",
    "DatasetError",
    "image_file",
    "image_ids_of",
    "load_questions",
    "questions_by_image",
    "read_dataset",
    "vocabularies",
]

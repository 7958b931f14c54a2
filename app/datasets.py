"""Datasets the app finds under its datasets directory, opened once per process, and the scenes their stores hold.

A dataset (:mod:`lxmert.data.dataset`) is a directory with ``dataset.json``: photos, the feature store of their
regions, and optionally a question file. In dataset mode the stored regions, the authors' boxes with their Visual
Genome labels and features, stand in for the detector: :func:`stored_scene` builds the same :class:`Scene` that
``loading.detect`` builds from a photo, so every page reads them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image

from app.directories import MAX_ENTRIES, describe_skipped, scanner
from app.loading import DISPLAY_SIDE, Scene, preview
from lxmert.data.dataset import (
    DATASET_FILE,
    Dataset,
    DatasetError,
    image_file,
    load_questions,
    questions_by_image,
    read_dataset,
    vocabularies,
)
from lxmert.data.store import FeatureStore
from lxmert.detection import Regions, load_image

# How deep below the datasets directory a dataset may lie (datasets/coco/train2014 is two levels).
SEARCH_DEPTH = 2
# Photos whose aspect ratio differs from the one the store records by more than this are not the photos the boxes
# were found on (a uniformly rescaled copy is fine: boxes are scaled onto the photo).
ASPECT_TOLERANCE = 0.01
THUMBNAIL_SIDE = 160


@dataclass(frozen=True)
class DatasetScan:
    """What a scan of the datasets directory found.

    Attributes:
        found: dataset name (its path below the scanned directory) → its resolved directory.
        problems: one line per dataset that cannot be used and per entry the scan skipped, with the reason.
    """

    found: dict[str, str]
    problems: tuple[str, ...] = ()


@st.cache_data(ttl=60, show_spinner=False)
def find_datasets(root: str, depth: int = SEARCH_DEPTH, max_entries: int = MAX_ENTRIES) -> DatasetScan:
    """Directories at most ``depth`` levels below ``root`` (``root`` included) holding a readable ``dataset.json``,
    staying inside ``root`` (``app/directories.py``). Re-scanned at most once a minute."""
    scan = scanner(root, max_entries)
    if scan is None:
        return DatasetScan({})
    found: dict[str, str] = {}
    problems: list[str] = []
    frontier = [("", scan.root)]
    for level in range(depth + 1):
        next_frontier = []
        for name, directory in frontier:
            listing = scan.listing(directory)
            if any(e.name == DATASET_FILE and not e.is_dir for e in listing.entries):
                try:
                    read_dataset(directory)
                    found[name or scan.root.name] = str(directory)
                except DatasetError as err:
                    problems.append(str(err))
            for entry in listing.entries if level < depth else ():
                if entry.is_dir and not entry.name.startswith("."):
                    next_frontier.append((f"{name}/{entry.name}" if name else entry.name, entry.path))
        frontier = next_frontier
    if scan.skipped:
        problems.append(describe_skipped(list(scan.skipped), [scan.root]))
    if scan.truncated:
        problems.append(
            f"The search of {root} stopped after {max_entries} entries: datasets beyond are not listed."
        )
    return DatasetScan(dict(sorted(found.items())), tuple(problems))


@dataclass
class OpenedDataset:
    """A dataset with its store open and its questions read.

    Attributes:
        dataset: the manifest's contents.
        store: its feature store.
        questions: image id → the questions about it (empty without a question file).
        object_names: the names of the stored object ids.
        attr_names: the names of the stored attribute ids.
    """

    dataset: Dataset
    store: FeatureStore
    questions: dict[str, list[dict[str, Any]]]
    object_names: list[str]
    attr_names: list[str]


@st.cache_resource(show_spinner="Opening the dataset…", max_entries=4)
def open_dataset(root: str) -> OpenedDataset:
    """The dataset at ``root``, its store opened and its question file read once per process.

    Raises:
        DatasetError, ValueError, OSError: the manifest, the store, the question file or a vocabulary cannot be
            used; the message names the file.
    """
    dataset = read_dataset(root)
    questions = load_questions(dataset)
    objects, attributes = vocabularies(dataset)
    return OpenedDataset(
        dataset,
        FeatureStore(dataset.features),
        questions_by_image(questions, dataset.task) if dataset.task else {},
        objects,
        attributes,
    )


def region_count(root: str, img_id: str) -> int | None:
    """How many regions the store holds for the image (the most the model can see of it), or None where the
    dataset cannot say (the page then says what is wrong)."""
    try:
        return int(open_dataset(root).store.get(img_id)["num_boxes"])
    except (KeyError, ValueError, OSError):
        return None


def photo_bytes(root: str, img_id: str) -> bytes:
    """The bytes of the image's photo (FileNotFoundError when the dataset has none inside it)."""
    return image_file(open_dataset(root).dataset, img_id).read_bytes()


@st.cache_data(show_spinner=False, max_entries=64)
def _stored_scene(root: str, img_id: str) -> Scene:
    opened = open_dataset(root)
    row = opened.store.get(img_id)
    regions = Regions.from_record(row, len(opened.attr_names))
    unknown = [int(i) for i in row["objects_id"] if not 0 <= i < len(opened.object_names)]
    if unknown:
        raise ValueError(
            f"image {img_id}: object ids {sorted(set(unknown))[:5]} outside the {len(opened.object_names)} names "
            f"of {opened.dataset.objects_vocab}"
        )
    loaded = load_image(photo_bytes(root, img_id), name=img_id, max_side=DISPLAY_SIDE)
    width, height = loaded.original_size
    stored_aspect = row["img_w"] / row["img_h"]
    if abs(width / height - stored_aspect) > ASPECT_TOLERANCE * stored_aspect:
        raise ValueError(
            f"image {img_id}: the photo is {width}x{height} but the feature store records "
            f"{row['img_w']}x{row['img_h']}: its boxes were not found on this photo"
        )
    return Scene(preview(loaded, DISPLAY_SIDE), regions, opened.object_names, opened.attr_names)


def stored_scene(root: str, img_id: str, num_regions: int | None) -> Scene:
    """The image's photo and its stored regions (the ``num_regions`` first of them; None: all), as a scene.

    Boxes stay in the pixels the store records (the photo the features were extracted from); the scene's
    ``image_boxes`` maps them onto the photo shown.

    Raises:
        KeyError: the image is not in the store.
        FileNotFoundError: the dataset has no photo of it.
        ValueError: the photo's shape differs from the one recorded, or the store's ids fall outside the
            vocabularies.
    """
    scene = _stored_scene(root, img_id)
    if num_regions is None:
        return scene
    return Scene(scene.image, scene.regions.first(num_regions), scene.object_names, scene.attr_names)


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(root: str, img_id: str) -> Image.Image | None:
    """A small copy of the image's photo, or None where it cannot be read (the picker then names it only)."""
    try:
        return preview(
            load_image(photo_bytes(root, img_id), name=img_id, max_side=DISPLAY_SIDE), THUMBNAIL_SIDE
        )
    except (OSError, ValueError):
        return None


__all__ = [
    "DatasetScan",
    "OpenedDataset",
    "find_datasets",
    "open_dataset",
    "photo_bytes",
    "region_count",
    "stored_scene",
    "thumbnail",
]

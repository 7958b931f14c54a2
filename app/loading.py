"""Models loaded once per process, images decoded and detected once per input: the app's caches.

``st.cache_resource`` holds the detector and every checkpoint (shared by all sessions, never modified: the
analysis tools switch modes and masks inside context managers that restore them), and the last few decoded
images. ``st.cache_data`` holds what is computed from them: the regions of an image and, in ``app/results.py``,
every analysis result. Cached functions take only plain keys (paths, image bytes, counts), so two visitors asking
the same thing share one computation.

An image's bytes are decoded once (:func:`decoded_image`, under the detector's limits), for the sidebar's
preview and the detector alike; what stays cached with its regions is a copy of at most ``DISPLAY_SIDE`` pixels,
and boxes stay in the original image's pixels (:attr:`Scene.image_boxes` maps them onto the copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st
import torch
from PIL import Image

from analysis.capabilities import Capabilities, capabilities_of
from analysis.inputs import Example, example_from_regions
from app.directories import MAX_ENTRIES, Skipped, inside, scanner
from lxmert.checkpoints import (
    CONFIG_FILE,
    TORCH_WEIGHTS_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    outline_checkpoint,
)
from lxmert.detection import DetectorConfig, ImageError, LoadedImage, Regions
from lxmert.detection.files import (
    ATTRIBUTES_FILE,
    OBJECTS_FILE,
    load_cached_regions,
    read_attribute_kinds,
    read_detector_config,
    read_vocab,
)
from lxmert.detection.images import load_detector_image
from lxmert.errors import UnreadableFileError
from lxmert.hub_cache import is_repo_id, resolve_checkpoint_path
from lxmert.model_set_checks import checkpoint_problem
from lxmert.model_sets import MODEL_SET_FILE, CheckpointEntry
from lxmert.tokenization import VOCAB_FILE, LxmertTokenizer

if TYPE_CHECKING:
    from lxmert.detection import Detector

# How deep below a checkpoints directory a checkpoint may lie (runs/<name>/best is two levels).
SEARCH_DEPTH = 3
# The longer side of the image kept with its regions for drawing; figures are never shown larger.
DISPLAY_SIDE = 1024
# How many values of one attribute kind a region's hover lists.
ATTRIBUTES_SHOWN = 4


@dataclass
class Checkpoint:
    """A loaded checkpoint with what the app needs to use it.

    Attributes:
        name: how the app lists it (its path below the directory it was found in).
        path: its directory or file (for a hub id, its snapshot in the local hub cache).
        model: the model in eval mode, on the app's device. Never modified after loading.
        tokenizer: the checkpoint's own tokenizer (``vocab.txt``).
        answers: the QA head's answers in label order, or None.
        meta: ``meta.json`` (recipe, scores), empty when absent.
        capabilities: which heads it has.
        source: its files: the checkpoint, and the vocabulary and answer table given for it, if any.
    """

    name: str
    path: Path
    model: torch.nn.Module
    tokenizer: LxmertTokenizer
    answers: list[str] | None
    meta: dict = field(default_factory=dict)
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(False, False, False, False))
    source: CheckpointEntry | None = None

    @property
    def files(self) -> tuple[str, str | None, str | None]:
        """The checkpoint, its given vocabulary and its given answer table, as :func:`load_model` takes them."""
        if self.source is None:
            return str(self.path), None, None
        return entry_files(self.source)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def entry_files(entry: CheckpointEntry) -> tuple[str, str | None, str | None]:
    """A set's checkpoint as :func:`load_model` and :func:`problem` take it: plain strings, the cache keys (its
    path, or its hub id)."""
    return entry.location, _text(entry.vocab), _text(entry.answers)


def _entry(location: str, vocab: str | None, answers: str | None) -> CheckpointEntry:
    """The entry :func:`entry_files` gave ``location`` for: a set's paths are absolute, so never a hub id."""
    where = {"hub": location} if is_repo_id(location) else {"path": Path(location)}
    return CheckpointEntry(**where, vocab=_path(vocab), answers=_path(answers))


def holds_checkpoint(file_names: set[str]) -> bool:
    """Whether a directory's files are a checkpoint with a tokenizer: ours, or transformers' with
    ``pytorch_model.bin`` (a saved detector has our two files too, plus vocabs)."""
    return (
        {CONFIG_FILE, VOCAB_FILE} <= file_names
        and bool({WEIGHTS_FILE, TORCH_WEIGHTS_FILE} & file_names)
        and OBJECTS_FILE not in file_names
    )


@dataclass(frozen=True)
class CheckpointScan:
    """What a scan of a checkpoints directory found, and what it skipped.

    Attributes:
        found: checkpoint name (its path below the scanned directory) → its resolved directory.
        skipped: entries not used (unreadable, or leading outside the directory), with the reason.
        truncated: whether the scan stopped at its entry budget, so that checkpoints beyond it are missing.
        sets: model set name (its path below the scanned directory) → its resolved directory, which holds a
            ``model_set.json``.
    """

    found: dict[str, str]
    skipped: tuple[Skipped, ...] = ()
    truncated: bool = False
    sets: dict[str, str] = field(default_factory=dict)


@st.cache_data(ttl=60, show_spinner=False)
def find_checkpoints(
    root: str, depth: int = SEARCH_DEPTH, max_entries: int = MAX_ENTRIES, within: str | None = None
) -> CheckpointScan:
    """Checkpoint directories, and model set directories, at most ``depth`` levels below ``root`` that stay inside
    it (see ``app/directories.py``).

    A checkpoint is listed only when every entry of its directory is readable and inside ``root``, since loading
    it opens its files by name. Re-scanned at most once a minute, so checkpoints written while the app runs appear
    without a restart.

    Args:
        root: the directory to search.
        depth: how many levels below ``root`` to look.
        max_entries: how many entries the scan visits at most.
        within: a directory ``root`` itself must lie inside, once resolved.
    """
    scan = scanner(root, max_entries)
    if scan is None:
        return CheckpointScan({})
    if within is not None and not inside(scan.root, within):
        return CheckpointScan({}, (Skipped(root, f"leads outside {within} (to {scan.root})"),))
    found: dict[str, str] = {}
    sets: dict[str, str] = {}
    seen = {scan.root}
    frontier = [("", scan.root)]
    for level in range(depth + 1):
        next_frontier = []
        for name, directory in frontier:
            listing = scan.listing(directory)
            files = {e.name for e in listing.entries if not e.is_dir}
            if MODEL_SET_FILE in files:
                sets[name or scan.root.name] = str(directory)
            if holds_checkpoint(files):
                if listing.complete:
                    found[name or scan.root.name] = str(directory)
                elif not scan.truncated:
                    scan.skipped.append(Skipped(str(directory), "a checkpoint holding unusable entries"))
            for entry in listing.entries if level < depth else ():
                if entry.is_dir and not entry.name.startswith(".") and entry.path not in seen:
                    seen.add(entry.path)
                    next_frontier.append((f"{name}/{entry.name}" if name else entry.name, entry.path))
        frontier = next_frontier
    return CheckpointScan(
        dict(sorted(found.items())), tuple(scan.skipped), scan.truncated, dict(sorted(sets.items()))
    )


@st.cache_resource(show_spinner="Loading the detector…", max_entries=4)
def load_detector(path: str, device: str) -> Detector:
    """The saved detector at ``path`` on ``device`` (raises FileNotFoundError naming a missing file)."""
    from lxmert.detection import Detector  # torchvision: imported only once an image needs detecting

    return Detector.from_pretrained(path, device=device)


@st.cache_data(show_spinner=False, max_entries=4)
def detector_config(path: str) -> DetectorConfig:
    """The config of the saved detector at ``path``, read without building it (FileNotFoundError names a missing
    file, ValueError a bad config)."""
    return read_detector_config(path)


@st.cache_data(ttl=60, show_spinner=False, max_entries=256)
def problem(path: str, vocab: str | None, answers: str | None, feature_dim: int) -> str | None:
    """Why the checkpoint cannot run on a detector of ``feature_dim``-d features, or None (read from its headers,
    never its weights; re-read at most once a minute)."""
    return checkpoint_problem(_entry(path, vocab, answers), feature_dim)


@st.cache_data(ttl=60, show_spinner=False, max_entries=256)
def heads(path: str, vocab: str | None, answers: str | None) -> frozenset[str] | None:
    """The heads the checkpoint's file holds (``lxmert.checkpoints.HEADS``), read from its headers, never its
    weights; None when they cannot be read (loading it then says why)."""
    try:
        return outline_checkpoint(path, vocab=vocab, answers=answers).heads
    except (UnreadableFileError, OSError):
        return None


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=8)
def load_model(
    path: str, name: str, device: str, vocab: str | None = None, answers: str | None = None
) -> Checkpoint:
    """The checkpoint at ``path`` with its tokenizer, answers and notes, on ``device``; ``vocab`` and ``answers``
    name the files of a checkpoint that lacks its own (see :func:`lxmert.checkpoints.load_checkpoint`)."""
    loaded = load_checkpoint(path, vocab=vocab, answers=answers)
    if loaded.tokenizer is None:
        raise FileNotFoundError(f"{path} has no {VOCAB_FILE}: the app needs the checkpoint's tokenizer")
    model = loaded.model.to(device).eval()
    return Checkpoint(
        name=name,
        path=resolve_checkpoint_path(path),  # a hub id: its snapshot in the cache
        model=model,
        tokenizer=loaded.tokenizer,
        answers=None if loaded.answers is None else list(loaded.answers.label2ans),
        meta=loaded.meta,
        capabilities=capabilities_of(model),
        source=_entry(path, vocab, answers),
    )


# ---------------------------------------------------------------------------------------------------------------
# Images and regions
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """One image and its detected regions, cut to the number the visitor chose.

    Attributes:
        image: the upright RGB image for drawing, at most ``DISPLAY_SIDE`` pixels on its longer side.
        regions: the detector's regions (CPU tensors), best first, boxes in the original image's pixels.
        object_names: the detector's object vocabulary.
        attr_names: the detector's attribute vocabulary.
        attr_kinds: the detector's attributes by kind (``{"colour": [...], ...}``), empty when it has none.
    """

    image: Image.Image
    regions: Regions
    object_names: list[str]
    attr_names: list[str]
    attr_kinds: dict[str, list[str]] = field(default_factory=dict)

    @property
    def image_boxes(self) -> np.ndarray:
        """(R, 4) boxes in the pixels of :attr:`image` (the regions' boxes are in the original's)."""
        scale_x = self.image.width / self.regions.image_width
        scale_y = self.image.height / self.regions.image_height
        return self.regions.boxes.numpy() * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)

    def attribute_groups(
        self, region: int, top: int = ATTRIBUTES_SHOWN
    ) -> list[tuple[str, list[tuple[str, float]]]]:
        """One region's attributes with their probabilities, best first: per kind when the detector has kinds
        (every value of the kind, at most ``top``), else the ``top`` best of all as the one kind "attributes"."""
        probs = self.regions.attr_probs[region].tolist()
        by_name = dict(zip(self.attr_names, probs, strict=True))
        kinds = self.attr_kinds or {"attributes": self.attr_names}
        return [
            (kind, sorted(((n, by_name[n]) for n in names), key=lambda pair: -pair[1])[:top])
            for kind, names in kinds.items()
        ]

    @property
    def labels(self) -> list[str]:
        """Per region, ``"index attributes object"``, as every figure and selector shows it: the best attribute
        of each kind when the detector has kinds (``"3 large blue striped star"``), else the best one."""
        objects = [self.object_names[i] for i in self.regions.object_ids.tolist()]
        if self.attr_kinds:
            attrs = [
                " ".join(values[0][0] for _, values in self.attribute_groups(r, 1))
                for r in range(len(self.regions))
            ]
        else:
            attrs = [self.attr_names[i] for i in self.regions.attr_ids.tolist()]
        return [f"{i} {a} {o}" for i, (a, o) in enumerate(zip(attrs, objects, strict=True))]

    @property
    def short_labels(self) -> list[str]:
        """Per region, ``"index object"``: axis labels where 36 full labels would not fit."""
        return [f"{i} {self.object_names[o]}" for i, o in enumerate(self.regions.object_ids.tolist())]


@st.cache_resource(show_spinner=False, max_entries=2)
def decoded_image(detector_path: str, data: bytes, name: str) -> LoadedImage:
    """An image's bytes decoded under the limits of the detector at ``detector_path``: upright RGB, downscaled to
    its ``max_image_side``. Kept for the preview and the detection of the current image, and never modified.

    Raises:
        ImageError: the bytes are not an image Pillow can read, or it is too large or too thin; the message names
            it (raised again on each call: Streamlit caches only returned values).
    """
    return load_detector_image(data, detector_config(detector_path), name=name)


def preview(loaded: LoadedImage, side: int) -> Image.Image:
    """A copy of the decoded image at most ``side`` pixels on its longer side."""
    small = loaded.image.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small


@st.cache_data(max_entries=64, show_spinner="Detecting regions…")
def detect(detector_path: str, device: str, image: bytes, name: str) -> Scene:
    """Decode and detect one image: every region the detector keeps (the count is cut later, see :func:`scene`).

    Regions this detector cached for these bytes (the shipped samples') are read instead of detected, so the
    first answer on a sample needs neither the detector nor torchvision.

    Raises:
        ImageError: the bytes are not a usable image (not cached: Streamlit caches only returned values).
    """
    loaded = decoded_image(detector_path, image, name)
    regions = load_cached_regions(detector_path, image)
    if regions is None:
        regions = load_detector(detector_path, device).detect([loaded])[0]
    directory = Path(detector_path)
    return Scene(
        preview(loaded, DISPLAY_SIDE),
        regions,
        read_vocab(directory / OBJECTS_FILE),
        read_vocab(directory / ATTRIBUTES_FILE),
        read_attribute_kinds(directory),
    )


def scene(detector_path: str, device: str, image: bytes, name: str, num_regions: int) -> Scene:
    """The image's scene with its ``num_regions`` best regions (detection itself is cached once per image)."""
    detected = detect(detector_path, device, image, name)
    return Scene(
        detected.image,
        detected.regions.first(num_regions),
        detected.object_names,
        detected.attr_names,
        detected.attr_kinds,
    )


def example_for(checkpoint: Checkpoint, scene: Scene, text: str, device: str) -> Example:
    """The analysis input for a checkpoint: its tokenisation of ``text`` and the scene's regions, on ``device``."""
    return example_from_regions(checkpoint.tokenizer, text, scene.regions).to(device)


__all__ = [
    "Checkpoint",
    "DISPLAY_SIDE",
    "CheckpointScan",
    "ImageError",
    "Scene",
    "decoded_image",
    "detect",
    "detector_config",
    "entry_files",
    "example_for",
    "find_checkpoints",
    "holds_checkpoint",
    "load_detector",
    "load_model",
    "preview",
    "problem",
    "scene",
]

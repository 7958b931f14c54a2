"""A saved detector's directory, read without building the network: its files, config, vocabularies, and the
regions it found in given images, cached beside it.

Building the network imports torchvision (seconds on a laptop), so whatever only needs the config or already
detected regions reads them from here. Cached regions live in ``<detector>/regions/<sha256 of the image
bytes>.safetensors`` and record the sha256 of the weights that found them: a retrained detector never serves
another detector's regions.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from lxmert.detection.config import DetectorConfig
from lxmert.detection.regions import Regions
from lxmert.fileio import atomic_write_bytes, atomic_write_text, read_json_object, read_text

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OBJECTS_FILE = "objects_vocab.txt"
ATTRIBUTES_FILE = "attributes_vocab.txt"
SAVED_FILES = (CONFIG_FILE, WEIGHTS_FILE, OBJECTS_FILE, ATTRIBUTES_FILE)
# Optional: which attributes are of one kind (colour, size, fill), {kind: [names]}; Visual Genome's have none.
ATTRIBUTE_KINDS_FILE = "attribute_kinds.json"
REGIONS_DIR = "regions"
# The 1600 objects and 400 attributes of the Visual Genome detector, whose ids the authors' obj36 files hold.
VG_VOCAB_DIR = Path(__file__).resolve().parents[2] / "assets" / "vg"
_REGION_TENSORS = ("boxes", "features", "object_ids", "object_conf", "attr_probs")
_REGION_SIZES = ("image_height", "image_width", "num_real")


def check_saved_detector(directory: str | Path) -> Path:
    """``directory`` as a Path, if it holds the four files of a saved detector.

    Raises:
        FileNotFoundError: a file is missing (the message names it).
    """
    directory = Path(directory)
    for name in SAVED_FILES:
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a saved detector: {name} is missing")
    return directory


def read_detector_config(directory: str | Path) -> DetectorConfig:
    """The config of the saved detector in ``directory`` (raises FileNotFoundError naming a missing file)."""
    return DetectorConfig.from_json_file(check_saved_detector(directory) / CONFIG_FILE)


def read_vocab(path: str | Path) -> list[str]:
    """Class names, one per line, in index order; of Visual Genome's ``a,b`` synonyms the first is the name.

    Raises:
        ValueError: naming the file, when it is not UTF-8 text.
    """
    return [line.split(",")[0].strip() for line in read_text(path).splitlines()]


def _checked_kinds(kinds: dict, directory: Path) -> dict[str, list[str]]:
    """``kinds`` if each is a list of names from the detector's attribute vocabulary, no name in two kinds."""
    path = directory / ATTRIBUTE_KINDS_FILE
    vocab = set(read_vocab(directory / ATTRIBUTES_FILE))
    seen: set[str] = set()
    for kind, names in kinds.items():
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: kind {kind!r} must list attribute names")
        unknown, twice = set(names) - vocab, seen & set(names)
        if unknown or twice:
            problem = (
                f"names {sorted(unknown)} not in {ATTRIBUTES_FILE}" if unknown else f"repeats {sorted(twice)}"
            )
            raise ValueError(f"{path}: kind {kind!r} {problem}")
        seen |= set(names)
    return {kind: list(names) for kind, names in kinds.items()}


def read_attribute_kinds(directory: str | Path) -> dict[str, list[str]]:
    """The detector's attribute kinds, ``{kind: [attribute names]}`` from ``attribute_kinds.json``, in the file's
    order; empty when the detector has none.

    Raises:
        ValueError: naming the file, when it is not an object of lists of attribute names of this detector's
            vocabulary, or names one attribute in two kinds.
    """
    directory = Path(directory)
    path = directory / ATTRIBUTE_KINDS_FILE
    return _checked_kinds(read_json_object(path), directory) if path.is_file() else {}


def write_attribute_kinds(directory: str | Path, kinds: dict[str, Sequence[str]]) -> Path:
    """Record which of a saved detector's attributes are of one kind; returns the file written.

    Raises:
        ValueError: as :func:`read_attribute_kinds` would, before anything is written.
    """
    directory = Path(directory)
    checked = _checked_kinds(kinds, directory)
    path = directory / ATTRIBUTE_KINDS_FILE
    atomic_write_text(path, json.dumps(checked, indent=1) + "\n")
    return path


def weights_digest(directory: str | Path) -> str:
    """sha256 of the detector's weights file (hashed once per file version)."""
    weights = Path(directory) / WEIGHTS_FILE
    stat = weights.stat()
    return _file_digest(str(weights.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:  # mtime and size key the cache to the version
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def cached_regions_path(directory: str | Path, image: bytes) -> Path:
    """Where the regions of the image file whose bytes are ``image`` are cached for this detector."""
    return Path(directory) / REGIONS_DIR / f"{hashlib.sha256(image).hexdigest()}.safetensors"


def save_cached_regions(directory: str | Path, image: bytes, regions: Regions) -> Path:
    """Cache ``regions``, which this detector found in the image file ``image``; returns the file written."""
    path = cached_regions_path(directory, image)
    path.parent.mkdir(exist_ok=True)
    tensors = {name: getattr(regions, name).contiguous() for name in _REGION_TENSORS}
    metadata = {name: str(getattr(regions, name)) for name in _REGION_SIZES}
    atomic_write_bytes(
        path, save(tensors, metadata={**metadata, "weights_sha256": weights_digest(directory)})
    )
    return path


def load_cached_regions(directory: str | Path, image: bytes) -> Regions | None:
    """The cached regions of the image file ``image``, or None when none were cached by these very weights.

    An unreadable cache file counts as absent: the caller detects again, which is only slower.
    """
    path = cached_regions_path(directory, image)
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            if metadata.get("weights_sha256") != weights_digest(directory):
                return None
            tensors = {name: file.get_tensor(name) for name in _REGION_TENSORS}
        return Regions(**tensors, **{name: int(metadata[name]) for name in _REGION_SIZES})
    except (OSError, SafetensorError, KeyError, ValueError):
        return None


__all__ = [
    "ATTRIBUTES_FILE",
    "ATTRIBUTE_KINDS_FILE",
    "CONFIG_FILE",
    "OBJECTS_FILE",
    "REGIONS_DIR",
    "SAVED_FILES",
    "VG_VOCAB_DIR",
    "WEIGHTS_FILE",
    "cached_regions_path",
    "check_saved_detector",
    "load_cached_regions",
    "read_attribute_kinds",
    "read_detector_config",
    "read_vocab",
    "save_cached_regions",
    "write_attribute_kinds",
    "weights_digest",
]

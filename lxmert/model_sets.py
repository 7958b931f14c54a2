"""Model sets: one detector, the LXMERT checkpoints that read its features, and the world they know.

LXMERT only means something on the features of the detector it was trained with, so the app runs on a *set*: a
directory holding ``model_set.json``::

    {
      "format": "lxmert-model-set", "version": 1,
      "name": "LXMERT (transformers' published weights)",
      "world": "real",                     # or "synthetic": what the detector and the models have seen
      "detector": "frcnn-vg-finetuned",    # a saved detector directory (lxmert.detection)
      "checkpoints": {                     # name shown in the app -> where its files are
        "vqa": {"path": "lxmert-vqa-uncased", "answers": "lxmert-vqa-uncased/trainval_label2ans.json"},
        "authors": {"path": "authors/model_LXRT.pth", "vocab": "authors/vocab.txt"},
        "gqa": {"hub": "unc-nlp/lxmert-gqa-uncased", "vocab": "lxmert-vqa-uncased/vocab.txt"}
      },
      "default": "vqa"                     # optional: the checkpoint selected first
    }

Every path is relative to the set's directory and must stay inside it once symlinks are resolved: a manifest is
untrusted input and cannot point the app at other files. ``path`` is any checkpoint ``lxmert.checkpoints`` reads (a
directory or a ``.pth`` file); ``vocab`` and ``answers`` name a ``vocab.txt`` and an answer table (a JSON list of
answers in label order, as the authors' ``trainval_label2ans.json``) for checkpoints that do not hold their own.
Instead of ``path``, ``hub`` names a Hugging Face hub repository (``owner/name``) read from the local
``huggingface_hub`` cache, as ``lxmert.load_checkpoint`` reads a hub id (:mod:`lxmert.hub_cache`): the cache is the
user's own, so it may lie outside the set, and nothing is ever downloaded. Whether the files are there (in the
cache too) and agree with each other is checked when the set is opened, not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UnreadableFileError
from .fileio import atomic_write_text
from .hub_cache import is_repo_id
from .manifests import manifest_path, read_manifest

MODEL_SET_FILE = "model_set.json"
FORMAT_NAME = "lxmert-model-set"
FORMAT_VERSION = 1
WORLDS = ("real", "synthetic")
_ENTRY_FIELDS = ("path", "vocab", "answers")  # paths inside the set
_SOURCE_FIELDS = ("path", "hub")  # where the checkpoint is: exactly one of them


class ModelSetError(UnreadableFileError):
    """A ``model_set.json`` that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint of a set, its paths resolved.

    Attributes:
        path: the checkpoint (a directory or a file), or None for a hub checkpoint.
        vocab: a ``vocab.txt`` for a checkpoint without one, or None.
        answers: an answer table for a checkpoint without one, or None.
        hub: the hub id (``owner/name``) of a checkpoint read from the local hub cache, or None.
    """

    path: Path | None = None
    vocab: Path | None = None
    answers: Path | None = None
    hub: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hub is None):
            raise ValueError(
                f"a checkpoint is either a path or a hub id, got path {self.path}, hub {self.hub}"
            )

    @property
    def location(self) -> str:
        """What ``lxmert.load_checkpoint`` takes: the hub id, or the path."""
        return self.hub if self.hub is not None else str(self.path)


@dataclass(frozen=True)
class ModelSet:
    """A detector and the checkpoints that read its features.

    Attributes:
        root: the set's directory, resolved.
        name: how the app names the set.
        world: ``"real"`` (photos) or ``"synthetic"`` (our synthetic world only).
        detector: the saved detector's directory.
        checkpoints: name → entry, in the manifest's order.
        default: the checkpoint selected first (the first one when the manifest names none).
    """

    root: Path
    name: str
    world: str
    detector: Path
    checkpoints: dict[str, CheckpointEntry] = field(default_factory=dict)
    default: str | None = None


def read_model_set(directory: str | Path) -> ModelSet:
    """The set described by ``directory/model_set.json``.

    Raises:
        ModelSetError: the manifest is missing, not a JSON object, of another format or version, lacks a field,
            has a field of the wrong type, or a path that leads outside the directory; the message names the field.
    """
    root = Path(directory).resolve()
    manifest = root / MODEL_SET_FILE
    values, name = read_manifest(
        manifest, FORMAT_NAME, FORMAT_VERSION, ("world", "detector", "checkpoints", "default"), ModelSetError
    )
    world = values.get("world")
    if world not in WORLDS:
        raise ModelSetError(manifest, f"world must be one of {WORLDS}, got {world!r}")
    detector = manifest_path(manifest, values.get("detector"), "detector", ModelSetError)
    entries = values.get("checkpoints")
    if not isinstance(entries, dict) or not entries:
        raise ModelSetError(
            manifest, "checkpoints must be a non-empty object: name -> {path or hub, vocab?, answers?}"
        )
    checkpoints = {}
    for key, entry in entries.items():
        where = f"checkpoints[{key!r}]"
        if not isinstance(entry, dict) or len(set(entry) & set(_SOURCE_FIELDS)) != 1:
            raise ModelSetError(manifest, f"{where} must be an object with a path or a hub id, got {entry!r}")
        unknown = set(entry) - {*_ENTRY_FIELDS, *_SOURCE_FIELDS}
        if unknown:
            raise ModelSetError(manifest, f"{where} has unknown fields {sorted(unknown)}")
        hub = entry.get("hub")
        if hub is not None and not is_repo_id(hub):
            raise ModelSetError(manifest, f"{where}.hub must be a hub id (owner/name), got {hub!r}")
        paths = {
            f: manifest_path(manifest, entry[f], f"{where}.{f}", ModelSetError)
            for f in _ENTRY_FIELDS
            if f in entry
        }
        checkpoints[key] = CheckpointEntry(**paths, hub=hub)
    default = values.get("default", next(iter(checkpoints)))
    if default not in checkpoints:
        raise ModelSetError(
            manifest, f"default {default!r} is not one of the checkpoints {list(checkpoints)}"
        )
    return ModelSet(root, name, world, detector, checkpoints, default)


def _relative(root: Path, path: Path) -> str:
    return Path(path).resolve().relative_to(root).as_posix()


def _entry_values(root: Path, entry: CheckpointEntry) -> dict[str, str]:
    paths = {f: _relative(root, getattr(entry, f)) for f in _ENTRY_FIELDS if getattr(entry, f) is not None}
    return paths if entry.hub is None else {"hub": entry.hub, **paths}


def write_model_set(model_set: ModelSet) -> Path:
    """Write ``model_set.json`` into ``model_set.root`` (atomically) and return its path.

    Raises:
        ValueError: a path of the set lies outside its root, or its world is unknown.
    """
    root = Path(model_set.root).resolve()
    if model_set.world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {model_set.world!r}")
    checkpoints = {name: _entry_values(root, entry) for name, entry in model_set.checkpoints.items()}
    values = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": model_set.name,
        "world": model_set.world,
        "detector": _relative(root, model_set.detector),
        "checkpoints": checkpoints,
        "default": model_set.default or next(iter(checkpoints)),
    }
    path = root / MODEL_SET_FILE
    atomic_write_text(path, json.dumps(values, indent=2) + "\n")
    return path


__all__ = [
    "MODEL_SET_FILE",
    "WORLDS",
    "CheckpointEntry",
    "ModelSet",
    "ModelSetError",
    "read_model_set",
    "write_model_set",
]

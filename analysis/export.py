"""Reproducible export of an example's attention (and any further per-example arrays) as JSON or NPZ.

Both formats carry the checkpoint id, the tokens, the boxes (pixels and normalised), the image size, a hash of the
region features, and the settings that produced the numbers. Files are written to a temporary name and renamed, so
a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lxmert.fileio import atomic_write_bytes, atomic_write_text, read_json_object

from .attention import AttentionMaps, HeadStats
from .inputs import Example

FORMAT = "lxmert-analysis-attention"
VERSION = 1


def export_metadata(
    example: Example,
    checkpoint_id: str,
    settings: Mapping[str, Any] | None = None,
    edits: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """What identifies an export: format, checkpoint, input (tokens, boxes, feature hash), settings, and the edits
    (``analysis.edits.Edit.to_dict`` records, in order) that made the input from the image's, if any."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint": checkpoint_id,
        "settings": dict(settings or {}),
        "tokens": list(example.tokens),
        "input_ids": example.input_ids.tolist(),
        "boxes": example.boxes.tolist(),
        "normalized_boxes": example.visual_pos.tolist(),
        "image_size": list(example.image_size) if example.image_size else None,
        "object_ids": None if example.object_ids is None else example.object_ids.tolist(),
        "attr_ids": None if example.attr_ids is None else example.attr_ids.tolist(),
        "feature_hash": example.feature_hash(),
        "edits": [dict(edit) for edit in edits],
    }


def _stats_arrays(stats: HeadStats | None) -> dict[str, np.ndarray]:
    if stats is None:
        return {}
    arrays = {}
    for stat in (
        "entropy",
        "normalized_entropy",
        "max_weight",
        "cls_mass",
        "sep_mass",
        "other_modality_share",
    ):
        for family, value in getattr(stats, stat).items():
            arrays[f"head_stats/{stat}/{family}"] = value
    return arrays


def _arrays(
    maps: AttentionMaps, stats: HeadStats | None, extra: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    arrays = {f"attention/{family}": value for family, value in maps.maps.items()}
    arrays.update(_stats_arrays(stats))
    for name, value in (extra or {}).items():
        arrays[f"extra/{name}"] = np.asarray(value)
    return arrays


def _json_safe(value: np.ndarray) -> Any:
    """Nested lists with NaN as null (JSON has no NaN)."""
    array = np.asarray(value, dtype=np.float64)
    return np.where(np.isnan(array), None, array).tolist()


def export_json(
    path: str | Path,
    example: Example,
    maps: AttentionMaps,
    checkpoint_id: str,
    settings: Mapping[str, Any] | None = None,
    stats: HeadStats | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    edits: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the metadata and every array (attention per family, head statistics, ``extra``) as one JSON object.

    Arrays are nested lists under ``arrays``, keyed ``attention/<family>``, ``head_stats/<stat>/<family>`` and
    ``extra/<name>``.
    """
    payload = export_metadata(example, checkpoint_id, settings, edits)
    payload["arrays"] = {name: _json_safe(value) for name, value in _arrays(maps, stats, extra).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload) + "\n")
    return path


def export_npz(
    path: str | Path,
    example: Example,
    maps: AttentionMaps,
    checkpoint_id: str,
    settings: Mapping[str, Any] | None = None,
    stats: HeadStats | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    edits: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the arrays as a compressed NPZ, the metadata as JSON in its ``metadata`` entry."""
    arrays = _arrays(maps, stats, extra)
    arrays["metadata"] = np.array(json.dumps(export_metadata(example, checkpoint_id, settings, edits)))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_export(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a JSON or NPZ export back: (metadata, arrays)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            metadata = json.loads(str(data["metadata"]))
            arrays = {name: data[name] for name in data.files if name != "metadata"}
    else:
        metadata = read_json_object(path)
        arrays = {
            name: np.array(value, dtype=np.float64) for name, value in metadata.pop("arrays").items()
        }  # null → NaN
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not an {FORMAT} export")
    return metadata, arrays


__all__ = ["FORMAT", "VERSION", "export_json", "export_metadata", "export_npz", "read_export"]

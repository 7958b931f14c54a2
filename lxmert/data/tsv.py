"""The obj36 image-feature TSV of the LXMERT ecosystem, read and written as a stream.

Format (AL ``src/utils.py`` and the Caffe extractors ``data/*_imgfeat/extract_*_image.py``): tab-separated, no
header, ``\\r\\n`` line ends (``csv.DictWriter``'s default), one image per line with the columns ``FIELDNAMES``.
Scalars are decimal text; array columns are the base64 of the raw little-endian numpy buffer: ``objects_id`` and
``attrs_id`` int64 (R,), ``objects_conf`` and ``attrs_conf`` float32 (R,), ``boxes`` float32 (R, 4) absolute pixel
``x1, y1, x2, y2``, ``features`` float32 (R, D). A feature line of 36×2048 floats is ~400 KB of base64, beyond
``csv``'s default field limit, hence ``csv.field_size_limit``.

Rows are plain dicts keyed by the column names, the same keys that ``FeatureStore.get`` returns.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lxmert.fileio import atomic_file

FIELDNAMES = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)
SCALAR_COLUMNS = ("img_h", "img_w", "num_boxes")
# (column, dtype, trailing shape); the leading dimension is num_boxes, -1 is inferred (the feature size).
ARRAY_COLUMNS = (
    ("objects_id", np.int64, ()),
    ("objects_conf", np.float32, ()),
    ("attrs_id", np.int64, ()),
    ("attrs_conf", np.float32, ()),
    ("boxes", np.float32, (4,)),
    ("features", np.float32, (-1,)),
)


def _raise_field_limit() -> None:
    limit = sys.maxsize
    while True:  # sys.maxsize overflows a C long on some platforms
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def decode_row(fields: dict[str, str], where: str = "row") -> dict[str, Any]:
    """Turn one TSV row of strings into typed values; ``where`` names the row in error messages."""
    missing = [name for name in FIELDNAMES if fields.get(name) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing or empty columns {missing}")
    row: dict[str, Any] = {"img_id": fields["img_id"]}
    for name in SCALAR_COLUMNS:
        try:
            row[name] = int(fields[name])
        except ValueError:
            raise ValueError(f"{where}: column {name!r} is not an integer: {fields[name][:40]!r}") from None
    num_boxes = row["num_boxes"]
    if num_boxes <= 0:
        raise ValueError(f"{where}: num_boxes must be positive, got {num_boxes}")
    for name, dtype, trailing in ARRAY_COLUMNS:
        flat = np.frombuffer(base64.b64decode(fields[name]), dtype=dtype)
        per_box = flat.size // num_boxes if trailing == (-1,) else int(np.prod(trailing))
        if per_box == 0 or flat.size != num_boxes * per_box:
            raise ValueError(
                f"{where}: column {name!r} has {flat.size} values, which does not fit {num_boxes} boxes"
            )
        array = flat.reshape((num_boxes, *trailing))
        array.setflags(write=False)
        row[name] = array
    return row


def encode_row(row: dict[str, Any]) -> dict[str, str]:
    """Turn a row of arrays into the TSV strings (dtypes forced to the format's, so int32 ids are widened)."""
    fields = {"img_id": str(row["img_id"])}
    for name in SCALAR_COLUMNS:
        fields[name] = str(int(row[name]))
    num_boxes = int(row["num_boxes"])
    for name, dtype, trailing in ARRAY_COLUMNS:
        array = np.ascontiguousarray(row[name], dtype=dtype)
        if (
            array.shape[0] != num_boxes
            or array.ndim != 1 + len(trailing)
            or (trailing == (4,) and array.shape[1] != 4)
        ):
            raise ValueError(
                f"image {fields['img_id']}: column {name!r} has shape {array.shape}, num_boxes={num_boxes}"
            )
        fields[name] = base64.b64encode(array.tobytes()).decode()
    if any(c in fields["img_id"] for c in "\t\r\n"):
        raise ValueError(f"image id {fields['img_id']!r} contains a tab or newline")
    return fields


def iter_tsv(path: str | os.PathLike, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the rows of an obj36 TSV one at a time, so a 30 GB file never has to fit in memory.

    Args:
        path: the TSV file.
        limit: stop after this many rows (the authors' ``topk``; ``--tiny`` / ``--fast``).

    Yields:
        Dicts keyed by FIELDNAMES with ints for img_h/img_w/num_boxes and read-only numpy arrays for the rest.
    """
    _raise_field_limit()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, FIELDNAMES, delimiter="\t")
        for index, fields in enumerate(reader):
            if limit is not None and index >= limit:
                return
            if None in fields:
                raise ValueError(f"{path} line {index + 1}: more than {len(FIELDNAMES)} columns")
            yield decode_row(fields, where=f"{path} line {index + 1}")


class TsvWriter:
    """Streaming writer; the file appears at ``path`` only when the ``with`` block ends without an error.

    Example:
        with TsvWriter("train_obj36.tsv") as writer:
            for row in rows:
                writer.write(row)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count = 0

    def __enter__(self) -> TsvWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = atomic_file(self.path)
        self._binary = self._file.__enter__()
        self._line = io.StringIO()
        # The authors' recipe: csv.DictWriter with a tab delimiter and its default "\r\n" line terminator.
        self._writer = csv.DictWriter(self._line, fieldnames=FIELDNAMES, delimiter="\t")
        return self

    def write(self, row: dict[str, Any]) -> None:
        self._line.seek(0)
        self._line.truncate()
        self._writer.writerow(encode_row(row))
        self._binary.write(self._line.getvalue().encode("utf-8"))
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.__exit__(exc_type, exc, tb)  # commits the file, or drops it on an error


def write_tsv(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows (dicts keyed by FIELDNAMES) to an obj36 TSV atomically; returns the number of rows."""
    with TsvWriter(path) as writer:
        for row in rows:
            writer.write(row)
    return writer.count

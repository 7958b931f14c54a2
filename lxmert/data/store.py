"""A memory-mapped feature store: random access by image id, shared by every DataLoader worker.

The authors' loader reads a whole TSV into Python lists in every worker (207 GB reported with several workers,
airsplay/lxmert#37). Here the features live in flat binary files that every process maps read-only: the pages are
the kernel's page cache, shared by all workers, and a worker's private memory does not grow with the number of
images. A store pickles as its path, so sending it to workers copies nothing.

Layout of a store directory (R = max boxes per image, D = feature size, N = images)::

    manifest.json        format version, R, D, feature dtype, committed row count and byte size of every file
    features.bin         (N, R, D) float32 (or float16)
    boxes.bin            (N, R, 4) float32, absolute pixel x1, y1, x2, y2
    objects_id.bin       (N, R) int64        objects_conf.bin  (N, R) float32
    attrs_id.bin         (N, R) int64        attrs_conf.bin    (N, R) float32
    sizes.bin            (N, 3) int64: img_h, img_w, num_boxes
    ids.txt              image ids in row order, one per line
    index_ids.npy        written by finalize(): image ids sorted (bytes); index_rows.npy gives the row of each,
    row_ids.npy          and row_ids.npy the id of each row; all three are memory-mapped too

Rows with fewer than R boxes are zero-padded; ``get`` returns only the first ``num_boxes``.

Writing is resumable: rows are appended in batches and count as written only once ``manifest.json`` (replaced
atomically) records them. Reopening a store truncates every file to the sizes the manifest records, so a crash in
the middle of a batch never leaves a half-written row marked done; ``writer.has(img_id)`` says what to skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lxmert.fileio import (
    atomic_write,
    atomic_write_text,
    durable_append,
    read_json_object,
    remove_stale_temp_files,
)

FORMAT_NAME = "lxmert-feature-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IDS_FILE = "ids.txt"
INDEX_IDS, INDEX_ROWS, ROW_IDS = "index_ids.npy", "index_rows.npy", "row_ids.npy"
FEATURE_DTYPES = ("float32", "float16")
# Per-box columns other than features: name -> (dtype, trailing shape).
BOX_COLUMNS = {
    "boxes": (np.float32, (4,)),
    "objects_id": (np.int64, ()),
    "objects_conf": (np.float32, ()),
    "attrs_id": (np.int64, ()),
    "attrs_conf": (np.float32, ()),
}
SIZES_FILE = "sizes.bin"  # img_h, img_w, num_boxes per row
NORMALIZED_BOX_TOLERANCE = 1e-5  # the authors assert boxes / (w, h) lies in [0, 1] up to this


def _column_layout(num_boxes: int, feature_dim: int, feature_dtype: str) -> dict[str, tuple[np.dtype, tuple]]:
    """File name -> (dtype, shape of one row)."""
    layout = {"features.bin": (np.dtype(feature_dtype), (num_boxes, feature_dim))}
    for name, (dtype, trailing) in BOX_COLUMNS.items():
        layout[f"{name}.bin"] = (np.dtype(dtype), (num_boxes, *trailing))
    layout[SIZES_FILE] = (np.dtype(np.int64), (3,))
    return layout


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{path} is not a feature store: {MANIFEST} is missing")
    manifest = read_json_object(manifest_path)
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path}: not a {FORMAT_NAME} v{FORMAT_VERSION} manifest")
    return manifest


def committed_ids(path: str | os.PathLike) -> list[str]:
    """Ids of the rows a store's manifest records as written, in row order; [] where there is no store yet.

    Reads only: safe beside a writer of the same store, whose uncommitted tail it leaves out.

    Raises:
        ValueError: the store holds fewer ids than its manifest counts.
    """
    path = Path(path)
    if not (path / MANIFEST).exists():
        return []
    count = _read_manifest(path)["count"]
    ids = (path / IDS_FILE).read_text(encoding="utf-8").splitlines()[:count]
    if len(ids) != count:
        raise ValueError(f"feature store {path}: {len(ids)} ids for {count} committed rows")
    return ids


class FeatureStore:
    """Read-only access to a finalized store. Opens its memory maps lazily, in the process that reads.

    Args:
        path: the store directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest = _read_manifest(self.path)
        if not manifest["finalized"]:
            raise ValueError(
                f"feature store {self.path} is not finalized (an interrupted conversion?): resume it"
            )
        self.num_boxes: int = manifest["num_boxes"]
        self.feature_dim: int = manifest["feature_dim"]
        self.feature_dtype: str = manifest["feature_dtype"]
        self._count: int = manifest["count"]
        self._maps: dict[str, np.ndarray] | None = None
        self._ids: list[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers get the path and reopen the maps themselves: nothing of the data is pickled.
        return {**self.__dict__, "_maps": None, "_ids": None}

    def __len__(self) -> int:
        return self._count

    def _open(self) -> dict[str, np.ndarray]:
        if self._maps is None:
            maps = {}
            layout = _column_layout(self.num_boxes, self.feature_dim, self.feature_dtype)
            for name, (dtype, row_shape) in layout.items():
                if self._count == 0:
                    maps[name] = np.zeros((0, *row_shape), dtype)
                else:
                    maps[name] = np.memmap(self.path / name, dtype, "r", shape=(self._count, *row_shape))
            for name in (INDEX_IDS, INDEX_ROWS, ROW_IDS):
                maps[name] = np.load(self.path / name, mmap_mode="r")
            self._maps = maps
        return self._maps

    @property
    def ids(self) -> list[str]:
        """Image ids in row order (read on first use; ``get`` and ``get_row`` never need the list)."""
        if self._ids is None:
            self._ids = (self.path / IDS_FILE).read_text(encoding="utf-8").splitlines()[: self._count]
        return self._ids

    def row_of(self, img_id: str) -> int | None:
        """Row index of an image id, or None; a binary search in the memory-mapped sorted index."""
        maps = self._open()
        index_ids = maps[INDEX_IDS]
        key = str(img_id).encode("utf-8")
        if len(index_ids) == 0 or len(key) > index_ids.dtype.itemsize:
            return None
        pos = int(np.searchsorted(index_ids, np.array(key, dtype=index_ids.dtype)))
        if pos < len(index_ids) and index_ids[pos] == key:
            return int(maps[INDEX_ROWS][pos])
        return None

    def __contains__(self, img_id: object) -> bool:
        return isinstance(img_id, str) and self.row_of(img_id) is not None

    def get(self, img_id: str) -> dict[str, Any]:
        """Features of one image, keyed like a TSV row, plus ``normalized_boxes``.

        Returns:
            img_id, img_h, img_w, num_boxes (ints/str); objects_id, attrs_id int64 (R,); objects_conf, attrs_conf
            float32 (R,); boxes float32 (R, 4) pixels; features float32 (R, D); normalized_boxes float32 (R, 4),
            boxes divided by (w, h, w, h). R is this image's num_boxes. Arrays are private copies.

        Raises:
            KeyError: the id is not in the store.
            ValueError: the boxes do not lie inside the image.
        """
        row = self.row_of(img_id)
        if row is None:
            raise KeyError(f"image {img_id!r} is not in feature store {self.path}")
        return self.get_row(row)

    def get_row(self, row: int) -> dict[str, Any]:
        """Like ``get`` but by row number (0 <= row < len)."""
        if not 0 <= row < self._count:
            raise IndexError(f"row {row} out of range for a store of {self._count} images")
        maps = self._open()
        img_h, img_w, num_boxes = (int(v) for v in maps[SIZES_FILE][row])
        item: dict[str, Any] = {
            "img_id": self.ids[row],
            "img_h": img_h,
            "img_w": img_w,
            "num_boxes": num_boxes,
        }
        for name in BOX_COLUMNS:
            item[name] = np.array(maps[f"{name}.bin"][row, :num_boxes])
        item["features"] = np.array(maps["features.bin"][row, :num_boxes], dtype=np.float32)
        item["normalized_boxes"] = normalize_boxes(item["boxes"], img_h, img_w, img_id=item["img_id"])
        return item


def normalize_boxes(boxes: np.ndarray, img_h: int, img_w: int, img_id: str = "?") -> np.ndarray:
    """Pixel ``x1, y1, x2, y2`` boxes divided by ``(w, h, w, h)``; checked to lie in [0, 1] as the authors assert."""
    normalized = (boxes / np.array([img_w, img_h, img_w, img_h], dtype=np.float32)).astype(np.float32)
    tol = NORMALIZED_BOX_TOLERANCE
    if normalized.size and (normalized.min() < -tol or normalized.max() > 1 + tol):
        raise ValueError(
            f"image {img_id}: boxes outside the {img_w}x{img_h} image "
            f"(normalised range {normalized.min():.4f}..{normalized.max():.4f})"
        )
    return normalized


class FeatureStoreWriter:
    """Append images to a store; reopening an unfinished (or finished) store resumes it.

    Args:
        path: store directory (created if missing).
        num_boxes: R, the most boxes an image may have (36 for obj36 features).
        feature_dim: D (2048 for the ResNet-101 Faster R-CNN features).
        feature_dtype: "float32" (default) or "float16" (half the disk and page cache; read back as float32).
        commit_every: rows buffered before an automatic commit.

    Example:
        with FeatureStoreWriter("store", num_boxes=36, feature_dim=2048) as writer:
            for row in iter_tsv("train_obj36.tsv"):
                writer.add(row)   # skips ids already committed by an earlier, interrupted run
        # leaving the block without an error finalizes the store
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_boxes: int = 36,
        feature_dim: int = 2048,
        feature_dtype: str = "float32",
        commit_every: int = 64,
    ):
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
        if num_boxes <= 0 or feature_dim <= 0 or commit_every <= 0:
            raise ValueError("num_boxes, feature_dim and commit_every must be positive")
        self.path = Path(path)
        self.num_boxes, self.feature_dim, self.feature_dtype = num_boxes, feature_dim, feature_dtype
        self.commit_every = commit_every
        self._layout = _column_layout(num_boxes, feature_dim, feature_dtype)
        self._pending: list[dict[str, Any]] = []
        self._pending_ids: set[str] = set()
        remove_stale_temp_files(self.path)  # what an interrupted manifest or index write left
        if (self.path / MANIFEST).exists():
            self._resume()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            for name in [*self._layout, IDS_FILE]:
                (self.path / name).write_bytes(b"")
            self._count = 0
            self._ids: set[str] = set()
            self._write_manifest(finalized=False)

    def _resume(self) -> None:
        manifest = _read_manifest(self.path)
        wanted = {
            "num_boxes": self.num_boxes,
            "feature_dim": self.feature_dim,
            "feature_dtype": self.feature_dtype,
        }
        found = {key: manifest[key] for key in wanted}
        if found != wanted:
            raise ValueError(f"feature store {self.path} was created with {found}, not {wanted}")
        self._count = manifest["count"]
        # Drop whatever an interrupted run appended after its last commit.
        for name, size in manifest["sizes"].items():
            with open(self.path / name, "r+b") as f:
                f.truncate(size)
        self._ids = set(committed_ids(self.path))

    @property
    def count(self) -> int:
        """Rows committed so far."""
        return self._count

    def has(self, img_id: str) -> bool:
        """Whether this id is already written (committed, or buffered in this run)."""
        return img_id in self._ids or img_id in self._pending_ids

    def add(self, row: dict[str, Any]) -> bool:
        """Buffer one image (a dict keyed like a TSV row); returns False if its id was already written."""
        img_id = str(row["img_id"])
        if self.has(img_id):
            return False
        self._pending.append(self._padded(row, img_id))
        self._pending_ids.add(img_id)
        if len(self._pending) >= self.commit_every:
            self.commit()
        return True

    def _padded(self, row: dict[str, Any], img_id: str) -> dict[str, Any]:
        if not img_id or any(c in img_id for c in "\r\n"):
            raise ValueError(f"image id {img_id!r} is empty or contains a newline")
        n = int(row["num_boxes"])
        if not 0 < n <= self.num_boxes:
            raise ValueError(f"image {img_id}: num_boxes={n}, this store holds 1..{self.num_boxes}")
        features = np.asarray(row["features"])
        if features.shape != (n, self.feature_dim):
            raise ValueError(
                f"image {img_id}: features of shape {features.shape}, expected ({n}, {self.feature_dim})"
            )
        padded: dict[str, Any] = {"img_id": img_id}
        for file_name, (dtype, row_shape) in self._layout.items():
            if file_name == SIZES_FILE:
                padded[file_name] = np.array([row["img_h"], row["img_w"], n], dtype=dtype)
                continue
            values = np.asarray(row[file_name.removesuffix(".bin")])
            if values.shape != (n, *row_shape[1:]):
                raise ValueError(
                    f"image {img_id}: {file_name[:-4]} of shape {values.shape}, expected {(n, *row_shape[1:])}"
                )
            buffer = np.zeros(row_shape, dtype)
            buffer[:n] = values
            padded[file_name] = buffer
        return padded

    def commit(self) -> None:
        """Append the buffered rows to disk, then record them in the manifest (the atomic step)."""
        if not self._pending:
            return
        for name in self._layout:
            durable_append(self.path / name, b"".join(row[name].tobytes() for row in self._pending))
        durable_append(
            self.path / IDS_FILE, "".join(row["img_id"] + "\n" for row in self._pending).encode("utf-8")
        )
        self._count += len(self._pending)
        self._ids |= self._pending_ids
        self._pending, self._pending_ids = [], set()
        self._write_manifest(finalized=False)

    def finalize(self) -> FeatureStore:
        """Commit, write the sorted id index and mark the store readable; returns it opened."""
        self.commit()
        ids = (self.path / IDS_FILE).read_text(encoding="utf-8").splitlines()
        encoded = np.array(
            [i.encode("utf-8") for i in ids], dtype=f"S{max((len(i.encode()) for i in ids), default=1)}"
        )
        order = np.argsort(encoded, kind="stable")
        for name, array in (
            (INDEX_IDS, encoded[order]),
            (INDEX_ROWS, order.astype(np.int64)),
            (ROW_IDS, encoded),
        ):
            atomic_write(self.path / name, lambda f, a=array: np.save(f, a))
        self._write_manifest(finalized=True)
        return FeatureStore(self.path)

    def _write_manifest(self, finalized: bool) -> None:
        sizes = {name: (self.path / name).stat().st_size for name in [*self._layout, IDS_FILE]}
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_boxes": self.num_boxes,
            "feature_dim": self.feature_dim,
            "feature_dtype": self.feature_dtype,
            "count": self._count,
            "sizes": sizes,
            "finalized": finalized,
        }
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest, indent=1))

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            # Buffered rows are complete, so keeping them is safe; the store stays unfinalized for a resume.
            self.commit()


class FeatureStores:
    """Image id → features over one or more feature stores, the first that holds the image first (real VQA
    images sit in a train2014 and a val2014 store).

    Args:
        paths: feature store directories; they must share the feature size.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        if not paths:
            raise ValueError("no feature store given")
        self.stores = [FeatureStore(p) for p in paths]
        dims = {s.feature_dim for s in self.stores}
        if len(dims) > 1:
            raise ValueError(
                f"feature stores {[str(p) for p in paths]} hold different feature sizes {sorted(dims)}"
            )
        self.feature_dim: int = dims.pop()

    def __contains__(self, img_id: str) -> bool:
        return any(img_id in store for store in self.stores)

    def get(self, img_id: str) -> dict[str, Any]:
        """One image's row, as :meth:`FeatureStore.get` returns it."""
        for store in self.stores:
            if img_id in store:
                return store.get(img_id)
        raise KeyError(
            f"image {img_id!r} is in none of the feature stores {[str(s.path) for s in self.stores]}"
        )

    def check(self, img_ids: Iterable[str], what: str) -> None:
        """Raise KeyError naming the first missing images if any of ``img_ids`` has no features."""
        missing = sorted({i for i in img_ids if i not in self})
        if missing:
            raise KeyError(
                f"{what}: {len(missing)} images have no features (e.g. {missing[:3]}) in "
                f"{[str(s.path) for s in self.stores]}; extract them with `python -m training.extract`"
            )

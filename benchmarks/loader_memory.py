"""Memory of a multi-worker DataLoader reading a feature store, in PSS summed over the main process and workers.

The authors' loader copies every feature into each worker (207 GB reported, airsplay/lxmert#37). This benchmark
builds (or reuses) a store of N images with random 36×2048 float32 features, reads every image once through a
torch DataLoader with W workers, samples PSS from /proc/<pid>/smaps_rollup of the main process and its workers
while it runs, and compares the peak with the store's size + 1 GiB. PSS divides each shared page among the
processes that map it, so the page cache shared through the memory map is counted once (RSS would count it per
process).

    python -m benchmarks.loader_memory --store /tmp/bench_store --images 20000 --workers 4 [--delete]
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lxmert.config_cli import parse_config
from lxmert.data.store import FeatureStore, FeatureStoreWriter
from lxmert.errors import run_cli

GIB = 1024**3


class StoreDataset(Dataset):
    """One item per image: the fields a pre-training or fine-tuning loader takes from the store.

    It holds only the store (a path once pickled), so nothing in a worker grows with the number of images.
    """

    def __init__(self, store: FeatureStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.store.get_row(index)
        return {
            "features": torch.from_numpy(item["features"]),
            "boxes": torch.from_numpy(item["normalized_boxes"]),
            "objects_id": torch.from_numpy(item["objects_id"]),
        }


def build_store(path: Path, images: int, num_boxes: int, feature_dim: int, seed: int = 0) -> None:
    """A store of random features (non-negative, like ReLU'd RoI features) with valid boxes."""
    rng = np.random.default_rng(seed)
    with FeatureStoreWriter(path, num_boxes, feature_dim, commit_every=256) as writer:
        for k in range(images):
            img_id = f"bench_{k:07d}"
            if writer.has(img_id):
                continue
            xy = rng.uniform(0, 300, (num_boxes, 2)).astype(np.float32)
            writer.add(
                {
                    "img_id": img_id,
                    "img_h": 480,
                    "img_w": 640,
                    "num_boxes": num_boxes,
                    "boxes": np.concatenate([xy, xy + 100], axis=1),
                    "objects_id": rng.integers(0, 1600, num_boxes),
                    "objects_conf": rng.random(num_boxes, dtype=np.float32),
                    "attrs_id": rng.integers(0, 400, num_boxes),
                    "attrs_conf": rng.random(num_boxes, dtype=np.float32),
                    "features": rng.random((num_boxes, feature_dim), dtype=np.float32),
                }
            )


def memory_bytes(pid: int) -> tuple[int, int]:
    """(PSS, private dirty) bytes of a process from /proc/<pid>/smaps_rollup; (0, 0) once it has exited.

    PSS counts the store's page-cache pages that the process has mapped (shared ones split among the mappers).
    Private dirty pages are what the process wrote for itself alone: the part that would grow if a loader copied
    features into each worker. Read-only mapped store pages are clean, so they never count there.
    """
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Private_Dirty"):
                    values[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values.get("Pss", 0), values.get("Private_Dirty", 0)


def child_pids(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


class MemorySampler(threading.Thread):
    """Samples PSS and private dirty memory summed over this process and its children; keeps the peaks."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_pss = self.peak_private = self.peak_workers = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._stop_event.is_set():
            children = child_pids(me)
            samples = [memory_bytes(pid) for pid in [me, *children]]
            pss, private = sum(s[0] for s in samples), sum(s[1] for s in samples)
            if pss > self.peak_pss:
                self.peak_pss, self.peak_workers = pss, len(children)
            self.peak_private = max(self.peak_private, private)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def store_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


@dataclass
class LoaderMemoryConfig:
    """The flags of ``python -m benchmarks.loader_memory``."""

    store: str = field(
        default="/tmp/loader_memory_store", metadata={"help": "store directory (built if missing)"}
    )
    images: int = field(default=20000, metadata={"help": "images in the store"})
    num_boxes: int = field(default=36, metadata={"help": "boxes per image"})
    feature_dim: int = field(default=2048, metadata={"help": "feature size"})
    workers: int = field(default=4, metadata={"help": "DataLoader workers"})
    batch_size: int = field(default=64, metadata={"help": "images per batch"})
    delete: bool = field(default=False, metadata={"help": "delete the store afterwards"})


def parse_args(argv: list[str] | None = None) -> LoaderMemoryConfig:
    """The config of a command line."""
    return parse_config(
        LoaderMemoryConfig,
        argv,
        prog="python -m benchmarks.loader_memory",
        doc=__doc__,
        title="loader memory",
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)

    path = Path(cfg.store)
    start = time.perf_counter()
    build_store(path, cfg.images, cfg.num_boxes, cfg.feature_dim)
    print(f"store ready: {path} ({store_size(path) / GIB:.2f} GiB) in {time.perf_counter() - start:.0f} s")

    store = FeatureStore(path)
    loader = DataLoader(StoreDataset(store), batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.workers)
    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    seen = checksum = 0
    for batch in loader:
        seen += batch["features"].shape[0]
        checksum += float(batch["features"][:, 0, 0].sum())  # touch the data so nothing is optimised away
    elapsed = time.perf_counter() - start
    sampler.stop()

    size = store_size(path)
    limit = size + GIB
    print(f"read {seen} images with {cfg.workers} workers in {elapsed:.0f} s (checksum {checksum:.1f})")
    print(f"peak PSS, main + {sampler.peak_workers} workers: {sampler.peak_pss / GIB:.2f} GiB")
    print(f"peak private dirty memory, all processes: {sampler.peak_private / GIB:.2f} GiB")
    print(f"store size + 1 GiB: {limit / GIB:.2f} GiB -> {'OK' if sampler.peak_pss < limit else 'OVER'}")
    if cfg.delete:
        shutil.rmtree(path)
        print(f"deleted {path}")


if __name__ == "__main__":
    run_cli(main)  # a refused or unreadable file: one line, no traceback

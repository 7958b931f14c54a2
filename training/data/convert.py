"""Convert obj36 TSV files into a memory-mapped feature store.

    python -m training.data.convert --tsv train2014_obj36.tsv val2014_obj36.tsv --out data/features/coco

The TSVs are streamed row by row; an interrupted conversion resumes where its last commit ended when run again with
the same arguments (images already in the store are skipped).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from tqdm import tqdm

from lxmert.config_cli import parse_config
from lxmert.data.store import FeatureStoreWriter
from lxmert.data.tsv import iter_tsv


@dataclass
class ConvertConfig:
    tsv: list[str] = field(metadata={"help": "obj36 TSV files, read in order"})
    out: str = field(metadata={"help": "feature store directory (created, or resumed if present)"})
    num_boxes: int = field(
        default=36, metadata={"help": "most boxes per image (R); obj36: MIN_BOXES = MAX_BOXES = 36"}
    )
    feature_dim: int = field(
        default=2048,
        metadata={"help": "feature size D (ResNet-101 RoI features: 2048); 0 = from the first row"},
    )
    feature_dtype: str = field(
        default="float32",
        metadata={
            "help": "storage dtype of the features (float16 halves disk and page cache; read back as float32)",
            "choices": ("float32", "float16"),
        },
    )
    commit_every: int = field(default=256, metadata={"help": "rows per atomic commit (resume granularity)"})
    limit: int | None = field(
        default=None, metadata={"help": "read at most this many rows of each TSV (the authors' topk)"}
    )


def convert(cfg: ConvertConfig, progress: bool = True) -> int:
    """Run the conversion; returns the number of images in the finished store."""
    if not cfg.tsv or not cfg.out:
        raise ValueError("give at least one --tsv file and an --out store directory")
    rows = itertools.chain.from_iterable(iter_tsv(path, limit=cfg.limit) for path in cfg.tsv)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"no rows in {cfg.tsv}")
    feature_dim = cfg.feature_dim or first["features"].shape[1]
    writer = FeatureStoreWriter(cfg.out, cfg.num_boxes, feature_dim, cfg.feature_dtype, cfg.commit_every)
    added = skipped = 0
    with writer, tqdm(desc="convert", unit="img", disable=not progress) as bar:
        for row in itertools.chain([first], rows):
            if writer.add(row):
                added += 1
            else:
                skipped += 1
            bar.update(1)
    print(f"{added} images added, {skipped} already in the store; {writer.count} in {cfg.out}")
    return writer.count


def parse_args(argv: list[str] | None = None) -> ConvertConfig:
    return parse_config(
        ConvertConfig, argv, prog="python -m training.data.convert", doc=__doc__, title="conversion"
    )


def main(argv: list[str] | None = None) -> None:
    convert(parse_args(argv))


if __name__ == "__main__":
    main()

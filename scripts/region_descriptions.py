"""Copy a synthetic world's pre-training files with Visual Genome-style region descriptions added (docs/matching.md).

The authors' pre-training sentences are two thirds captions, most of them Visual Genome region descriptions; the
world's are a quarter captions. This writes ``mscoco_{train,nominival,minival}.json`` to OUT with a ``synth_vg``
source per image: ``PER_OBJECT`` short noun phrases ("little blue spotted disk") for every object at least half
visible, each naming the shape and a random subset of its size, colour and fill, as the world's captions do
(``training.world.language.object_phrase``). Pass the copies to
``python -m training.pretrain --train-json OUT/mscoco_train.json,OUT/mscoco_nominival.json``.

    python scripts/region_descriptions.py runs/world runs/world-regions --per-object 2
    python scripts/region_descriptions.py runs/world runs/world-regions-only --only-regions
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lxmert.config_cli import parse_config
from lxmert.fileio import atomic_write_text, read_json
from training.world.generate import PRETRAIN_FILES
from training.world.language import object_phrase

REGION_SOURCE = "synth_vg"
MIN_VISIBLE = 0.5
REGION_STREAM = 7  # default_rng([seed, REGION_STREAM, index]): a stream the world's generator does not use


def describe(objects: list[dict], rng: np.random.Generator, per_object: int) -> list[str]:
    """Region descriptions of the visible ``objects`` (annotation entries), in object order; like Visual Genome's,
    two descriptions of one object may coincide."""
    descriptions: list[str] = []
    for obj in objects:
        if obj["visible_fraction"] < MIN_VISIBLE:
            continue
        colour, size, fill = obj["attributes"]
        attrs = {"size": size, "colour": colour, "fill": fill, "shape": obj["label"]}
        descriptions.extend(object_phrase(attrs, rng) for _ in range(per_object))
    return descriptions


@dataclass
class RegionDescriptionsConfig:
    """The arguments of ``python scripts/region_descriptions.py``."""

    world: str = field(
        metadata={"help": "a directory written by python -m training.world", "positional": True}
    )
    out: str = field(
        metadata={"help": "where the pre-training files with descriptions go", "positional": True}
    )
    per_object: int = field(default=2, metadata={"help": "descriptions drawn per visible object"})
    seed: int = field(default=0, metadata={"help": "seed of the descriptions"})
    only_regions: bool = field(
        default=False, metadata={"help": "keep no other sentences (nor QA labels) than the descriptions"}
    )


def parse_args(argv: list[str] | None = None) -> RegionDescriptionsConfig:
    """The config of a command line."""
    return parse_config(
        RegionDescriptionsConfig,
        argv,
        prog="python scripts/region_descriptions.py",
        doc=__doc__,
        title="region descriptions",
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    world, out = Path(cfg.world), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in PRETRAIN_FILES.items():
        objects = {a["img_id"]: a["objects"] for a in read_json(world / "annotations" / f"{split}.json")}
        data = read_json(world / "lxmert" / f"{name}.json")
        for index, datum in enumerate(data):
            rng = np.random.default_rng([cfg.seed, REGION_STREAM, index])
            datum["sentf"][REGION_SOURCE] = describe(objects[datum["img_id"]], rng, cfg.per_object)
            if cfg.only_regions:
                datum["sentf"], datum["labelf"] = {REGION_SOURCE: datum["sentf"][REGION_SOURCE]}, {}
        atomic_write_text(out / f"{name}.json", json.dumps(data))
        count = sum(len(d["sentf"][REGION_SOURCE]) for d in data)
        print(f"{name}: {len(data)} images, {count} region descriptions")


if __name__ == "__main__":
    main()
